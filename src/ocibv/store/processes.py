"""Process rows: every ocibv process that runs jobs or holds reservations, with a heartbeat."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ocibv.store.database import now_us
from ocibv.store.tables import processes

HOST = socket.gethostname()


@dataclass(frozen=True)
class Process:
    id: str
    role: str
    host: str
    pid: int
    started_us: int
    heartbeat_us: int

    def is_dead(self, now: int, stale_us: int) -> bool:
        """Known dead: its pid is gone on this host, or its heartbeat is older than
        ``stale_us`` (the only test for a process on another host)."""
        if self.heartbeat_us < now - stale_us:
            return True
        return self.host == HOST and not pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _from_row(row: sa.Row[Any]) -> Process:
    return Process(**dict(row._mapping))


def register(conn: sa.Connection, process_id: str, role: str) -> None:
    now = now_us()
    conn.execute(
        processes.insert().values(
            id=process_id, role=role, host=HOST, pid=os.getpid(), started_us=now, heartbeat_us=now
        )
    )


def beat(conn: sa.Connection, process_id: str) -> bool:
    """Refresh the heartbeat; False when the row is gone (another process declared us dead)."""
    query = processes.update().where(processes.c.id == process_id).values(heartbeat_us=now_us())
    return int(conn.execute(query).rowcount) == 1


def unregister(conn: sa.Connection, process_id: str) -> None:
    conn.execute(processes.delete().where(processes.c.id == process_id))


def every(conn: sa.Connection) -> list[Process]:
    return [_from_row(r) for r in conn.execute(sa.select(processes))]
