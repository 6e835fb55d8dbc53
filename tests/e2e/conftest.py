"""Fixtures: a shared server per test module, fresh servers for restart tests, and a fresh
compartment per test so tests never see each other's resources."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest

from tests.e2e.server import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("ocibv") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[type[Server]]:
    """Build servers the test starts, stops and kills itself; all are stopped at the end."""
    made: list[Server] = []

    def factory(**kwargs: object) -> Server:
        srv = Server(tmp_path / f"data{len(made)}", **kwargs)  # type: ignore[arg-type]
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
