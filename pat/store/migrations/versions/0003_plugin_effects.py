"""plugin effects: each effect a hook call asked for, under its idempotency key, so that a
retried hook activity never carries one out twice

Revision ID: 0003_plugin_effects
Revises: 0002_plugins
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_plugin_effects"
down_revision = "0002_plugins"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plugin_effects",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("plugin_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_plugin_effects_plugin", "plugin_effects", ["tenant", "plugin_id"])


def downgrade() -> None:
    op.drop_index("ix_plugin_effects_plugin", "plugin_effects")
    op.drop_table("plugin_effects")
