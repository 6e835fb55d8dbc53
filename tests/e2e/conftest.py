"""Fixtures: one in-process server with two availability domains for the whole session, fresh
in-process servers for tests that change a setting, spawned ``ocibv serve`` processes for
restarts and ``kill -9``, and a fresh compartment per test so tests never see each other's
resources. A module that sets ``STORE_KINDS = ("local", "s3")`` runs its own servers once per
kind of backup store (S3: a moto server on loopback, tests/s3_server.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import oci
import pytest

from tests.e2e.helpers import AD1, AD2
from tests.e2e.server import InProcessServer, Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server most tests share: in process, availability domains AD1 and AD2."""
    srv = InProcessServer(
        tmp_path_factory.mktemp("ocibv") / "data",
        env={"OCIBV_AVAILABILITY_DOMAINS": f"{AD1},{AD2}"},
    ).start()
    yield srv
    srv.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    kinds = getattr(metafunc.module, "STORE_KINDS", None)
    if kinds and "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", kinds, indirect=True, scope="module")
    databases = getattr(metafunc.module, "DATABASE_KINDS", None)
    if databases and "database_kind" in metafunc.fixturenames:
        metafunc.parametrize("database_kind", databases, indirect=True, scope="module")


@pytest.fixture(scope="module")
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "local"))


@pytest.fixture(scope="module")
def database_kind(request: pytest.FixtureRequest) -> str:
    """The catalog of a module's own servers: "sqlite", or "postgresql" (a database of the
    session's PostgreSQL server) in a module that sets ``DATABASE_KINDS``."""
    return str(getattr(request, "param", "sqlite"))


def database_env(request: pytest.FixtureRequest, kind: str) -> dict[str, str]:
    if kind == "sqlite":
        return {}
    server = request.getfixturevalue("postgres")
    return {"OCIBV_DATABASE_URL": server.new_database(template=server.migrated_template())}


def store_env(request: pytest.FixtureRequest, kind: str) -> dict[str, str]:
    """The environment that puts a server's backup store on ``kind`` ("local" or "s3")."""
    if kind == "local":
        return {}
    s3 = request.getfixturevalue("s3_server")
    return {**s3.env(), "OCIBV_STORE_URL": s3.new_url("ocibv")}


@pytest.fixture(scope="module")
def own_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    store_kind: str,
    database_kind: str,
) -> Iterator[InProcessServer]:
    """A fresh in-process server (AD1 and AD2) for the one module that asks, its store on the
    module's store kind; a module that must not share (it measures or damages the whole data
    dir, or runs on S3 too) overrides ``server`` with it."""
    env = {
        "OCIBV_AVAILABILITY_DOMAINS": f"{AD1},{AD2}",
        **store_env(request, store_kind),
        **database_env(request, database_kind),
    }
    srv = InProcessServer(tmp_path_factory.mktemp("own") / "data", env=env).start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(
    request: pytest.FixtureRequest, tmp_path: Path, store_kind: str
) -> Iterator[Callable[..., Server]]:
    """Build spawned ``ocibv serve`` servers the test starts, stops and kills itself (restarts,
    ``kill -9``), their store on the module's store kind; all are stopped at the end."""
    made: list[Server] = []

    def factory(**kwargs: object) -> Server:
        env = {**store_env(request, store_kind), **kwargs.pop("env", {})}  # type: ignore[dict-item]
        srv = Server(tmp_path / f"data{len(made)}", env=env, **kwargs)  # type: ignore[arg-type]
        made.append(srv)
        return srv

    yield factory
    for srv in made:
        srv.stop(kill=True)


@pytest.fixture
def make_inprocess_server(tmp_path: Path) -> Iterator[Callable[..., InProcessServer]]:
    """Build in-process servers with their own data dir and settings (``env=``); all are
    stopped at the end."""
    made: list[InProcessServer] = []

    def factory(**kwargs: object) -> InProcessServer:
        srv = InProcessServer(tmp_path / f"inproc{len(made)}", **kwargs)  # type: ignore[arg-type]
        made.append(srv)
        return srv

    yield factory
    for srv in made:
        srv.stop()


@pytest.fixture
def bs(server: Server) -> oci.core.BlockstorageClient:
    return server.blockstorage()


@pytest.fixture
def identity(server: Server) -> oci.identity.IdentityClient:
    return server.identity()


@pytest.fixture
def ad(server: Server, identity: oci.identity.IdentityClient) -> str:
    tenancy = server.config()["tenancy"]
    return str(identity.list_availability_domains(tenancy).data[0].name)


@pytest.fixture
def compartment(server: Server, identity: oci.identity.IdentityClient) -> str:
    details = oci.identity.models.CreateCompartmentDetails(
        compartment_id=server.config()["tenancy"],
        name=f"test-{uuid.uuid4().hex[:8]}",
        description="test compartment",
    )
    return str(identity.create_compartment(details).data.id)
