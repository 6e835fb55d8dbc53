"""Garbage collection by plans (grace period, concurrent backups, repack) and scrub."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ocibv.engine import keys
from ocibv.engine.backends import Backend, LocalBackend, MemoryBackend
from ocibv.engine.backup import backup_volume, collect_garbage, restore_volume, scrub
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.maintenance import GcReport
from ocibv.engine.manifest import FULL, INCREMENTAL, delete_manifest
from tests.engine.store_helpers import (
    KIB,
    MIB,
    age_all,
    damage_chunk,
    drop_chunk,
    mixed_image,
    random_bytes,
    sha256,
    text_bytes,
    write_image,
)

CS = 256 * KIB


def _age_store(backend: Backend, seconds: float) -> None:
    for prefix in (keys.PACK_PREFIX, keys.INDEX_PREFIX, keys.PLAN_PREFIX):
        age_all(backend, prefix, seconds)


def _bytes(backend: Backend, prefix: str) -> int:
    return sum(backend.stat(k).size for k in backend.list(prefix))


def test_gc_plans_then_deletes_only_old_unreferenced_packs(
    store: ChunkStore, tmp_path: Path
) -> None:
    a = write_image(tmp_path / "a.img", 4 * MIB, [(0, random_bytes(2 * MIB, 1))])
    b = write_image(
        tmp_path / "b.img", 4 * MIB,
        [(0, random_bytes(1 * MIB, 1)), (2 * MIB, random_bytes(1 * MIB, 2))],
    )
    ma = backup_volume(store, a, backup_id="a", volume_id="va", chunk_size=CS, backup_type=FULL)
    mb = backup_volume(store, b, backup_id="b", volume_id="vb", chunk_size=CS, backup_type=FULL)
    only_a = ma.digests() - mb.digests()
    assert len(only_a) == 4 and len(ma.digests() & mb.digests()) == 4
    delete_manifest(store.backend, "a")
    young = collect_garbage(store, grace_seconds=600)
    assert young.packs_condemned == 0 and young.packs_deleted == 0  # written just now
    _age_store(store.backend, 3600)
    planned = collect_garbage(store, grace_seconds=600)
    assert planned.packs_condemned == 4 and planned.packs_deleted == 0
    assert collect_garbage(store, grace_seconds=600).packs_deleted == 0  # plan is young
    _age_store(store.backend, 3600)
    swept = collect_garbage(store, grace_seconds=600)
    assert swept.packs_deleted == 4 and swept.plans_swept == 1
    assert swept.bytes_deleted == sum(e.stored_size for e in ma.chunks if e.digest in only_a)
    fresh = ChunkStore(store.backend)
    assert set(fresh.iter_digests()) == mb.digests()  # the index was consolidated
    store.refresh()  # a long-lived store forgets the collected packs (bounded over history)
    assert set(store.iter_digests()) == mb.digests()
    restore_volume(fresh, mb, tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(b)


def test_a_plan_spares_packs_a_new_manifest_needs(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "v.img")
    old = backup_volume(store, image, backup_id="old", volume_id="v", chunk_size=CS,
                        backup_type=FULL)
    delete_manifest(store.backend, "old")
    _age_store(store.backend, 7200)
    assert collect_garbage(store, grace_seconds=600).packs_condemned == len(old.digests())
    # a backup of the same data deduplicates, finds every old pack condemned and stores again
    new = backup_volume(store, image, backup_id="new", volume_id="v", chunk_size=CS,
                        backup_type=INCREMENTAL, previous=None)
    _age_store(store.backend, 7200)
    report = collect_garbage(store, grace_seconds=600)
    assert report.packs_deleted == len(old.digests())  # the new copies serve the new backup
    restore_volume(ChunkStore(store.backend), new, tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(image)


def test_sweep_keeps_a_condemned_pack_whose_chunk_became_live(
    store: ChunkStore, tmp_path: Path
) -> None:
    image = mixed_image(tmp_path / "v.img")
    m = backup_volume(store, image, backup_id="m", volume_id="v", chunk_size=CS,
                      backup_type=FULL)
    blob = store.backend.get(keys.manifest_key("m"))
    delete_manifest(store.backend, "m")
    _age_store(store.backend, 7200)
    assert collect_garbage(store, grace_seconds=600).packs_condemned > 0
    store.backend.put(keys.manifest_key("m"), blob)  # live again before the sweep
    _age_store(store.backend, 7200)
    report = collect_garbage(store, grace_seconds=600)
    assert report.packs_deleted == 0 and report.packs_kept == len(m.digests())
    restore_volume(ChunkStore(store.backend), m, tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(image)


def test_verification_stores_again_a_chunk_that_vanished(
    store: ChunkStore, tmp_path: Path
) -> None:
    image = mixed_image(tmp_path / "v.img")
    full = backup_volume(
        store, image, backup_id="full", volume_id="v", chunk_size=CS, backup_type=FULL
    )
    victim = full.chunks[3].digest
    drop_chunk(store, victim)  # as if collected while the next backup ran
    incr = backup_volume(
        store, image, backup_id="incr", volume_id="v", chunk_size=CS, previous=full,
        backup_type=INCREMENTAL, changed_ranges=[],
    )  # reads nothing...
    assert store.missing([victim]) == set()  # ...but stored the vanished chunk again
    restore_volume(ChunkStore(store.backend), incr, tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(image)


@pytest.mark.parametrize("kind", [FULL, INCREMENTAL])
def test_gc_looping_while_backups_reuse_old_chunks(
    backend: Backend, tmp_path: Path, kind: str
) -> None:
    store = ChunkStore(backend, pack_size=512 * KIB)
    image = write_image(tmp_path / "v.img", 8 * MIB, [(0, random_bytes(8 * MIB, 5))])
    old = backup_volume(store, image, backup_id="old", volume_id="v", chunk_size=CS,
                        backup_type=FULL)
    delete_manifest(backend, "old")  # its chunks are garbage, but the next backups reuse them
    grace = 1.0
    if not isinstance(backend, LocalBackend | MemoryBackend):
        time.sleep(grace)  # S3 timestamps are the server's: wait instead of ageing
    else:
        _age_store(backend, 3600)
    stop = threading.Event()
    errors: list[BaseException] = []
    # the old packs are condemned before any backup runs: the backups below then reuse
    # chunks of condemned packs while the loop sweeps them. (Left to the loop's first pass,
    # a backup that saved its manifest first made the old chunks live again, nothing was
    # ever condemned, and no plan was swept: a CI run failed so.)
    reports: list[GcReport] = [collect_garbage(ChunkStore(backend), grace_seconds=grace)]
    assert reports[0].packs_condemned

    def loop() -> None:
        try:
            while not stop.is_set():
                reports.append(collect_garbage(ChunkStore(backend), grace_seconds=grace))
        except BaseException as exc:
            errors.append(exc)

    collector = threading.Thread(target=loop)
    collector.start()
    made = []
    started = time.monotonic()
    try:
        n = 0
        while n < 3 or (
            not any(r.plans_swept for r in reports) and time.monotonic() - started < 90
        ):  # (a sweep comes within seconds; the long bound is for a loaded CI machine)
            with open(image, "r+b") as f:
                f.seek((n % 8) * MIB)
                f.write(random_bytes(64 * KIB, 50 + n))
            made.append(backup_volume(store, image, backup_id=f"b{n}", volume_id="v",
                                      chunk_size=CS, backup_type=kind,  # type: ignore[arg-type]
                                      previous=old))
            n += 1
    finally:
        stop.set()
        collector.join()
    assert not errors
    # plans were swept while backups ran: old packs deleted, or kept because a new backup
    # named them again before the sweep (both are what the design says)
    assert any(r.plans_swept for r in reports)
    reader = ChunkStore(backend)
    assert reader.missing(d for m in made for d in m.digests()) == set()
    restore_volume(reader, made[-1], tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(image)


def test_repack_reclaims_mostly_dead_packs(fast_backend: Backend, tmp_path: Path) -> None:
    store = ChunkStore(fast_backend, pack_size=64 * MIB)  # everything in one pack
    image = write_image(tmp_path / "v.img", 8 * MIB, [(0, random_bytes(8 * MIB, 8))])
    full = backup_volume(store, image, backup_id="a", volume_id="v", chunk_size=CS,
                         backup_type=FULL)
    small = write_image(tmp_path / "s.img", 8 * MIB, [(0, random_bytes(1 * MIB, 8))])
    keep = backup_volume(store, small, backup_id="b", volume_id="v", chunk_size=CS,
                         backup_type=FULL)
    assert keep.digests() < full.digests()
    delete_manifest(fast_backend, "a")
    before = _bytes(fast_backend, keys.PACK_PREFIX)
    _age_store(fast_backend, 7200)
    report = collect_garbage(store, grace_seconds=600)
    assert report.packs_repacked == 1
    _age_store(fast_backend, 7200)
    assert collect_garbage(store, grace_seconds=600).packs_deleted == 1
    after = _bytes(fast_backend, keys.PACK_PREFIX)
    assert after < before / 4
    restore_volume(ChunkStore(fast_backend), keep, tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(small)


def test_repack_copies_blobs_only_once_they_verify(
    fast_backend: Backend, tmp_path: Path
) -> None:
    """Repack copies blobs as they are (no second compression), and never a damaged one."""
    store = ChunkStore(fast_backend, pack_size=64 * MIB)  # everything in one pack
    image = write_image(tmp_path / "v.img", 8 * MIB, [(0, text_bytes(8 * MIB, 8))])
    backup_volume(store, image, backup_id="a", volume_id="v", chunk_size=CS, backup_type=FULL)
    small = write_image(tmp_path / "s.img", 8 * MIB, [(0, text_bytes(1 * MIB, 8))])
    keep = backup_volume(store, small, backup_id="b", volume_id="v", chunk_size=CS,
                         backup_type=FULL)
    damaged = keep.chunks[0].digest
    (victim,) = {loc.pack for loc in store.index.locations(damaged)}
    damage_chunk(store, damaged)
    delete_manifest(fast_backend, "a")
    _age_store(fast_backend, 7200)
    assert collect_garbage(store, grace_seconds=600).packs_repacked == 1
    fresh = ChunkStore(fast_backend)
    fresh.refresh()
    # the damaged blob was not copied...
    assert {loc.pack for loc in fresh.index.locations(damaged)} <= {victim}
    for entry in keep.chunks[1:]:  # ...the others were, compressed, byte for byte
        copies = [loc for loc in fresh.index.locations(entry.digest) if loc.pack != victim]
        assert [loc.length for loc in copies] == [entry.stored_size]
        assert entry.stored_size < entry.size
        start = entry.chunk_index * CS
        assert fresh.get_chunk(entry.digest) == small.read_bytes()[start : start + entry.size]
    assert scrub(fresh, [keep]).affected_backups == {"b"}


def test_scrub_names_damaged_and_missing_chunks_and_their_backups(
    store: ChunkStore, tmp_path: Path
) -> None:
    image = mixed_image(tmp_path / "v.img")
    b1 = backup_volume(store, image, backup_id="b1", volume_id="v", chunk_size=CS,
                       backup_type=FULL)
    with open(image, "r+b") as f:
        f.seek(1 * MIB)
        f.write(random_bytes(CS, 7))
    b2 = backup_volume(
        store, image, backup_id="b2", volume_id="v", chunk_size=CS, previous=b1,
        backup_type=INCREMENTAL,
    )
    assert scrub(store, [b1, b2]).ok
    shared = b1.chunks[-1].digest
    only_b1 = b1.chunks[0].digest
    assert only_b1 not in b2.digests() and shared in b2.digests()
    damage_chunk(store, shared)
    drop_chunk(store, only_b1)
    report = scrub(ChunkStore(store.backend), [b1, b2], workers=3)
    assert report.damaged == {shared: ["b1", "b2"]}
    assert report.missing == {only_b1: ["b1"]}
    assert report.affected_backups == {"b1", "b2"}
    assert report.chunks_checked == len(b1.digests() | b2.digests())


def test_scrub_all_chunks_and_remove_damaged(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "v.img")
    m = backup_volume(store, image, backup_id="b", volume_id="v", chunk_size=CS,
                      backup_type=FULL)
    orphan = store.put_chunk(random_bytes(1000, 99)).digest
    store.flush()
    damage_chunk(store, orphan)
    assert scrub(store, [m]).ok  # only what the manifests name
    report = scrub(store, [m], all_chunks=True, remove_damaged=True)
    assert report.damaged == {orphan: []} and report.removed == 1
    victim = m.chunks[1].digest
    damage_chunk(store, victim)
    assert scrub(store, [m], remove_damaged=True).damaged == {victim: ["b"]}
    fresh = ChunkStore(store.backend)
    again = backup_volume(
        fresh, image, backup_id="b2", volume_id="v", chunk_size=CS, previous=m,
        backup_type=INCREMENTAL,
    )  # an incremental now stores it again
    assert scrub(ChunkStore(store.backend), [m, again]).ok


def test_gc_removes_stale_temporaries(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s")
    store = ChunkStore(backend)
    store.put_chunk(b"x" * 1000)
    store.flush()
    leftover = backend.root / "packs" / ".tmp-deadbeef"
    leftover.write_bytes(b"half a pack")
    stamp = time.time() - 7200
    os.utime(leftover, (stamp, stamp))
    report = collect_garbage(store, grace_seconds=3600)
    assert report.temporaries_removed == 1 and not leftover.exists()
    assert report.packs_condemned == 0  # the pack itself is young (and unreferenced)
