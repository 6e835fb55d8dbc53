"""Job rows: queued -> running -> done | failed. Claiming is a conditional UPDATE."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ocibv.store.database import now_us
from ocibv.store.tables import jobs

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass
class Job:
    id: int
    kind: str
    resource_id: str
    state: str
    payload: dict[str, Any]
    attempts: int
    progress_done: int
    progress_total: int
    error: str | None
    created_us: int
    started_us: int | None
    heartbeat_us: int | None
    finished_us: int | None
    owner: str | None = None
    run_after_us: int | None = None
    pinned_to: str | None = None
    note: str | None = None


def _from_row(row: sa.Row[Any]) -> Job:
    return Job(**dict(row._mapping))


def enqueue(
    conn: sa.Connection,
    kind: str,
    resource_id: str,
    payload: dict[str, Any] | None = None,
    *,
    run_after_us: int | None = None,
    pinned_to: str | None = None,
) -> int:
    """Queue a job; it is not claimed before ``run_after_us`` (real time) when given, nor by
    any process but ``pinned_to`` while that process lives."""
    result = conn.execute(
        jobs.insert().values(
            kind=kind,
            resource_id=resource_id,
            state=QUEUED,
            payload=payload or {},
            attempts=0,
            progress_done=0,
            progress_total=0,
            created_us=now_us(),
            run_after_us=run_after_us,
            pinned_to=pinned_to,
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def claim_next(conn: sa.Connection, owner: str) -> Job | None:
    """Take the oldest queued job for ``owner``; None when there is nothing to do."""
    while True:
        now = now_us()
        due = sa.or_(jobs.c.run_after_us.is_(None), jobs.c.run_after_us <= now)
        # SKIP LOCKED (PostgreSQL): workers of several processes take different jobs instead
        # of queueing behind one row; SQLite ignores it (its writers never overlap).
        row = conn.execute(
            sa.select(jobs)
            .where(jobs.c.state == QUEUED, due)
            .order_by(jobs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        claimed = conn.execute(
            jobs.update()
            .where(jobs.c.id == row.id, jobs.c.state == QUEUED)
            .values(
                state=RUNNING,
                owner=owner,
                attempts=jobs.c.attempts + 1,
                started_us=now,
                heartbeat_us=now,
            )
        ).rowcount
        if claimed == 1:
            job = _from_row(row)
            job.state, job.owner, job.attempts = RUNNING, owner, job.attempts + 1
            return job


def requeue_orphans(conn: sa.Connection, dead_owners: Iterable[str]) -> int:
    """Put back the jobs the given (dead) processes were running; returns how many."""
    owners = list(dead_owners)
    if not owners:
        return 0
    conn.execute(jobs.update().where(jobs.c.pinned_to.in_(owners)).values(pinned_to=None))
    return int(
        conn.execute(
            jobs.update()
            .where(jobs.c.state == RUNNING, jobs.c.owner.in_(owners))
            .values(state=QUEUED, owner=None)
        ).rowcount
    )


def requeue(conn: sa.Connection, job_id: int, owner: str) -> None:
    """Give back a job this owner is running (it runs again from the top)."""
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id, jobs.c.owner == owner, jobs.c.state == RUNNING)
        .values(state=QUEUED, owner=None)
    )


def running_owners(conn: sa.Connection) -> set[str]:
    """The processes that hold running jobs."""
    rows = conn.execute(sa.select(jobs.c.owner).where(jobs.c.state == RUNNING).distinct())
    return {owner for owner in rows.scalars() if owner}


def heartbeat(conn: sa.Connection, job_id: int, done: int, total: int) -> None:
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id)
        .values(heartbeat_us=now_us(), progress_done=done, progress_total=total)
    )


def set_note(conn: sa.Connection, job_id: int, note: str) -> None:
    conn.execute(jobs.update().where(jobs.c.id == job_id).values(note=note))


def finish(conn: sa.Connection, job_id: int, state: str, error: str | None = None) -> None:
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id)
        .values(state=state, error=error, finished_us=now_us(), heartbeat_us=now_us())
    )


def recent(conn: sa.Connection, limit: int = 50) -> list[Job]:
    rows = conn.execute(sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit))
    return [_from_row(r) for r in rows]


def unfinished(conn: sa.Connection, kinds: Iterable[str] | None = None) -> int:
    """Jobs queued (and due) or running, of ``kinds`` when given."""
    due = sa.or_(jobs.c.run_after_us.is_(None), jobs.c.run_after_us <= now_us())
    query = sa.select(sa.func.count()).where(
        sa.or_(jobs.c.state == RUNNING, sa.and_(jobs.c.state == QUEUED, due))
    )
    if kinds is not None:
        query = query.where(jobs.c.kind.in_(list(kinds)))
    return int(conn.execute(query).scalar() or 0)
