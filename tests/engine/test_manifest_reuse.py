"""An INCREMENTAL's manifest copies the text of the entries it keeps from its base's stored
manifest: the bytes stored are exactly those a fresh encoding writes, at every window
boundary, and a base that is gone or damaged is never copied from."""

from __future__ import annotations

import random
from pathlib import Path

import blake3
import pytest

from ocibv.engine import manifest_reuse
from ocibv.engine.backends import Backend, LocalBackend, MemoryBackend
from ocibv.engine.backup import backup_volume
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.chunk_table import ChunkEntry, ChunkTable
from ocibv.engine.manifest import (
    FULL,
    INCREMENTAL,
    Manifest,
    Reuse,
    encode_manifest,
    load_manifest,
    manifest_key,
    save_manifest,
)
from tests.engine.store_helpers import KIB, MIB, mixed_image, random_bytes

CS = 4096


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per manifest saved with its base's text copied (checked whole)."""
    done: list[int] = []
    real = manifest_reuse.BaseBody.finish

    def finish(self: manifest_reuse.BaseBody) -> None:
        real(self)
        done.append(1)

    monkeypatch.setattr(manifest_reuse.BaseBody, "finish", finish)
    return done


def digest(*parts: int) -> str:
    return blake3.blake3(repr(parts).encode()).hexdigest()


def manifest(backup_id: str, entries: list[ChunkEntry], slots: int) -> Manifest:
    return Manifest(backup_id=backup_id, volume_id="ocid1.volume.oc1..v",
                    volume_size=slots * CS - 100, chunk_size=CS,
                    created_at="2026-11-30T10:00:00.000Z", type=INCREMENTAL,
                    chunks=ChunkTable(entries))


def incremental_of(base: Manifest, replaced: set[int], seed: int) -> tuple[Manifest, Reuse]:
    """A manifest with ``base``'s entries, but new ones at the ``replaced`` positions."""
    entries: list[ChunkEntry] = []
    plan: list[tuple[int, int] | int] = []
    run = 0
    for position, entry in enumerate(base.chunks):
        if position in replaced:
            if run < position:
                plan.append((run, position))
            plan.append(1)
            run = position + 1
            entry = entry._replace(digest=digest(seed, position), stored_size=seed + position)
        entries.append(entry)
    if run < len(base.chunks):
        plan.append((run, len(base.chunks)))
    slots = -(-base.volume_size // CS)
    return manifest(f"incr-{seed}", entries, slots), Reuse(base, plan)


@pytest.mark.parametrize("window", [1, 7, 97, 4096, 1 << 20])
def test_reused_text_is_the_fresh_encoding(
    window: int, monkeypatch: pytest.MonkeyPatch, copies: list[int]
) -> None:
    monkeypatch.setattr(manifest_reuse, "WINDOW", window)
    rng = random.Random(window)
    slots = 400
    backend = MemoryBackend()
    indices = [*sorted(rng.sample(range(slots - 1), 300)), slots - 1]  # the short last one
    base = manifest("base", [ChunkEntry(i, digest(0, i), CS if i < slots - 1 else CS - 100,
                                        rng.randrange(1, 10**rng.randrange(1, 7)))
                             for i in indices], slots)
    save_manifest(backend, base)
    assert base.compact
    n = len(base.chunks)
    for seed, replaced in enumerate([set(), {0}, {n - 1}, {0, 1, 2, n - 1},
                                     set(rng.sample(range(n), 40))], start=1):
        incr, reuse = incremental_of(base, replaced, seed)
        save_manifest(backend, incr, reuse)
        assert backend.get(manifest_key(incr.backup_id)) == encode_manifest(incr)
        assert load_manifest(backend, incr.backup_id).chunks == incr.chunks
    assert len(copies) == 5  # every one copied its base's text


def test_a_damaged_or_missing_base_is_never_copied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "ocibv.engine.manifest")
    backend: Backend = LocalBackend(tmp_path / "store")
    base = manifest("base", [ChunkEntry(i, digest(0, i), CS, 50 + i) for i in range(200)], 201)
    save_manifest(backend, base)
    stored = backend.get(manifest_key("base"))
    entry = f'[7,"{digest(0, 7)}",{CS},57]'.encode()
    assert entry in stored
    backend.put(manifest_key("base"), stored.replace(entry, entry.replace(b",57]", b",75]")))
    incr, reuse = incremental_of(base, {100}, 1)
    save_manifest(backend, incr, reuse)  # the damage is in a kept run: encoded afresh
    assert backend.get(manifest_key(incr.backup_id)) == encode_manifest(incr)
    assert "checksum mismatch" in caplog.text
    backend.delete(manifest_key("base"))
    incr, reuse = incremental_of(base, {3}, 2)
    save_manifest(backend, incr, reuse)
    assert backend.get(manifest_key(incr.backup_id)) == encode_manifest(incr)
    assert caplog.text.count("not reused") == 2


def test_changed_block_incrementals_store_what_a_fresh_encoding_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copies: list[int]
) -> None:
    monkeypatch.setattr(manifest_reuse, "WINDOW", 1000)
    store = ChunkStore(LocalBackend(tmp_path / "store"))
    image = mixed_image(tmp_path / "vol.img")
    previous = backup_volume(store, image, backup_id="full", volume_id="v",
                             chunk_size=64 * KIB, backup_type=FULL)
    for n, offset in enumerate([0, 3 * MIB + 5, 9 * MIB]):
        with open(image, "r+b") as f:
            f.seek(offset)
            f.write(random_bytes(300, n))
        previous = backup_volume(store, image, backup_id=f"i{n}", volume_id="v",
                                 chunk_size=64 * KIB, previous=previous,
                                 backup_type=INCREMENTAL, changed_ranges=[(offset, 300)])
        stored = store.backend.get(manifest_key(f"i{n}"))
        assert stored == encode_manifest(previous)
    assert len(copies) == 3
