"""Backup policies: the scheduler's record of every scheduled instant it has handled.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_runs",
        sa.Column("asset_id", sa.String(255), primary_key=True),
        sa.Column("schedule_key", sa.String(32), primary_key=True),
        sa.Column("instant_us", sa.BigInteger, primary_key=True),
        sa.Column("policy_id", sa.String(255), nullable=False),
        sa.Column("backup_id", sa.String(255), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduled_runs")
