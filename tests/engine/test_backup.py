"""Backup and restore: exact bytes, holes kept, incrementals cost only what changed."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest

from ocibv.engine.backends import LocalBackend
from ocibv.engine.backup import backup_volume, collect_garbage, restore_volume
from ocibv.engine.chunk_store import ChunkStore, chunk_digest
from ocibv.engine.errors import ChunkNotFound, IntegrityError
from ocibv.engine.manifest import (
    FULL,
    INCREMENTAL,
    Manifest,
    delete_manifest,
    list_manifests,
    load_manifest,
)
from tests.engine.store_helpers import (
    KIB,
    MIB,
    damage_chunk,
    drop_chunk,
    extents,
    holes_kept,
    mixed_image,
    random_bytes,
    sha256,
    write_image,
)

CS = 256 * KIB


def chunk_count(store: ChunkStore) -> int:
    return len(list(store.iter_digests()))


def test_roundtrip_keeps_bytes_and_holes(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "vol.img")
    seen: list[tuple[int, int]] = []
    m = backup_volume(
        store,
        image,
        backup_id="b1",
        volume_id="v",
        chunk_size=CS,
        backup_type=FULL,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert load_manifest(store.backend, "b1") == m
    assert m.volume_size == image.stat().st_size and m.type == "FULL"
    stored = {e.chunk_index for e in m.chunks}
    assert not stored & set(range(5 * MIB // CS, 7 * MIB // CS))  # zero chunks not stored
    assert seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)
    target = tmp_path / "restored.img"
    restore_volume(store, m, target)
    assert target.stat().st_size == image.stat().st_size
    assert sha256(target) == sha256(image)
    assert holes_kept(image, target)
    allocated = sum(e - s for s, e in extents(target))
    assert allocated <= 3 * MIB + 3 * MIB + 64 * KIB + 12 * KIB  # no zero block written


def test_holes_are_never_read(tmp_path: Path) -> None:
    store = ChunkStore(LocalBackend(tmp_path / "s"))
    image = write_image(tmp_path / "huge.img", 1 << 40, [(1 << 39, b"data" * 1000)])  # 1 TiB
    start = time.monotonic()
    m = backup_volume(store, image, backup_id="big", volume_id="v", backup_type=FULL)
    assert time.monotonic() - start < 5  # reading 1 TiB of holes would take minutes
    assert [e.chunk_index for e in m.chunks] == [(1 << 39) // m.chunk_size]


def test_incremental_stores_only_changed_chunks(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "vol.img")
    original = sha256(image)
    full = backup_volume(
        store, image, backup_id="full", volume_id="v", chunk_size=CS, backup_type=FULL
    )
    before = chunk_count(store)
    with open(image, "r+b") as f:  # three changed chunks: one of them in a former hole
        for offset in (1 * MIB + 100, 8 * MIB + 5000, 20 * MIB):
            f.seek(offset)
            f.write(random_bytes(4096, offset))
    incr = backup_volume(
        store,
        image,
        backup_id="incr",
        volume_id="v",
        chunk_size=CS,
        previous=full,
        backup_type=INCREMENTAL,
    )
    assert incr.type == "INCREMENTAL"
    assert chunk_count(store) == before + 3
    assert len(incr.digests() - full.digests()) == 3
    restore_volume(store, incr, tmp_path / "incr.img")
    assert sha256(tmp_path / "incr.img") == sha256(image)
    restore_volume(store, full, tmp_path / "full.img")
    assert sha256(tmp_path / "full.img") == original


def test_deleting_the_full_never_breaks_the_incremental(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "vol.img")
    full = backup_volume(
        store, image, backup_id="full", volume_id="v", chunk_size=CS, backup_type=FULL
    )
    with open(image, "r+b") as f:
        f.seek(2 * MIB)
        f.write(random_bytes(CS, 9))
    incr = backup_volume(
        store,
        image,
        backup_id="incr",
        volume_id="v",
        chunk_size=CS,
        previous=full,
        backup_type=INCREMENTAL,
    )
    delete_manifest(store.backend, "full")
    first = collect_garbage(store, grace_seconds=0, now=time.time() + 60)
    assert first.packs_condemned == 1 and first.packs_deleted == 0  # planned, not yet gone
    report = collect_garbage(store, grace_seconds=0, now=time.time() + 60)
    assert report.packs_deleted == 1  # only the chunk the incremental overwrote
    assert list_manifests(store.backend) == ["incr"]
    restore_volume(store, incr, tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(image)


def test_changed_ranges_read_only_those_chunks(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "vol.img")
    full = backup_volume(
        store, image, backup_id="full", volume_id="v", chunk_size=CS, backup_type=FULL
    )
    with open(image, "r+b") as f:
        f.seek(1 * MIB)
        f.write(random_bytes(100, 10))  # reported as changed
        f.seek(8 * MIB)
        f.write(random_bytes(100, 11))  # NOT reported: proves unchanged chunks are not read
    totals: list[int] = []
    incr = backup_volume(
        store,
        image,
        backup_id="cbt",
        volume_id="v",
        chunk_size=CS,
        previous=full,
        backup_type=INCREMENTAL,
        changed_ranges=[(1 * MIB, 100)],
        progress=lambda d, t: totals.append(t),
    )
    assert set(totals) == {CS}  # one chunk read
    by_index = {e.chunk_index: e.digest for e in incr.chunks}
    old = {e.chunk_index: e.digest for e in full.chunks}
    assert by_index[1 * MIB // CS] != old[1 * MIB // CS]
    assert by_index[8 * MIB // CS] == old[8 * MIB // CS]  # taken from the previous backup
    assert {i: d for i, d in by_index.items() if i != 1 * MIB // CS} == {
        i: d for i, d in old.items() if i != 1 * MIB // CS
    }


def test_changed_ranges_handle_growth_and_zeroing(store: ChunkStore, tmp_path: Path) -> None:
    image = write_image(tmp_path / "vol.img", 1 * MIB + 100, [(0, random_bytes(1 * MIB + 100, 1))])
    full = backup_volume(
        store, image, backup_id="full", volume_id="v", chunk_size=CS, backup_type=FULL
    )
    os.truncate(image, 2 * MIB)  # the volume grew: the old partial last chunk is now full
    with open(image, "r+b") as f:
        f.write(bytes(CS))  # chunk 0 zeroed: it must disappear from the manifest
    incr = backup_volume(
        store,
        image,
        backup_id="grown",
        volume_id="v",
        chunk_size=CS,
        previous=full,
        backup_type=INCREMENTAL,
        changed_ranges=[(0, CS)],
    )
    assert incr.volume_size == 2 * MIB
    assert [e.chunk_index for e in incr.chunks] == [1, 2, 3, 4]
    restore_volume(store, incr, tmp_path / "r.img")
    assert sha256(tmp_path / "r.img") == sha256(image)


def test_restore_refuses_damaged_data(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "vol.img")
    m = backup_volume(store, image, backup_id="b", volume_id="v", chunk_size=CS, backup_type=FULL)
    victim = m.chunks[len(m.chunks) // 2].digest
    damage_chunk(store, victim)
    with pytest.raises(IntegrityError, match=victim):
        restore_volume(store, m, tmp_path / "r.img")
    drop_chunk(store, victim)
    with pytest.raises(ChunkNotFound, match=victim):
        restore_volume(store, m, tmp_path / "r.img")


def test_full_repairs_what_incremental_trusts(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "vol.img")
    first = backup_volume(
        store, image, backup_id="b1", volume_id="v", chunk_size=CS, backup_type=FULL
    )
    victim = first.chunks[0].digest
    damage_chunk(store, victim)
    backup_volume(
        store,
        image,
        backup_id="b2",
        volume_id="v",
        chunk_size=CS,
        previous=first,
        backup_type=INCREMENTAL,
    )
    with pytest.raises(IntegrityError):
        ChunkStore(store.backend).get_chunk(victim)  # an incremental trusts what is there
    backup_volume(store, image, backup_id="b3", volume_id="v", chunk_size=CS, backup_type=FULL)
    restore_volume(store, first, tmp_path / "r.img")  # the old backup is whole again
    assert sha256(tmp_path / "r.img") == sha256(image)


def test_same_manifest_whatever_the_worker_count(store: ChunkStore, tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "vol.img")
    manifests = [
        backup_volume(
            store,
            image,
            backup_id=f"w{w}",
            volume_id="v",
            chunk_size=64 * KIB,
            backup_type=FULL,
            workers=w,
        ).chunks
        for w in (1, 3)
    ]
    assert manifests[0] == manifests[1]
    assert manifests[0][0].digest == chunk_digest(image.read_bytes()[1 * MIB : 1 * MIB + 64 * KIB])


def test_memory_does_not_grow_with_the_volume(tmp_path: Path) -> None:
    store = ChunkStore(LocalBackend(tmp_path / "s"), pack_size=1 * MIB)
    image = write_image(tmp_path / "vol.img", 48 * MIB, [(0, random_bytes(48 * MIB, 3))])
    tracemalloc.start()
    try:
        m = backup_volume(
            store, image, backup_id="b", volume_id="v", chunk_size=CS, backup_type=FULL
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(m.chunks) == 48 * MIB // CS
    # a batch per thread and the packs being written (1 MiB each here), not the 48 MiB volume
    from ocibv.engine import backup as backup_module
    from ocibv.engine.chunk_store import MAX_UPLOADS

    batches = 2 * backup_module.THREADS_PER_WORKER * backup_module.BATCH_BYTES
    assert peak < batches + (MAX_UPLOADS + 1) * MIB + 4 * MIB < 48 * MIB


@pytest.mark.parametrize("remote", [False, True])
def test_restore_paths_keep_bytes_and_holes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote: bool
) -> None:
    """Local restores read spans and start write-out as they go; remote ones read whole
    packs. Both verify every chunk and leave holes and zero blocks unwritten."""
    import ocibv.engine.backup as backup_module
    from ocibv.engine.backends import MemoryBackend

    monkeypatch.setattr(backup_module, "WRITEBACK_BYTES", 256 * KIB)  # write-out often
    backend = MemoryBackend()
    monkeypatch.setattr(backend, "remote", remote)
    store = ChunkStore(backend, pack_size=2 * MIB)
    image = mixed_image(tmp_path / "vol.img")
    m = backup_volume(store, image, backup_id="b", volume_id="v", chunk_size=CS, backup_type=FULL)
    target = tmp_path / "restored.img"
    restore_volume(ChunkStore(backend), m, target)
    assert sha256(target) == sha256(image) and holes_kept(image, target)
    victim = m.chunks[-1].digest
    damage_chunk(store, victim)
    with pytest.raises(IntegrityError, match=victim):
        restore_volume(ChunkStore(backend), m, tmp_path / "r.img")


def test_restore_plans_a_window_of_the_manifest_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore plans its reads a window of entries at a time (a whole manifest planned at
    once cost ~1 KB a chunk: 164 MB at 131k chunks); a chunk that recurs in a later window
    is read again there, and every byte and hole still comes out right."""
    import ocibv.engine.backup as backup_module

    monkeypatch.setattr(backup_module, "RESTORE_WINDOW", 64)
    planned: list[int] = []
    plan_reads = ChunkStore.plan_reads

    def spy(self: ChunkStore, digests: list[str], span: int) -> list[list[str]]:
        digests = list(digests)
        planned.append(len(digests))
        return plan_reads(self, digests, span)

    monkeypatch.setattr(ChunkStore, "plan_reads", spy)
    cs = 4 * KIB
    same = random_bytes(cs, 9)
    regions = [(n * cs, random_bytes(cs, 100 + n)) for n in range(0, 1000, 3)]
    regions += [(5 * cs, same), (700 * cs, same), (701 * cs, same)]  # one chunk, 3 windows
    image = write_image(tmp_path / "vol.img", 1024 * cs + 100, regions)
    store = ChunkStore(LocalBackend(tmp_path / "s"))
    m = backup_volume(store, image, backup_id="b", volume_id="v", chunk_size=cs,
                      backup_type=FULL)
    target = tmp_path / "restored.img"
    restore_volume(ChunkStore(LocalBackend(tmp_path / "s")), m, target)
    assert sha256(target) == sha256(image) and holes_kept(image, target)
    assert max(planned) <= 64 and len(planned) == -(-len(m.chunks) // 64)


def test_kept_runs_match_the_entry_by_entry_merge() -> None:
    """A changed-block INCREMENTAL copies the unchanged stretches of its base's chunk table
    as runs; expanded, they are exactly the entries the entry-by-entry merge keeps."""
    import bisect
    import random

    from ocibv.engine import backup as engine_backup
    from ocibv.engine.manifest import ChunkEntry, ChunkTable

    rng = random.Random(7)
    for trial in range(40):
        slots = rng.randint(1, 3000 if trial % 4 else 20000)  # past a block read at once
        indices = sorted(rng.sample(range(slots), rng.randint(0, slots)))
        entries = [ChunkEntry(i, f"{i:064x}", CS, 100) for i in indices]
        table = ChunkTable(entries)
        changed = sorted(rng.sample(range(slots), rng.randint(0, min(slots, 50))))
        ranges = [(i * CS, rng.randint(1, CS)) for i in changed]
        reader = engine_backup._ImageReader(-1, slots * CS, CS)
        expected = list(engine_backup._merge_changed(entries, ranges, slots * CS, CS, reader))
        got: list[int | ChunkEntry] = []
        for item in engine_backup._kept_runs(table, changed):
            if isinstance(item, engine_backup.KeptRun):
                assert 0 < item.stop - item.first <= engine_backup.KEPT_PER_BATCH
                got.extend(table[item.first : item.stop])
            else:
                got.append(item)
        assert got == expected, trial
        for i in range(0, slots + 2, 7):  # position_of agrees with a plain search
            lo = rng.randint(0, len(table))
            want = max(lo, bisect.bisect_left(indices, i))
            assert table.position_of(i, lo) == want


def _rewrite_and_back_up(
    store: ChunkStore, image: Path, backup_id: str, previous: Manifest, seed: int,
    changed_ranges: list[tuple[int, int]] | None = None,
) -> Manifest:
    """Write 100 new bytes at 2 MiB of ``image``, then an INCREMENTAL on ``previous``."""
    with open(image, "r+b") as f:
        f.seek(2 * MIB)
        f.write(random_bytes(100, seed))
    return backup_volume(store, image, backup_id=backup_id, volume_id="v", chunk_size=CS,
                         previous=previous, backup_type=INCREMENTAL,
                         changed_ranges=changed_ranges)


def test_incremental_verifies_kept_entries_by_their_packs(
    store: ChunkStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed-block INCREMENTAL looks up only the chunks it read; the entries it keeps
    pass W2 through the packs its base was found in — until one of them is condemned,
    when every entry is looked up again and the condemned ones are stored again."""
    import json

    from ocibv.engine import keys
    from ocibv.engine.index import PackIndex, existing_packs

    image = mixed_image(tmp_path / "vol.img")
    full = backup_volume(store, image, backup_id="full", volume_id="v", chunk_size=CS,
                         backup_type=FULL)
    assert full.verified_packs and full.verified_packs <= existing_packs(store.backend)
    looked_up: list[int] = []
    real = PackIndex.without_usable_copy

    def counting(self: PackIndex, digests, usable, found_in=None):  # type: ignore[no-untyped-def]
        listed = list(digests)
        looked_up.append(len(listed))
        return real(self, listed, usable, found_in)

    monkeypatch.setattr(PackIndex, "without_usable_copy", counting)

    def incremental(backup_id: str, previous: Manifest, seed: int) -> Manifest:
        return _rewrite_and_back_up(store, image, backup_id, previous, seed,
                                    changed_ranges=[(2 * MIB, 100)])

    incr = incremental("i1", full, 1)
    assert looked_up == [1]  # the chunk read, not the volume's
    assert incr.verified_packs is not None and full.verified_packs <= incr.verified_packs

    kept = {e.digest for e in incr.chunks if e.chunk_index != 2 * MIB // CS}
    victim = store.index.locations(sorted(kept)[0])[0].pack
    plan = {"version": 1, "packs": [victim]}
    store.backend.put(keys.plan_key("0000000000001-abc"), json.dumps(plan).encode())
    looked_up.clear()
    again = incremental("i2", incr, 2)
    # vouching refused: every entry looked up, then again after the condemned were stored
    assert looked_up == [len(again.digests())] * 2
    assert victim not in (again.verified_packs or {victim})
    assert store.missing(again.digests()) == set()
    store.backend.delete(keys.plan_key("0000000000001-abc"))
    restored = tmp_path / "restored.img"
    restore_volume(store, again, restored)
    assert sha256(restored) == sha256(image)


def test_content_rescan_keeps_unchanged_chunks_without_lookups(
    store: ChunkStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A content-rescan INCREMENTAL keeps a chunk whose digest is its previous entry's
    without asking the index; W2 still stores again what a GC plan condemned meanwhile."""
    import json

    from ocibv.engine import keys

    image = mixed_image(tmp_path / "vol.img")
    full = backup_volume(store, image, backup_id="full", volume_id="v", chunk_size=CS,
                         backup_type=FULL)
    asked: list[str] = []
    real = ChunkStore._usable_many

    def counting(self: ChunkStore, digests: list[str]):  # type: ignore[no-untyped-def]
        asked.extend(digests)
        return real(self, digests)

    monkeypatch.setattr(ChunkStore, "_usable_many", counting)

    def incremental(backup_id: str, previous: Manifest, seed: int) -> Manifest:
        return _rewrite_and_back_up(store, image, backup_id, previous, seed)

    incr = incremental("i1", full, 1)
    changed = [e.digest for e in incr.chunks if e.chunk_index == 2 * MIB // CS]
    assert asked == changed  # the one changed chunk, not the volume's
    assert [e for e in incr.chunks if e.chunk_index != 2 * MIB // CS] == [
        e for e in full.chunks if e.chunk_index != 2 * MIB // CS
    ]

    kept = sorted(e.digest for e in incr.chunks if e.chunk_index != 2 * MIB // CS)
    victim = store.index.locations(kept[0])[0].pack
    store.backend.put(keys.plan_key("0000000000001-abc"),
                      json.dumps({"version": 1, "packs": [victim]}).encode())
    store.refresh()
    again = incremental("i2", incr, 2)
    assert store.missing(again.digests()) == set()  # the condemned were stored again
    store.backend.delete(keys.plan_key("0000000000001-abc"))
    restored = tmp_path / "restored.img"
    restore_volume(store, again, restored)
    assert sha256(restored) == sha256(image)
