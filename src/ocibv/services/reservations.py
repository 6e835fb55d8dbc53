"""Reserving resources for work that needs them, and refusing conflicting work with a 409 that
says who holds the resource and why (``domain.reservations``)."""

from __future__ import annotations

import os

import sqlalchemy as sa

from ocibv.domain.errors import OciError
from ocibv.domain.kinds import label
from ocibv.domain.reservations import Reason, Reservation, conflicts
from ocibv.store import processes
from ocibv.store import reservations as rows
from ocibv.store.database import now_us
from ocibv.store.resources import Resource

STALE_US = 30 * 1_000_000  # the job runner's stale-heartbeat limit, for process holders


def _held(conn: sa.Connection, resource_id: str) -> list[Reservation]:
    """The live reservations on a resource: those of dead processes no longer count (the
    heartbeat thread releases them and their leftovers shortly)."""
    held = rows.on(conn, [resource_id])
    if not any(r.process_id for r in held):
        return held
    alive = {p.id for p in processes.every(conn) if not p.is_dead(now_us(), STALE_US)}
    return [r for r in held if r.process_id is None or r.process_id in alive]


def refuse_if_held(
    conn: sa.Connection, res: Resource, error: type[OciError], action: str
) -> None:
    """Raise ``error`` ("Volume X is being backed up by Y; <action>") if anything holds ``res``."""
    held = _held(conn, res.id)
    if held:
        raise error(f"{label(res.kind)} {res.id} is busy: {held[0].describe()}; {action}.")


def reserve(
    conn: sa.Connection,
    res: Resource,
    reason: Reason,
    holder_id: str,
    error: type[OciError],
    action: str,
    *,
    process_id: str | None = None,
) -> None:
    """Hold ``res`` for ``reason`` on behalf of ``holder_id`` (a job's resource, or with
    ``process_id`` this process), unless a conflicting holder has it: then ``error``."""
    for held in _held(conn, res.id):
        if conflicts(held.reason, reason) and held.holder_id != holder_id:
            raise error(f"{label(res.kind)} {res.id} is busy: {held.describe()}; {action}.")
    if any(r.reason == reason and r.holder_id == holder_id for r in rows.on(conn, [res.id])):
        return  # already ours (a job re-run after a restart)
    rows.add(
        conn,
        Reservation(
            resource_id=res.id,
            reason=reason,
            holder_id=holder_id,
            process_id=process_id,
            pid=os.getpid() if process_id else None,
        ),
    )


def release(conn: sa.Connection, holder_id: str) -> None:
    """End everything ``holder_id`` holds (in the caller's transaction, with its state change)."""
    rows.release(conn, holder_id)
