"""Fixtures: a shared server per test module, fresh servers for restart tests, and a fresh
compartment per test so tests never see each other's resources."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest

from tests.e2e.server import Server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets ``STORE_KINDS = ("local", "s3")`` runs its servers once per kind
    of backup store (S3: a moto server on loopback, see tests/s3_server.py)."""
    kinds = getattr(metafunc.module, "STORE_KINDS", None)
    if kinds and "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module")
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "local"))


def _store_env(request: pytest.FixtureRequest, kind: str) -> dict[str, str]:
    if kind == "local":
        return {}
    s3 = request.getfixturevalue("s3_server")
    return {**s3.env(), "OCIBV_STORE_URL": s3.new_url("ocibv")}


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, store_kind: str
) -> Iterator[Server]:
    env = _store_env(request, store_kind)
    srv = Server(tmp_path_factory.mktemp("ocibv") / "data", env=env).start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(
    request: pytest.FixtureRequest, tmp_path: Path, store_kind: str
) -> Iterator[type[Server]]:
    """Build servers the test starts, stops and kills itself; all are stopped at the end."""
    made: list[Server] = []

    def factory(**kwargs: object) -> Server:
        env = {**_store_env(request, store_kind), **kwargs.pop("env", {})}  # type: ignore[dict-item]
        srv = Server(tmp_path / f"data{len(made)}", env=env, **kwargs)  # type: ignore[arg-type]
        made.append(srv)
        return srv

    yield factory  # type: ignore[misc]
    for srv in made:
        srv.stop(kill=True)


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
