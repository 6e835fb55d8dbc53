"""Typed reservations replace the ``busy`` column; processes with heartbeats; job ``run_after``;
the service clock.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resource_id", sa.String(255), nullable=False, index=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("holder_id", sa.String(255), nullable=False, index=True),
        sa.Column("process_id", sa.String(64), nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("resource_id", "reason", "holder_id", name="uq_reservations_holder"),
    )
    op.create_table(
        "processes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_us", sa.BigInteger, nullable=False),
        sa.Column("heartbeat_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "clock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("offset_us", sa.BigInteger, nullable=False),
    )
    # A backup's busy mark ("backup <ocid>") becomes its reservation; marks of offline
    # import/export processes are dropped (no process survives a migration).
    conn = op.get_bind()
    busy = "SELECT id, busy, updated_us FROM resources WHERE busy IS NOT NULL"
    rows = conn.execute(sa.text(busy))
    for resource_id, mark, updated_us in list(rows):
        if mark.startswith("backup "):
            conn.execute(
                sa.text(
                    "INSERT INTO reservations (resource_id, reason, holder_id, created_us) "
                    "VALUES (:r, 'backup', :h, :t)"
                ),
                {"r": resource_id, "h": mark.removeprefix("backup "), "t": updated_us},
            )
    with op.batch_alter_table("resources") as batch:
        batch.drop_column("busy")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("run_after_us", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("run_after_us")
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("busy", sa.String(255), nullable=True))
    for table in ("clock", "processes", "reservations"):
        op.drop_table(table)
