"""Suite-wide fixtures: every response the official SDK receives is checked against Oracle's
contract (tests/contract.py); one real PostgreSQL server per test session (started on first
use), for the database parameter of the service suite and the scale-out tests."""

from collections.abc import Iterator

import pytest

from tests.contract import contract_check, contract_recorder  # noqa: F401  (fixtures)
from tests.postgres import PostgresServer, pg_bin


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (make setup installs Debian's postgresql)")
    server = PostgresServer().start()
    yield server
    server.stop()
