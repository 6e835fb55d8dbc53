"""Suite-wide fixtures: every response the official SDK receives is checked against Oracle's
contract (tests/contract.py); one real PostgreSQL server and one S3 server (moto) per test
session, started on first use, for the database and store parameters."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.contract import contract_check, contract_recorder  # noqa: F401  (fixtures)
from tests.postgres import PostgresServer, pg_bin
from tests.s3_server import DUMMY_CREDENTIALS, S3Server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (make setup installs Debian's postgresql)")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server on a free loopback port; dummy credentials in this process's env."""
    server = S3Server.start(tmp_path_factory.mktemp("moto") / "moto.log")
    saved = {k: os.environ.get(k) for k in DUMMY_CREDENTIALS}
    os.environ.update(DUMMY_CREDENTIALS)
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
