"""pipeline runs: which run of EmailPipeline is a message's current one

Revision ID: 0003_pipeline_runs
Revises: 0002_checks
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_pipeline_runs"
down_revision = "0002_checks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("pipeline_run", sa.Integer, nullable=False,
                                        server_default="0"))
    op.add_column("outbox", sa.Column("run", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("outbox", "run")
    op.drop_column("messages", "pipeline_run")
