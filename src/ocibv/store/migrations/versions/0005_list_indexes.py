"""Indexes that match the list orders exactly (keyset pages start at the index, not a sort).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_resources_list_by_ad",
        "resources",
        ["tenancy_id", "kind", "compartment_id", "availability_domain", "created_us", "id"],
    )
    op.create_index(
        "ix_resources_list_by_time",
        "resources",
        ["tenancy_id", "kind", "compartment_id", "created_us", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_resources_list_by_time", "resources")
    op.drop_index("ix_resources_list_by_ad", "resources")
