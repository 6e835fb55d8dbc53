"""Bounded memory, structurally: manifests are written and read as streams of compact
entries, and the pack index keeps binary digests outside Python objects. (Timings and RSS
are measured in ``bench/scale.py`` and ``bench/history.py``, not here.)"""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest

from ocibv.engine import chunk_table as chunk_table_mod
from ocibv.engine import index as index_mod
from ocibv.engine import manifest as manifest_mod
from ocibv.engine.backends import Backend, LocalBackend, MemoryBackend
from ocibv.engine.backup import backup_volume, restore_volume
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.errors import IntegrityError
from ocibv.engine.manifest import (
    FULL,
    INCREMENTAL,
    ChunkEntry,
    ChunkTable,
    Manifest,
    encode_manifest,
    load_manifest,
    manifest_key,
    save_manifest,
)
from ocibv.engine.pack import Location

CS = 4096


def big_manifest(n: int, backup_id: str = "big") -> Manifest:
    entries = (
        ChunkEntry(i * 2, blake3.blake3(i.to_bytes(8, "little")).hexdigest(), CS, 40 + i % 7)
        for i in range(n)
    )
    return Manifest(backup_id=backup_id, volume_id="ocid1.volume.oc1..v",
                    volume_size=2 * n * CS, chunk_size=CS,
                    created_at="2024-05-01T10:00:00.000Z", type=FULL,
                    chunks=ChunkTable(entries), group_backup_id="ocid1.vgb.oc1..g")


def v1_bytes(m: Manifest) -> bytes:
    """The v1 encoding as the first v1 writer produced it (json.dumps of the whole body)."""
    body = json.dumps({
        "format": 1, "kind": "volume_backup", "backup_id": m.backup_id,
        "volume_id": m.volume_id, "volume_size": m.volume_size, "chunk_size": m.chunk_size,
        "created_at": m.created_at, "type": str(m.type), "group_backup_id": m.group_backup_id,
        "chunks": [list(e) for e in m.chunks],
    }, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return seal(body)


def seal(body: bytes) -> bytes:
    checksum = blake3.blake3(body).hexdigest().encode()
    return b'{"checksum":"' + checksum + b'","manifest":' + body + b"}"


def test_chunk_table_is_compact_and_spills_to_a_file() -> None:
    table = big_manifest(40_000).chunks
    assert isinstance(table, ChunkTable)
    assert len(table) == 40_000
    assert table._file._rolled  # type: ignore[attr-defined]  # 1.9 MB of entries: on disk
    assert table[0].chunk_index == 0 and table[-1].chunk_index == 79_998
    assert list(table)[123] == table[123]


def test_streamed_encoding_is_the_v1_encoding_byte_for_byte() -> None:
    m = big_manifest(3000)
    assert encode_manifest(m) == v1_bytes(m)
    empty = Manifest(backup_id="e", volume_id="v", volume_size=0, chunk_size=CS,
                     created_at="2024-05-01T10:00:00.000Z", type=INCREMENTAL, chunks=[])
    assert encode_manifest(empty) == v1_bytes(empty)


def test_large_manifest_is_read_window_by_window(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(manifest_mod, "STREAM_WINDOW", 4096)
    backend = LocalBackend(tmp_path)
    m = big_manifest(5000)
    save_manifest(backend, m)
    assert backend.get(manifest_key("big")) == v1_bytes(m)
    reads: list[tuple[int, int]] = []
    get_range = backend.get_range

    def counting(key: str, offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return get_range(key, offset, length)

    monkeypatch.setattr(backend, "get_range", counting)
    monkeypatch.setattr(backend, "get", lambda key: pytest.fail("read whole"))
    loaded = load_manifest(backend, "big")
    assert isinstance(loaded.chunks, ChunkTable)
    assert loaded.chunks == m.chunks
    assert loaded.group_backup_id == m.group_backup_id
    assert max(n for _o, n in reads) <= 4096 and len(reads) > 50


@pytest.mark.parametrize("where", [200, 150_000, -3])
def test_streamed_read_detects_damage(monkeypatch: pytest.MonkeyPatch, where: int) -> None:
    monkeypatch.setattr(manifest_mod, "STREAM_WINDOW", 4096)
    backend = MemoryBackend()
    save_manifest(backend, big_manifest(3000))
    blob = bytearray(backend.get(manifest_key("big")))
    blob[where] = ord("7") if blob[where] != ord("7") else ord("8")
    backend.put(manifest_key("big"), bytes(blob))
    with pytest.raises(IntegrityError):
        load_manifest(backend, "big")


def test_other_json_layouts_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any JSON a v1 reader accepts (whitespace, member order) loads — by the whole-object
    path, since the streaming reader takes only the layout ocibv writes."""
    monkeypatch.setattr(manifest_mod, "STREAM_WINDOW", 4096)
    m = big_manifest(300)
    doc = json.loads(v1_bytes(m))["manifest"]
    body = json.dumps(dict(reversed(list(doc.items()))), indent=1).encode()
    blob = seal(body)
    backend = MemoryBackend()
    backend.put(manifest_key("big"), blob)
    assert load_manifest(backend, "big").chunks == m.chunks


def test_backup_streams_its_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup never builds a list of the volume's chunks: its entries go to a ChunkTable
    in chunk order and the stored object is written from a spooled file (``put_file``)."""
    monkeypatch.setattr(chunk_table_mod, "SPOOL_BYTES", 1024)  # spill after 21 entries
    image = tmp_path / "v.img"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
        for n in range(0, 8 << 20, 64 << 10):
            f.seek(n)
            f.write((n + 1).to_bytes(8, "little") * 16)
    backend = LocalBackend(tmp_path / "repo")
    put_files: list[str] = []
    real = backend.put_file

    def spy(key: str, file, size: int) -> None:  # type: ignore[no-untyped-def]
        put_files.append(key)
        real(key, file, size)

    monkeypatch.setattr(backend, "put_file", spy)
    monkeypatch.setattr(backend, "put", lambda key, data: pytest.fail(f"put {key}")
                        if key.startswith("manifests/") else LocalBackend.put(backend, key, data))
    store = ChunkStore(backend)
    full = backup_volume(store, image, backup_id="f", volume_id="v", chunk_size=CS,
                         backup_type=FULL)
    assert isinstance(full.chunks, ChunkTable) and full.chunks._file._rolled  # type: ignore[attr-defined]
    assert [e.chunk_index for e in full.chunks] == [n * 16 for n in range(128)]
    assert put_files == [manifest_key("f")]
    with open(image, "r+b") as f:
        f.seek(5 * CS)
        f.write(b"x" * 100)
    incr = backup_volume(store, image, backup_id="i", volume_id="v", chunk_size=CS,
                         backup_type=INCREMENTAL, previous=full,
                         changed_ranges=[(5 * CS, 100)])
    assert [e.chunk_index for e in incr.chunks] == sorted([n * 16 for n in range(128)] + [5])
    restore_volume(ChunkStore(backend), load_manifest(backend, "i"), tmp_path / "r.img")
    assert (tmp_path / "r.img").read_bytes() == image.read_bytes()


def test_index_holds_binary_digests_outside_python_objects() -> None:
    idx = index_mod.PackIndex()
    d = blake3.blake3(b"x").hexdigest()
    idx.add(d, Location("a" * 32, 0, 10, 100))
    idx.add(d, Location("b" * 32, 5, 10, 100), prefer=True)
    idx.add(d, Location("c" * 32, 7, 10, 100))
    assert [loc.pack[0] for loc in idx.locations(d)] == ["b", "a", "c"]  # newest written first
    rows = idx._db.execute("SELECT digest, typeof(digest) FROM loc").fetchall()
    assert {(bytes(r[0]), r[1]) for r in rows} == {(bytes.fromhex(d), "blob")}
    idx.forget_packs({"b" * 32})
    assert [loc.pack[0] for loc in idx.locations(d)] == ["a", "c"]
    assert list(idx.digests()) == [d] and d in idx and len(idx) == 1


def test_index_answers_for_unknown_digests_without_a_query() -> None:
    idx = index_mod.PackIndex()
    known = [blake3.blake3(b"%d" % n).hexdigest() for n in range(30_000)]  # rebuilds twice
    for part in range(0, len(known), 1000):
        idx.add_many([(d, Location("a" * 32, n, 10, 100))
                      for n, d in enumerate(known[part : part + 1000])])
    statements: list[str] = []
    idx._db.set_trace_callback(statements.append)
    unknown = [blake3.blake3(b"new %d" % n).hexdigest() for n in range(2000)]
    assert idx.locations_many(unknown) == {}
    assert not any(d in idx or idx.locations(d) for d in unknown[:200])
    asked = len(statements)
    assert asked <= 2000 * 0.03  # a query only for the filter's false positives (~0.1-1%)
    found = idx.locations_many(known[::100])  # every known digest passes the filter
    assert set(found) == set(known[::100])
    assert all(idx.locations(d) for d in known[::1000]) and all(d in idx for d in known[::999])
    assert len(statements) > asked


def test_digest_filter_has_no_false_negatives_and_few_false_positives() -> None:
    from ocibv.engine.digest_filter import DigestFilter

    f = DigestFilter(5000)
    added = [blake3.blake3(b"%d" % n).digest() for n in range(f.capacity)]
    for d in added:
        f.add(d)
    assert all(d in f for d in added) and not f.full
    others = [blake3.blake3(b"other %d" % n).digest() for n in range(20_000)]
    assert sum(d in f for d in others) < 0.02 * len(others)  # ~0.8% at capacity
    f.add(b"\x01")  # a malformed (short) key is padded, not an error
    assert b"\x01" in f and "not bytes" not in f
    assert f.full


def test_digest_filter_add_many_sets_the_bits_add_sets() -> None:
    """The index adds digests in bulk (numpy); a filter filled that way must answer exactly
    as one filled a digest at a time, at every size (the probes are masked to its bits)."""
    from ocibv.engine.digest_filter import DigestFilter

    digests = [blake3.blake3(b"%d" % n).digest() for n in range(3000)]
    for expected in (0, 1000, 200_000):
        one, bulk = DigestFilter(expected), DigestFilter(expected)
        for d in digests:
            one.add(d)
        bulk.add_many(digests[:1234])
        bulk.add_many(digests[1234:])
        bulk.add_many([])
        assert bulk._bits == one._bits and bulk.count == one.count == len(digests)
    mixed = [digests[0], b"\x01"]  # a malformed key among them: added one at a time, padded
    one, bulk = DigestFilter(), DigestFilter()
    for d in mixed:
        one.add(d)
    bulk.add_many(mixed)
    assert bulk._bits == one._bits and b"\x01" in bulk


def _full_of_200_distinct_chunks(backend: Backend, tmp_path: Path) -> Manifest:
    """A FULL of an image of 200 chunks, each of its own bytes (chunk 0 is zeros)."""
    image = tmp_path / "v.img"
    with open(image, "wb") as f:
        for n in range(200):
            f.write(n.to_bytes(8, "little") * (CS // 8))
    return backup_volume(ChunkStore(backend), image, backup_id="f", volume_id="v",
                         chunk_size=CS, backup_type=FULL)


def test_large_backup_writes_index_objects_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocibv.engine import chunk_store

    monkeypatch.setattr(chunk_store, "INDEX_BATCH", 40)
    monkeypatch.setattr(chunk_store, "MAX_PACK_BLOBS", 16)
    backend = MemoryBackend()
    m = _full_of_200_distinct_chunks(backend, tmp_path)
    assert len(index_mod.index_keys(backend)) >= 4
    assert all(len(e) <= 16 for p in index_mod.index_keys(backend)
               for e in index_mod.read_index_object(backend, p).values())
    assert ChunkStore(backend).missing(e.digest for e in m.chunks) == set()


def test_gc_consolidates_into_bounded_index_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocibv.engine import chunk_store, maintenance

    monkeypatch.setattr(chunk_store, "MAX_PACK_BLOBS", 16)
    monkeypatch.setattr(maintenance, "INDEX_BATCH", 40)
    monkeypatch.setattr(maintenance, "CONSOLIDATE_AT", 0)
    backend = MemoryBackend()
    m = _full_of_200_distinct_chunks(backend, tmp_path)
    report = maintenance.collect_garbage(ChunkStore(backend), grace_seconds=3600)
    assert report.index_objects_merged >= 1
    sizes = [sum(len(e) for e in index_mod.read_index_object(backend, k).values())
             for k in index_mod.index_keys(backend)]
    assert len(sizes) >= 4 and max(sizes) <= 40 + 16 and sum(sizes) == 199  # chunk 0 is zeros
    assert ChunkStore(backend).missing(e.digest for e in m.chunks) == set()
