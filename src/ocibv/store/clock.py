"""The service clock's offset from real time, one row shared by every process."""

from __future__ import annotations

import sqlalchemy as sa

from ocibv.store.tables import clock

_ROW = 1


def offset_us(conn: sa.Connection) -> int:
    value = conn.execute(sa.select(clock.c.offset_us).where(clock.c.id == _ROW)).scalar()
    return int(value or 0)


def set_offset_us(conn: sa.Connection, offset: int) -> None:
    conn.execute(clock.delete().where(clock.c.id == _ROW))
    if offset:
        conn.execute(clock.insert().values(id=_ROW, offset_us=offset))
