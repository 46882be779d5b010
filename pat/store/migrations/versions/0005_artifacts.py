"""artifacts: the parsed view, decoded bodies and MailHog JSON beside the raw bytes

Revision ID: 0005_artifacts
Revises: 0004_api_keys

The parsed view moves from ``messages.parsed`` to ``message_artifacts.view``; what a list
shows of it (the snippet, the number of attachments) becomes two columns of ``messages``.
Messages parsed before keep their view; their bodies are decoded from the raw bytes when read.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005_artifacts"
down_revision = "0004_api_keys"
branch_labels = None
depends_on = None


_messages = sa.table("messages", sa.column("id", sa.String), sa.column("parsed", sa.JSON),
                     sa.column("snippet", sa.Text), sa.column("attachment_count", sa.Integer))
_artifacts = sa.table("message_artifacts", sa.column("message_id", sa.String),
                      sa.column("view", sa.JSON))


def _attachments(view: dict[str, Any]) -> int:
    return sum(1 for part in view.get("parts", []) if part.get("is_attachment"))


def upgrade() -> None:
    op.create_table(
        "message_artifacts",
        sa.Column("message_id", sa.String(255),
                  sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("view", sa.JSON, nullable=False),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("html", sa.Text, nullable=True),
        sa.Column("mailhog", sa.LargeBinary, nullable=True),
    )
    op.add_column("messages", sa.Column("snippet", sa.Text, nullable=False, server_default=""))
    op.add_column("messages", sa.Column("attachment_count", sa.Integer, nullable=False,
                                        server_default="0"))
    connection = op.get_bind()
    parsed = connection.execute(sa.select(_messages.c.id, _messages.c.parsed)
                                .where(_messages.c.parsed.is_not(None))).fetchall()
    for message_id, view in parsed:
        connection.execute(_artifacts.insert().values(message_id=message_id, view=view))
        connection.execute(_messages.update().where(_messages.c.id == message_id).values(
            snippet=view.get("snippet", ""), attachment_count=_attachments(view)))
    # A plain ALTER TABLE (SQLite has it since 3.35): a batch operation would copy and drop
    # the messages table, and the drop would cascade to message_raw and the artifacts.
    op.drop_column("messages", "parsed")


def downgrade() -> None:
    op.add_column("messages", sa.Column("parsed", sa.JSON, nullable=True))
    connection = op.get_bind()
    views = connection.execute(sa.select(_artifacts.c.message_id, _artifacts.c.view)).fetchall()
    for message_id, view in views:
        connection.execute(_messages.update().where(_messages.c.id == message_id)
                           .values(parsed=view))
    op.drop_column("messages", "attachment_count")
    op.drop_column("messages", "snippet")
    op.drop_table("message_artifacts")
