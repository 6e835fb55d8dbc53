"""The database handle: engine setup (SQLite WAL), read/write transactions, migrations."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

from ocibv.domain.errors import ServiceUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch (how every table stores time)."""
    return time.time_ns() // 1000


class Database:
    """One engine per process. ``write()`` takes SQLite's write lock up front (BEGIN IMMEDIATE)
    so concurrent writers queue instead of failing; ``read()`` sees one consistent snapshot."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 16
        self.engine = sa.create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        connection = self.engine.connect().execution_options(ocibv_write=True)
        with _storage_errors(), connection as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with _storage_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.connect().execution_options(ocibv_write=True) as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _storage_errors() -> Iterator[None]:
    """A database whose disk is full answers a retryable OCI error, not a 500 (the one place
    where this foreign exception is translated)."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        if "disk is full" in str(exc) or "No space left" in str(exc):
            raise ServiceUnavailable(
                "The service's storage is full; nothing was changed. Retry later, or ask the "
                "operator to free space."
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
