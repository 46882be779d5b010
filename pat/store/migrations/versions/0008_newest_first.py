"""newest first: messages indexed by (created_ns DESC, id), the order of every list

Revision ID: 0008_newest_first
Revises: 0007_message_counts

Lists are ordered by created_ns descending, then id. An index on created_ns alone leaves the
tie-break to a sort and the id to the table row; with the id in the index in list order, a
page's ids come from the index alone, and a deep page skips index entries instead of rows. It
replaces the index on created_ns, whose every use it serves.
"""

from alembic import op

revision = "0008_newest_first"
down_revision = "0007_message_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_messages_newest_first ON messages (created_ns DESC, id)")
    op.drop_index("ix_messages_created_ns", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_created_ns", "messages", ["created_ns"])
    op.drop_index("ix_messages_newest_first", table_name="messages")
