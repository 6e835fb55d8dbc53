"""The service clock: real time plus an offset kept in the database, so an emulator user can
move *now* (``ocibv clock``) and every process agrees. It dates resources, retention and
tombstones; request signatures are always checked against real time, never this clock."""

from __future__ import annotations

from datetime import UTC, datetime

from ocibv.store import clock as clock_rows
from ocibv.store.database import Database, now_us


class ServiceClock:
    def __init__(self, db: Database) -> None:
        self.db = db

    def offset_us(self) -> int:
        with self.db.read() as conn:
            return clock_rows.offset_us(conn)

    def now_us(self) -> int:
        """The service's *now*, in microseconds since the epoch."""
        return now_us() + self.offset_us()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_us() / 1e6, tz=UTC)

    def advance(self, seconds: float) -> datetime:
        """Move *now* forward (never backward: times already recorded stay in the past)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self.db.write() as conn:
            clock_rows.set_offset_us(conn, clock_rows.offset_us(conn) + int(seconds * 1e6))
        return self.now()

    def set(self, moment: datetime) -> datetime:
        """Make *now* ``moment`` (it may not be earlier than the current *now*)."""
        return self.set_us(int(moment.timestamp()) * 1_000_000 + moment.microsecond)

    def set_us(self, target: int) -> datetime:
        """Make *now* ``target`` (microseconds since the epoch; never backward)."""
        moment = datetime.fromtimestamp(target / 1e6, tz=UTC)
        with self.db.write() as conn:
            current = now_us() + clock_rows.offset_us(conn)
            if target < current:
                raise ValueError(f"{moment.isoformat()} is before the service's now")
            clock_rows.set_offset_us(conn, target - now_us())
        return self.now()

    def real(self) -> datetime:
        """Back to real time. If the clock was ahead, *now* moves backward: resources already
        dated in the simulated future keep those dates (an emulator's reset, documented)."""
        with self.db.write() as conn:
            clock_rows.set_offset_us(conn, 0)
        return self.now()
