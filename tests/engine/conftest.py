"""Fixtures of the backup store tests: every backend the contract suite covers, and a chunk
store on each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibv.engine.backends import Backend, LocalBackend, MemoryBackend
from ocibv.engine.chunk_store import ChunkStore


@pytest.fixture(params=["local", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend the contract suite covers."""
    if request.param == "local":
        yield LocalBackend(tmp_path / "store")
    else:
        yield MemoryBackend()


@pytest.fixture
def store(backend: Backend) -> ChunkStore:
    return ChunkStore(backend)
