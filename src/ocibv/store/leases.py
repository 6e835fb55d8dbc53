"""Leases: one holder at a time for a named piece of periodic work, and shared secrets."""

from __future__ import annotations

import secrets as random

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ocibv.store.database import now_us
from ocibv.store.tables import leases, secrets


def acquire(conn: sa.Connection, name: str, holder: str, ttl_seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``holder`` for ``ttl_seconds``; False when another
    holder has it and it has not expired. Call in a write transaction."""
    now = now_us()
    until = now + int(ttl_seconds * 1_000_000)
    renewed = conn.execute(
        leases.update()
        .where(
            leases.c.name == name,
            sa.or_(leases.c.holder == holder, leases.c.expires_us < now),
        )
        .values(holder=holder, expires_us=until)
    ).rowcount
    if renewed:
        return True
    if conn.execute(sa.select(leases.c.name).where(leases.c.name == name)).first() is not None:
        return False
    inserted = conn.execute(
        _insert_ignore(conn, leases).values(name=name, holder=holder, expires_us=until)
    ).rowcount
    return bool(inserted)


def holder_of(conn: sa.Connection, name: str) -> str | None:
    row = conn.execute(
        sa.select(leases.c.holder, leases.c.expires_us).where(leases.c.name == name)
    ).first()
    return str(row.holder) if row is not None and row.expires_us >= now_us() else None


def release(conn: sa.Connection, name: str, holder: str) -> None:
    conn.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))


def shared_secret(conn: sa.Connection, name: str) -> bytes:
    """A random 32-byte secret every process shares, made once (the first caller wins)."""
    query = sa.select(secrets.c.value).where(secrets.c.name == name)
    value = conn.execute(query).scalar()
    if value is None:
        conn.execute(
            _insert_ignore(conn, secrets).values(name=name, value=random.token_hex(32))
        )
        value = conn.execute(query).scalar_one()
    return bytes.fromhex(str(value))


def _insert_ignore(conn: sa.Connection, table: sa.Table) -> sa.Insert:
    """INSERT that does nothing when the key exists (both dialects say it the same way)."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()
