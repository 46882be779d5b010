"""deliverability check results on messages

Revision ID: 0002_checks
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_checks"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("checks", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("checks")
