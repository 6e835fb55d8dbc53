"""Fixtures of the backup store tests: every backend the contract suite covers (local, memory,
and S3 on a moto server on loopback), the fast ones alone, and a chunk store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibv.engine.backends import Backend, LocalBackend, MemoryBackend, open_backend
from ocibv.engine.chunk_store import ChunkStore


@pytest.fixture(params=["local", "memory", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend the contract suite covers (S3: a moto server on loopback)."""
    if request.param == "local":
        yield LocalBackend(tmp_path / "store")
    elif request.param == "memory":
        yield MemoryBackend()
    else:
        server = request.getfixturevalue("s3_server")
        yield open_backend(server.new_url())


@pytest.fixture(params=["local", "memory"])
def fast_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Local and memory only: for tests that age objects or damage them in place."""
    if request.param == "local":
        yield LocalBackend(tmp_path / "store")
    else:
        yield MemoryBackend()


@pytest.fixture
def store(fast_backend: Backend) -> ChunkStore:
    """A chunk store with one chunk per pack, so tests can damage or drop single chunks."""
    return ChunkStore(fast_backend, pack_size=1)
