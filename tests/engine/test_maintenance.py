"""Garbage collection (grace period, concurrent backups) and scrub."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ocibv.engine.backends import Backend, LocalBackend
from ocibv.engine.backup import backup_volume, collect_garbage, restore_volume, scrub
from ocibv.engine.chunk_store import ChunkStore, chunk_key
from ocibv.engine.manifest import FULL, INCREMENTAL
from tests.engine.store_helpers import (
    KIB,
    MIB,
    age,
    age_all,
    damage,
    mixed_image,
    random_bytes,
    sha256,
    write_image,
)

CS = 256 * KIB


def test_gc_deletes_only_old_unreferenced_chunks(store: ChunkStore, tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.img", 4 * MIB, [(0, random_bytes(2 * MIB, 1))])
    b = write_image(
        tmp_path / "b.img",
        4 * MIB,
        [(0, random_bytes(1 * MIB, 1)), (2 * MIB, random_bytes(1 * MIB, 2))],
    )
    ma = backup_volume(store, a, backup_id="a", volume_id="va", chunk_size=CS, backup_type=FULL)
    mb = backup_volume(store, b, backup_id="b", volume_id="vb", chunk_size=CS, backup_type=FULL)
    only_a = ma.digests() - mb.digests()
    assert len(only_a) == 4 and len(ma.digests() & mb.digests()) == 4
    young = collect_garbage(store, [mb], grace_seconds=600)
    assert young.chunks_deleted == 0 and young.chunks_in_grace == 4  # written just now
    age_all(store.backend, "chunks/", 3600)
    report = collect_garbage(store, [mb], grace_seconds=600)
    assert report.chunks_deleted == 4 and report.chunks_live == 8
    assert report.bytes_deleted == sum(e.stored_size for e in ma.chunks if e.digest in only_a)
    assert set(store.iter_digests()) == mb.digests()
    restore_volume(store, mb, tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(b)


def test_gc_during_a_backup_keeps_what_the_backup_relies_on(
    store: ChunkStore, tmp_path: Path
) -> None:
    # 128 chunks, far more than the backup keeps in flight (workers=1: 4 threads x 2 x 4)
    image = write_image(tmp_path / "v.img", 32 * MIB, [(0, random_bytes(32 * MIB, 5))])
    old = backup_volume(
        store, image, backup_id="old", volume_id="v", chunk_size=CS, backup_type=FULL
    )
    age_all(store.backend, "chunks/", 7200)  # the old backup's chunks are old...
    # ...and unreferenced: the old backup is deleted while a new one of the same data runs.
    runs: list[tuple[int, set[str], set[str]]] = []

    def collect_midway(done: int, total: int) -> None:
        if 0 < done < total and not runs:
            present = set(store.iter_digests())
            recent = time.time() - 600
            met = {d for d in present if store.backend.stat(chunk_key(d)).mtime > recent}
            report = collect_garbage(store, [], grace_seconds=600)  # nothing is live
            runs.append((report.chunks_deleted, met, present - set(store.iter_digests())))

    new = backup_volume(
        store,
        image,
        backup_id="new",
        volume_id="v",
        chunk_size=CS,
        previous=old,
        backup_type=INCREMENTAL,
        progress=collect_midway,
    )
    deleted, met, gone = runs[0]
    assert met and 0 < deleted < len(old.chunks)  # what the backup had not met yet went...
    assert not gone & met  # ...but nothing it had already deduplicated against (touched)
    restore_volume(store, new, tmp_path / "r.img")  # and the backup is whole (seal)
    assert sha256(tmp_path / "r.img") == sha256(image)


def test_seal_stores_again_a_chunk_that_vanished(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "v.img")
    full = backup_volume(
        store, image, backup_id="full", volume_id="v", chunk_size=CS, backup_type=FULL
    )
    victim = full.chunks[3].digest
    store.delete_chunk(victim)  # as if collected while the next backup ran
    incr = backup_volume(
        store,
        image,
        backup_id="incr",
        volume_id="v",
        chunk_size=CS,
        previous=full,
        backup_type=INCREMENTAL,
        changed_ranges=[],
    )  # reads nothing...
    assert store.has_chunk(victim)  # ...but re-stored the vanished chunk from the image
    restore_volume(store, incr, tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(image)


def test_scrub_names_damaged_and_missing_chunks_and_their_backups(
    backend: Backend, tmp_path: Path
) -> None:
    store = ChunkStore(backend)
    image = mixed_image(tmp_path / "v.img")
    b1 = backup_volume(store, image, backup_id="b1", volume_id="v", chunk_size=CS, backup_type=FULL)
    with open(image, "r+b") as f:
        f.seek(1 * MIB)
        f.write(random_bytes(CS, 7))
    b2 = backup_volume(
        store,
        image,
        backup_id="b2",
        volume_id="v",
        chunk_size=CS,
        previous=b1,
        backup_type=INCREMENTAL,
    )
    assert scrub(store, [b1, b2]).ok
    shared = b1.chunks[-1].digest
    only_b1 = b1.chunks[0].digest
    assert only_b1 not in b2.digests() and shared in b2.digests()
    damage(backend, chunk_key(shared))
    store.delete_chunk(only_b1)
    report = scrub(store, [b1, b2], workers=3)
    assert report.damaged == {shared: ["b1", "b2"]}
    assert report.missing == {only_b1: ["b1"]}
    assert report.affected_backups == {"b1", "b2"}
    assert report.chunks_checked == len(b1.digests() | b2.digests())


def test_scrub_all_chunks_and_remove_damaged(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "v.img")
    m = backup_volume(store, image, backup_id="b", volume_id="v", chunk_size=CS, backup_type=FULL)
    orphan = store.put_chunk(random_bytes(1000, 99)).digest
    damage(store.backend, chunk_key(orphan))
    assert scrub(store, [m]).ok  # only what the manifests name
    report = scrub(store, [m], all_chunks=True, remove_damaged=True)
    assert report.damaged == {orphan: []} and report.removed == 1
    assert not store.has_chunk(orphan)
    victim = m.chunks[1].digest
    damage(store.backend, chunk_key(victim))
    assert scrub(store, [m], remove_damaged=True).damaged == {victim: ["b"]}
    again = backup_volume(
        store,
        image,
        backup_id="b2",
        volume_id="v",
        chunk_size=CS,
        previous=m,
        backup_type=INCREMENTAL,
    )  # an incremental now repairs it
    assert scrub(store, [m, again]).ok


def test_gc_removes_stale_temporaries(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s")
    store = ChunkStore(backend)
    ref = store.put_chunk(b"x" * 1000)
    leftover = backend.root / "chunks" / ref.digest[:2] / f".tmp-{ref.digest}-deadbeef"
    leftover.write_bytes(b"half a chunk")
    stamp = time.time() - 7200
    os.utime(leftover, (stamp, stamp))
    age(backend, chunk_key(ref.digest), 0)
    report = collect_garbage(store, [], grace_seconds=3600)
    assert report.temporaries_removed == 1 and not leftover.exists()
    assert report.chunks_deleted == 0  # the chunk itself is young
