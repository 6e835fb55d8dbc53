"""The backup scheduler's bookkeeping: which scheduled instants of which asset were handled."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from ocibv.store.database import now_us
from ocibv.store.tables import scheduled_runs

BACKED_UP = "backed_up"
SUPERSEDED = "superseded"  # another schedule of the policy won the instant
SKIPPED = "skipped"  # the asset was not AVAILABLE (FAULTY, being deleted)


_LAST = (
    sa.select(scheduled_runs.c.schedule_key, sa.func.max(scheduled_runs.c.instant_us))
    .where(scheduled_runs.c.asset_id == sa.bindparam("asset_id"))
    .group_by(scheduled_runs.c.schedule_key)
)


def last_instants(conn: sa.Connection, asset_id: str) -> dict[str, int]:
    """schedule key -> the latest instant handled for ``asset_id``."""
    rows = conn.execute(_LAST, {"asset_id": asset_id})
    return {key: int(instant) for key, instant in rows}


def handled(conn: sa.Connection, asset_id: str, schedule_key: str, instant_us: int) -> bool:
    row = conn.execute(
        sa.select(scheduled_runs.c.asset_id).where(
            scheduled_runs.c.asset_id == asset_id,
            scheduled_runs.c.schedule_key == schedule_key,
            scheduled_runs.c.instant_us == instant_us,
        )
    ).first()
    return row is not None


def record(
    conn: sa.Connection,
    asset_id: str,
    schedule_key: str,
    instant_us: int,
    policy_id: str,
    outcome: str,
    backup_id: str | None = None,
) -> None:
    conn.execute(
        scheduled_runs.insert().values(
            asset_id=asset_id,
            schedule_key=schedule_key,
            instant_us=instant_us,
            policy_id=policy_id,
            backup_id=backup_id,
            outcome=outcome,
            created_us=now_us(),
        )
    )


def forget_assets(conn: sa.Connection, asset_ids: Iterable[str]) -> None:
    ids = list(asset_ids)
    if ids:
        conn.execute(scheduled_runs.delete().where(scheduled_runs.c.asset_id.in_(ids)))
