"""Services in process against a temporary data dir (SQLite, local store), no server and no
worker threads: tests run queued jobs inline with ``Services.drain_jobs``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocibv.config import Settings
from ocibv.domain import limits
from ocibv.engine.backends import open_backend
from ocibv.engine.chunk_store import ChunkStore
from ocibv.services.container import Services
from ocibv.services.context import Caller
from ocibv.store import resources as repo

AD = "Uocm:PHX-AD-1"


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
                "availability_domain": AD,
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
                "availability_domain": AD,
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
