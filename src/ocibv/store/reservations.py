"""Reservation rows: who holds which resource and why (``domain.reservations``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ocibv.domain.reservations import Reason, Reservation
from ocibv.store.database import now_us
from ocibv.store.tables import reservations


def _from_row(row: sa.Row[Any]) -> Reservation:
    return Reservation(
        resource_id=row.resource_id,
        reason=Reason(row.reason),
        holder_id=row.holder_id,
        process_id=row.process_id,
        pid=row.pid,
        created_us=row.created_us,
    )


def add(conn: sa.Connection, reservation: Reservation) -> None:
    """Record ``reservation`` (the caller has checked for conflicts in this transaction)."""
    conn.execute(
        reservations.insert().values(
            resource_id=reservation.resource_id,
            reason=reservation.reason.value,
            holder_id=reservation.holder_id,
            process_id=reservation.process_id,
            pid=reservation.pid,
            created_us=reservation.created_us or now_us(),
        )
    )


def on(conn: sa.Connection, resource_ids: Iterable[str]) -> list[Reservation]:
    """Every reservation on these resources, oldest first."""
    ids = list(resource_ids)
    if not ids:
        return []
    rows = conn.execute(
        sa.select(reservations)
        .where(reservations.c.resource_id.in_(ids))
        .order_by(reservations.c.id)
    )
    return [_from_row(r) for r in rows]


def held_by(conn: sa.Connection, holder_id: str) -> list[Reservation]:
    rows = conn.execute(
        sa.select(reservations).where(reservations.c.holder_id == holder_id).order_by(
            reservations.c.id
        )
    )
    return [_from_row(r) for r in rows]


def every(conn: sa.Connection) -> list[Reservation]:
    return [_from_row(r) for r in conn.execute(sa.select(reservations))]


def release(conn: sa.Connection, holder_id: str, resource_id: str | None = None) -> int:
    """End the holder's reservations (on one resource, or all of them); returns how many."""
    query = reservations.delete().where(reservations.c.holder_id == holder_id)
    if resource_id is not None:
        query = query.where(reservations.c.resource_id == resource_id)
    return int(conn.execute(query).rowcount)


def release_of_processes(conn: sa.Connection, process_ids: Iterable[str]) -> list[Reservation]:
    """End every reservation the given processes hold; returns them."""
    ids = list(process_ids)
    if not ids:
        return []
    rows = conn.execute(sa.select(reservations).where(reservations.c.process_id.in_(ids)))
    ended = [_from_row(r) for r in rows]
    conn.execute(reservations.delete().where(reservations.c.process_id.in_(ids)))
    return ended
