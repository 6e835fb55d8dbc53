"""Manifests: exact round trip, checksum, layout, unique sizes."""

from __future__ import annotations

import json

import blake3
import pytest

from ocibv.engine.backends import Backend, MemoryBackend
from ocibv.engine.errors import BackendError, IntegrityError, ObjectNotFound
from ocibv.engine.manifest import (
    ChunkEntry,
    Manifest,
    decode_manifest,
    delete_manifest,
    encode_manifest,
    list_manifests,
    load_manifest,
    save_manifest,
)
from ocibv.services.backup_catalog import unique_bytes

D = [blake3.blake3(bytes([n])).hexdigest() for n in range(6)]


def manifest(backup_id: str = "b1", chunks: list[ChunkEntry] | None = None) -> Manifest:
    return Manifest(
        backup_id=backup_id,
        volume_id="ocid1.volume.oc1..vol",
        volume_size=10 * 1024 + 100,
        chunk_size=1024,
        created_at="2024-05-01T10:00:00.000Z",
        type="FULL",
        chunks=chunks
        if chunks is not None
        else [
            ChunkEntry(0, D[0], 1024, 500),
            ChunkEntry(3, D[1], 1024, 1026),
            ChunkEntry(10, D[2], 100, 50),
        ],
        group_backup_id="g1",
    )


def test_roundtrip_is_exact_and_file_is_json(backend: Backend) -> None:
    m = manifest()
    save_manifest(backend, m)
    assert load_manifest(backend, "b1") == m
    doc = json.loads(backend.get("manifests/b1.json"))
    assert doc["manifest"]["chunks"][1] == [3, D[1], 1024, 1026]
    assert (
        doc["checksum"]
        == blake3.blake3(
            backend.get("manifests/b1.json")[len('{"checksum":"') + 64 + len('","manifest":') : -1]
        ).hexdigest()
    )


def test_checksum_detects_any_change() -> None:
    blob = encode_manifest(manifest())
    tampered = blob.replace(b'"volume_size":10340', b'"volume_size":10341')
    assert tampered != blob
    with pytest.raises(IntegrityError, match="checksum"):
        decode_manifest(tampered)
    with pytest.raises(IntegrityError):
        decode_manifest(blob[:-1])


@pytest.mark.parametrize(
    "chunks",
    [
        [ChunkEntry(3, D[0], 1024, 1), ChunkEntry(1, D[1], 1024, 1)],  # unsorted
        [ChunkEntry(11, D[0], 1024, 1)],  # beyond the volume
        [ChunkEntry(10, D[0], 1024, 1)],  # last chunk is only 100 bytes
        [ChunkEntry(0, "abc", 1024, 1)],  # malformed digest
    ],
)
def test_inconsistent_manifests_are_refused(chunks: list[ChunkEntry]) -> None:
    with pytest.raises(IntegrityError):
        save_manifest(MemoryBackend(), manifest(chunks=chunks))


def test_list_and_delete(backend: Backend) -> None:
    for name in ("b2", "b1", "ocid1.volumebackup.oc1.phx.abc"):
        save_manifest(backend, manifest(name))
    assert list_manifests(backend) == ["b1", "b2", "ocid1.volumebackup.oc1.phx.abc"]
    delete_manifest(backend, "b2")
    delete_manifest(backend, "b2")
    assert list_manifests(backend) == ["b1", "ocid1.volumebackup.oc1.phx.abc"]
    with pytest.raises(ObjectNotFound):
        load_manifest(backend, "b2")
    with pytest.raises(BackendError):
        load_manifest(backend, "../b1")


def test_unique_bytes_grow_when_a_sharer_is_deleted() -> None:
    full = manifest("full", [ChunkEntry(0, D[0], 1024, 100), ChunkEntry(1, D[1], 1024, 200)])
    incr = manifest(
        "incr",
        [
            ChunkEntry(0, D[0], 1024, 100),
            ChunkEntry(1, D[2], 1024, 300),
            ChunkEntry(2, D[2], 1024, 300),
        ],
    )
    both = unique_bytes({"full": [full], "incr": [incr]})
    assert both == {"full": 200, "incr": 300}  # D[2] counted once: stored once
    assert unique_bytes({"incr": [incr]}) == {"incr": 400}  # the FULL is gone: D[0] is unique
    # one owner holding both (a group backup): what they share is still its own
    assert unique_bytes({"group": [full, incr]}) == {"group": 600}
    assert manifest("x").stored_bytes == 500 + 1026 + 50


@pytest.mark.parametrize("rows", [1, 64, 65, 3000])
def test_entries_are_written_as_json_dumps_writes_them(rows: int) -> None:
    """The vectorised encoder (and its small-block path) against ``json.dumps``, with
    numbers of every width up to 64 bits."""
    import random

    import numpy as np

    from ocibv.engine.chunk_table import _RECORD, RECORD_DTYPE, entries_json

    rng = random.Random(rows)
    entries = [(rng.randrange(2 ** rng.randrange(1, 64)), rng.randbytes(32),
                rng.randrange(2 ** rng.randrange(1, 32)), rng.randrange(2 ** rng.randrange(1, 32)))
               for _ in range(rows)]
    block = np.frombuffer(b"".join(_RECORD.pack(*e) for e in entries), dtype=RECORD_DTYPE)
    expected = json.dumps([[i, d.hex(), n, s] for i, d, n, s in entries], separators=(",", ":"))
    assert b"[" + entries_json(block)[1:] + b"]" == expected.encode()


def test_distinct_stored_bytes_count_each_repeated_chunk_once() -> None:
    import random

    from ocibv.engine.chunk_table import ChunkTable, digest_keys, distinct_stored_bytes

    rng = random.Random(3)
    for trial in range(30):
        shared = [rng.randbytes(32).hex() for _ in range(rng.randint(1, 50))]
        entries = []
        for i in range(rng.randint(0, 3000)):
            digest = rng.choice(shared) if rng.random() < 0.5 else rng.randbytes(32).hex()
            entries.append(ChunkEntry(i, digest, 1024, 100 + int(digest[:3], 16)))
        want = sum({e.digest: e.stored_size for e in entries}.values())
        for chunks in (entries, ChunkTable(entries)):
            assert distinct_stored_bytes(chunks) == want, trial
            assert int(digest_keys(chunks)[1].sum()) == want, trial
