"""The database handle: engine setup (SQLite WAL, or PostgreSQL), read/write transactions,
locks for read-then-write rules, migrations, and the translation of database failures.

The concurrency contract (docs/design.md, "Concurrency"): every state change is a conditional
UPDATE; a rule that reads and then writes takes a lock first — a row lock on the resource it
changes (``lock_rows``) or a transaction-scoped advisory lock on a key (``lock_key``). On SQLite
both are free (a write transaction already holds the single write lock: BEGIN IMMEDIATE); on
PostgreSQL (READ COMMITTED) they are what makes the rule hold across processes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

from ocibv.domain.errors import DatabaseUnavailable, ServiceUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch (how every table stores time)."""
    return time.time_ns() // 1000


class Database:
    """One engine per process. ``write()`` is a write transaction (on SQLite it takes the write
    lock up front, so concurrent writers queue instead of failing); ``read()`` sees one
    consistent snapshot."""

    def __init__(self, url: str, *, pool_size: int = 16) -> None:
        self.url = url
        self.dialect = sa.engine.make_url(url).get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": pool_size}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            # No ping per checkout (a round trip per request): a connection that died with
            # the server fails once, which invalidates the whole pool (a 503 the client
            # retries), and fresh connections follow.
            kwargs["pool_timeout"] = 10
            kwargs["connect_args"] = {"connect_timeout": 5}
        self.engine = sa.create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        with _storage_errors(self.is_sqlite), self.engine.connect() as conn:
            conn = conn.execution_options(ocibv_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        if self.is_sqlite:
            with _storage_errors(True), self.engine.connect() as conn, conn.begin():
                yield conn
            return
        # PostgreSQL: reads run in autocommit (no BEGIN/COMMIT round trips); each statement
        # sees committed data, which is all a read operation needs.
        with _storage_errors(False), self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def lock_key(self, conn: sa.Connection, *key: str) -> None:
        """Hold a lock on ``key`` until the transaction ends (PostgreSQL advisory lock): two
        transactions that read then write under the same key run one after the other."""
        if self.is_sqlite:
            return
        digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:k)"),
            {"k": int.from_bytes(digest, "big", signed=True)},
        )

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe when several processes
        start at once: they take turns)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with _storage_errors(self.is_sqlite), self.engine.connect() as conn:
            conn = conn.execution_options(ocibv_write=True)
            if not self.is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_lock(7463)"))  # 'ocibv migrate'
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                if not self.is_sqlite:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(7463)"))
                    conn.commit()

    def dispose(self) -> None:
        self.engine.dispose()


def lock_rows(conn: sa.Connection, table: sa.Table, ids: Iterable[str]) -> None:
    """Lock these rows of ``table`` until the transaction ends (``SELECT … FOR UPDATE``; on
    SQLite the write transaction already excludes every other writer)."""
    id_list = sorted(set(ids))
    if id_list and conn.dialect.name != "sqlite":
        conn.execute(
            sa.select(table.c.id).where(table.c.id.in_(id_list)).order_by(table.c.id)
            .with_for_update()
        )


@contextmanager
def _storage_errors(is_sqlite: bool) -> Iterator[None]:
    """The one place where the database's own failures are translated: a full disk, or a
    database server that cannot be reached, answers a retryable OCI error (503), never a
    500. (SQLite's other operational errors are bugs or a locked file: they stay 500s.)"""
    try:
        yield
    except sa.exc.OperationalError as exc:
        text = str(exc)
        if "disk is full" in text or "No space left" in text:
            raise ServiceUnavailable(
                "The service's storage is full; nothing was changed. Retry later, or ask the "
                "operator to free space."
            ) from exc
        if is_sqlite:
            raise
        raise DatabaseUnavailable(
            "The metadata database is unavailable; nothing was changed. Retry later."
        ) from exc
    except sa.exc.InterfaceError as exc:
        raise DatabaseUnavailable(
            "The metadata database is unavailable; nothing was changed. Retry later."
        ) from exc
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(
                "The connection to the metadata database was lost; nothing was changed. "
                "Retry later."
            ) from exc
        raise


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    mode = "IMMEDIATE" if conn.get_execution_options().get("ocibv_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")
