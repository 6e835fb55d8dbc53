"""Copy a whole catalog from one database to another (``ocibv db migrate-to``)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from ocibv.store import tables
from ocibv.store.database import Database

# What moves: everything but the live processes and their leases (none are running).
COPIED = (
    tables.tenancies,
    tables.users,
    tables.api_keys,
    tables.resources,
    tables.retry_tokens,
    tables.jobs,
    tables.reservations,
    tables.clock,
    tables.secrets,
)
BATCH = 1000


def copy_catalog(
    source: Database, target: Database, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Copy every row of ``source`` into ``target`` (migrated first, and which must hold no
    tenancy yet); returns rows copied per table. One transaction on the target: all or
    nothing."""
    target.migrate()
    counts: dict[str, int] = {}
    with source.read() as src, target.write() as dst:
        if dst.execute(sa.select(sa.func.count()).select_from(tables.tenancies)).scalar():
            raise ValueError("the target database already holds a catalog; use an empty one")
        for table in COPIED:
            dst.execute(table.delete())
            rows = src.execute(sa.select(table)).mappings()
            done = 0
            while batch := [dict(r) for r in rows.fetchmany(BATCH)]:
                dst.execute(table.insert(), batch)
                done += len(batch)
            counts[table.name] = done
            if progress:
                progress(table.name, done)
        if dst.dialect.name == "postgresql":  # identity columns continue after the copied ids
            for table in (tables.jobs, tables.reservations):
                dst.execute(sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"COALESCE((SELECT max(id) FROM {table.name}), 0) + 1, false)"
                ))
    return counts
