"""Fixtures for the OCI rules tested in process: ``Services`` on a temporary data directory, no
HTTP and no worker threads — queued jobs run when a test calls ``cloud.settle()``, so every
intermediate state (PROVISIONING, a backup REQUEST_RECEIVED, a clone still copying) holds for
as long as the test looks at it.

The database and the backup store are fixture parameters: a PostgreSQL or S3 run is one more
value in ``DATABASES`` / ``STORES``, not another copy of the suite."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ocibv.config import Settings
from ocibv.domain import limits
from ocibv.engine.backends import open_backend
from ocibv.engine.chunk_store import ChunkStore
from ocibv.services.container import Services
from ocibv.services.context import Caller
from ocibv.services.listing import ListRequest
from ocibv.store import resources as repo
from tests.postgres import PostgresServer

AD1, AD2 = "Uocm:PHX-AD-1", "Uocm:PHX-AD-2"

# name -> the URL for a fresh, empty instance (under a temporary directory, or in the
# session's PostgreSQL server)
DATABASES: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": lambda _, tmp: f"sqlite:///{tmp / 'ocibv.db'}",
    "postgresql": lambda request, _: _postgres_database(request),
}
STORES: dict[str, Callable[[Path], str]] = {
    "file": lambda tmp: f"file://{tmp / 'store'}",
}


def _postgres_database(request: pytest.FixtureRequest) -> str:
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database(template=server.migrated_template())


@pytest.fixture(params=sorted(DATABASES))
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return DATABASES[request.param](request, tmp_path)


@pytest.fixture(params=sorted(STORES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return STORES[request.param](tmp_path)


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("OCIBV_DATABASE_URL", database_url)
    monkeypatch.setenv("OCIBV_STORE_URL", store_url)
    return Settings.load(tmp_path / "srv" / "data", availability_domains=[AD1, AD2])


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """Every service of a fresh data directory, migrated; no worker threads."""
    svc = Services(settings)
    svc.migrate()
    yield svc
    svc.stop()


@dataclass
class Cloud:
    """One tenancy of ``services`` and shortcuts to build what a rule needs, with the snake_case
    detail dicts the API layer passes."""

    services: Services
    caller: Caller
    compartment: str

    @property
    def tenancy(self) -> str:
        return self.caller.tenancy_id

    def settle(self) -> int:
        """Run every queued job to the end, in this thread; returns how many ran."""
        count = 0
        while self.services.runner.run_one():
            count += 1
        return count

    def new_compartment(self, name: str | None = None, parent: str | None = None) -> str:
        details = {
            "compartment_id": parent or self.tenancy,
            "name": name or f"c-{uuid.uuid4().hex[:8]}",
            "description": "test",
        }
        return self.services.identity.create_compartment(self.caller, details).id

    def create_volume(self, token: str | None = None, **details: Any) -> repo.Resource:
        """CreateVolume as sent (not settled): 50 GB in AD1 of the test compartment unless
        told otherwise."""
        body: dict[str, Any] = {
            "compartment_id": self.compartment,
            "availability_domain": AD1,
            "size_in_gbs": 50,
        }
        body.update(details)
        return self.services.volumes.create_volume(self.caller, body, token)

    def volume(self, **details: Any) -> str:
        """The id of a new AVAILABLE volume."""
        vol = self.create_volume(**details)
        self.settle()
        assert self.state("volume", vol.id) == "AVAILABLE"
        return vol.id

    def clone(self, source_id: str, **details: Any) -> repo.Resource:
        body: dict[str, Any] = {"availability_domain": None, "size_in_gbs": None}
        body.update(details)
        return self.create_volume(source_details={"type": "volume", "id": source_id}, **body)

    def create_group(
        self, volume_ids: list[str], token: str | None = None, **details: Any
    ) -> repo.Resource:
        body: dict[str, Any] = {
            "compartment_id": self.compartment,
            "availability_domain": AD1,
            "source_details": {"type": "volumeIds", "volumeIds": volume_ids},
        }
        body.update(details)
        return self.services.volume_groups.create_volume_group(self.caller, body, token)

    def group(self, volume_ids: list[str], **details: Any) -> str:
        group = self.create_group(volume_ids, **details)
        self.settle()
        assert self.state("volumegroup", group.id) == "AVAILABLE"
        return group.id

    def create_backup(
        self, volume_id: str, token: str | None = None, **details: Any
    ) -> repo.Resource:
        return self.services.volume_backups.create_volume_backup(
            self.caller, {"volume_id": volume_id, **details}, token
        )

    def backup(self, volume_id: str, **details: Any) -> str:
        backup = self.create_backup(volume_id, **details)
        self.settle()
        assert self.state("volumebackup", backup.id) == "AVAILABLE"
        return backup.id

    def create_group_backup(
        self, group_id: str, token: str | None = None, **details: Any
    ) -> repo.Resource:
        return self.services.volume_group_backups.create_volume_group_backup(
            self.caller, {"volume_group_id": group_id, **details}, token
        )

    def group_backup(self, group_id: str, **details: Any) -> repo.Resource:
        backup = self.create_group_backup(group_id, **details)
        self.settle()
        got = self.get("volumegroupbackup", backup.id)
        assert got.lifecycle_state == "AVAILABLE"
        return got

    def get(self, kind: str, resource_id: str) -> repo.Resource:
        getters = {
            "volume": self.services.volumes.get_volume,
            "volumegroup": self.services.volume_groups.get_volume_group,
            "volumebackup": self.services.volume_backups.get_volume_backup,
            "volumegroupbackup": self.services.volume_group_backups.get_volume_group_backup,
            "compartment": self.services.identity.get_compartment,
        }
        return getters[kind](self.caller, resource_id)

    def state(self, kind: str, resource_id: str) -> str:
        return self.get(kind, resource_id).lifecycle_state

    def list_volumes(self, **filters: Any) -> list[str]:
        request = ListRequest({"compartment_id": self.compartment, **filters})
        items, _ = self.services.volumes.list_volumes(self.caller, request)
        return [v.id for v in items]


def new_cloud(services: Services, name: str) -> Cloud:
    principal = services.identity.create_tenancy(name)
    caller = Caller(principal.tenancy_id, principal.user_id)
    probe = Cloud(services, caller, principal.tenancy_id)
    return Cloud(services, caller, probe.new_compartment("work"))


@pytest.fixture
def cloud(services: Services) -> Cloud:
    """A tenancy with a compartment to work in."""
    return new_cloud(services, "t")


@pytest.fixture
def other_cloud(services: Services, cloud: Cloud) -> Cloud:
    """A second tenancy of the same services."""
    return new_cloud(services, "other")


# --- the backup policy and scheduler rules (a simulated clock, volumes with real bytes) ---


@dataclass
class World:
    services: Services
    caller: Caller
    compartment: str

    def volume(self, name: str, size_in_gbs: int = 50) -> repo.Resource:
        res = self.services.volumes.create_volume(
            self.caller,
            {
                "compartment_id": self.compartment,
                "availability_domain": AD1,
                "display_name": name,
                "size_in_gbs": size_in_gbs,
            },
            None,
        )
        self.services.drain_jobs()
        return self.services.volumes.get_volume(self.caller, res.id)

    def group(self, name: str, volume_ids: list[str]) -> repo.Resource:
        res = self.services.volume_groups.create_volume_group(
            self.caller,
            {
                "compartment_id": self.compartment,
                "availability_domain": AD1,
                "display_name": name,
                "source_details": {"type": "volumeIds", "volumeIds": volume_ids},
            },
            None,
        )
        self.services.drain_jobs()
        return self.services.volume_groups.get_volume_group(self.caller, res.id)

    def write(self, volume_id: str, offset: int, data: bytes) -> None:
        with open(self.services.settings.volume_path(volume_id), "r+b") as handle:
            handle.seek(offset)
            handle.write(data)

    def use_memory_store(self) -> None:
        """The fast path for long simulations: this tenancy's backup store in memory (no
        fsync per chunk and manifest); the rules under test are the same."""
        catalog = self.services.catalog
        catalog._stores[self.caller.tenancy_id] = ChunkStore(open_backend("memory://"))

    def advance(self, seconds: float) -> None:
        self.services.scheduler.advance(seconds, self.services.drain_jobs)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A tenancy and a compartment on SQLite."""
    yield from _world(tmp_path)


@pytest.fixture
def world_on_each_database(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """The same, once per database kind (SQLite, PostgreSQL)."""
    monkeypatch.setenv("OCIBV_DATABASE_URL", database_url)
    yield from _world(tmp_path)


def _world(tmp_path: Path) -> Iterator[World]:
    services = Services(Settings.load(tmp_path / "data", workers=1))
    services.migrate()
    principal = services.identity.create_tenancy("t")
    caller = Caller(principal.tenancy_id, principal.user_id)
    compartment = services.identity.create_compartment(
        caller, {"compartment_id": caller.tenancy_id, "name": "c", "description": "c"}
    )
    yield World(services, caller, compartment.id)
    services.db.dispose()


GIB = limits.GIB
