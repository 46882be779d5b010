"""Alembic environment: runs on the connection that ``pat.store.db.migrate`` hands over."""

from alembic import context

from pat.store.models import SQLModel

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
