"""messages, raw bytes and outbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("tenant", sa.String(255), nullable=False, index=True),
        sa.Column("created_ns", sa.BigInteger, nullable=False, index=True),
        sa.Column("updated_ns", sa.BigInteger, nullable=False, index=True),
        sa.Column("mail_from", sa.String(1024), nullable=False),
        sa.Column("recipients", sa.JSON, nullable=False),
        sa.Column("helo", sa.String(1024), nullable=False),
        sa.Column("peer", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("failure_reason", sa.String, nullable=True),
        sa.Column("subject", sa.String, nullable=True),
        sa.Column("from_header", sa.String, nullable=True),
        sa.Column("to_header", sa.String, nullable=True),
        sa.Column("parsed", sa.JSON, nullable=True),
    )
    op.create_table(
        "message_raw",
        sa.Column("message_id", sa.String(255),
                  sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(255), nullable=False, index=True),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("published_ns", sa.BigInteger, nullable=True, index=True),
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("message_raw")
    op.drop_table("messages")
