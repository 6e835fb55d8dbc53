"""Backups in a helper process (``engine.backup_process``): the same point-in-time bytes as
an in-process backup while writers keep writing, errors carried back, helpers reused."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibv.engine.backends import open_backend
from ocibv.engine.backup import restore_volume
from ocibv.engine.backup_process import BackupProcess, BackupRequest, BackupWorkers
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.errors import VolumeImageError
from ocibv.engine.live_volume import LiveVolume
from ocibv.engine.manifest import FULL, INCREMENTAL, load_manifest
from ocibv.engine.snapshot import begin_group
from tests.engine.store_helpers import KIB, MIB, mixed_image, write_image, writing_randomly

SIZE = 16 * MIB


@pytest.fixture
def workers() -> Iterator[BackupWorkers]:
    pool = BackupWorkers()
    yield pool
    pool.close()


def _request(url: str, volume: LiveVolume, backup_id: str, **kw: object) -> BackupRequest:
    base = dict(store_url=url, image_path=volume.path, backup_id=backup_id, volume_id="v",
                chunk_size=256 * KIB, previous_id=None, backup_type=FULL, changed_ranges=None,
                workers=2, group_backup_id=None, created_at=None, size=volume.size)
    base.update(kw)
    return BackupRequest(**base)  # type: ignore[arg-type]


def test_helper_backs_up_the_point_in_time_under_writers(
    workers: BackupWorkers, tmp_path: Path
) -> None:
    volume = LiveVolume(mixed_image(tmp_path / "vol.img", size=SIZE))
    url = f"file://{tmp_path / 'store'}"
    try:
        expected = volume.path.read_bytes()
        snap = begin_group([volume])
        progress: list[tuple[int, int]] = []
        with writing_randomly(volume, SIZE):
            result = workers.backup(_request(url, volume, "b1"), snap.members[0].view,
                                    lambda done, total: progress.append((done, total)))
        snap.end(committed_backup_ids={0: "b1"})
        assert progress and progress[-1][0] > 0  # reported through the serving process
        store = ChunkStore(open_backend(url))
        manifest = load_manifest(store.backend, "b1")
        assert (result.backup_id, result.stored_bytes) == ("b1", manifest.stored_bytes)
        assert result.manifest == manifest  # small: sent back whole, as saved
        restored = write_image(tmp_path / "restored.img", 0, [])
        restore_volume(store, manifest, restored)
        assert restored.read_bytes() == expected

        # the next backup reuses the helper (its chunk store and the manifest it wrote)
        after = volume.path.read_bytes()
        snap = begin_group([volume])
        ranges = snap.members[0].capture.ranges_since("b1")  # type: ignore[union-attr]
        assert ranges
        workers.backup(_request(url, volume, "b2", previous_id="b1",
                                backup_type=INCREMENTAL, changed_ranges=ranges),
                       snap.members[0].view)
        snap.end(committed_backup_ids={0: "b2"})
        store = ChunkStore(open_backend(url))
        restore_volume(store, load_manifest(store.backend, "b2"), restored)
        assert restored.read_bytes() == after
    finally:
        volume.close()


def test_helper_errors_come_back_and_the_helper_stays_usable(
    workers: BackupWorkers, tmp_path: Path
) -> None:
    volume = LiveVolume(mixed_image(tmp_path / "vol.img", size=SIZE))
    url = f"file://{tmp_path / 'store'}"
    try:
        snap = begin_group([volume])
        with pytest.raises(VolumeImageError, match="cannot open volume image"):
            workers.backup(_request(url, volume, "b1", image_path=tmp_path / "missing.img"),
                           snap.members[0].view)
        result = workers.backup(_request(url, volume, "b1"), snap.members[0].view)
        snap.end(committed_backup_ids={0: "b1"})
        assert result.stored_bytes > 0
    finally:
        volume.close()


def test_a_big_manifest_comes_back_as_its_table_file(
    workers: BackupWorkers, tmp_path: Path
) -> None:
    """Past ``RETURNED_ENTRIES_MAX`` entries the helper sends its chunk table's file
    descriptor, not the entries; both processes then read that one file (the helper's
    own reads for the next INCREMENTAL do not disturb the serving process's)."""
    from ocibv.engine.backup_process import RETURNED_ENTRIES_MAX
    from ocibv.engine.chunk_table import ChunkTable

    chunk = 4 * KIB
    count = RETURNED_ENTRIES_MAX + 3
    image = tmp_path / "vol.img"
    with open(image, "wb") as f:
        f.write(b"".join((n + 1).to_bytes(8, "little") + bytes(chunk - 8) for n in range(count)))
    volume = LiveVolume(image)
    url = f"file://{tmp_path / 'store'}"
    try:
        snap = begin_group([volume])
        result = workers.backup(_request(url, volume, "big", chunk_size=chunk),
                                snap.members[0].view)
        snap.end(committed_backup_ids={0: "big"})
        store = ChunkStore(open_backend(url))
        assert result.table_entries == count
        assert isinstance(result.manifest.chunks, ChunkTable)
        assert result.manifest == load_manifest(store.backend, "big")

        with open(image, "r+b") as f:
            f.seek(5 * chunk)
            f.write(b"changed")
        snap = begin_group([volume])
        workers.backup(_request(url, volume, "next", chunk_size=chunk, previous_id="big",
                                backup_type=INCREMENTAL, changed_ranges=[(5 * chunk, 7)]),
                       snap.members[0].view)
        snap.end(committed_backup_ids={0: "next"})
        assert result.manifest == load_manifest(store.backend, "big")
        assert result.manifest.chunks[5] != load_manifest(store.backend, "next").chunks[5]
    finally:
        volume.close()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_helper_leaves_a_cpu_to_clients_while_they_make_requests(tmp_path: Path) -> None:
    volume = LiveVolume(mixed_image(tmp_path / "vol.img", size=SIZE))
    url = f"file://{tmp_path / 'store'}"
    every_cpu = os.sched_getaffinity(0)
    helper = BackupProcess()
    try:
        for backup_id, foreground in (("b1", itertools.count().__next__), ("b2", lambda: 7)):
            seen: list[set[int]] = []

            def progress(done: int, total: int, seen: list[set[int]] = seen) -> None:
                seen.extend(os.sched_getaffinity(int(t))
                            for t in os.listdir(f"/proc/{helper.proc.pid}/task"))

            snap = begin_group([volume])
            helper.run(_request(url, volume, backup_id), snap.members[0].view, progress,
                       foreground)
            snap.end(committed_backup_ids={0: backup_id})
            # while requests came (b1), no helper thread ran on the first CPU; without
            # any (b2), every thread could run anywhere; after the backup, all CPUs again
            expected = every_cpu - {min(every_cpu)} if backup_id == "b1" else every_cpu
            assert seen and all(cpus == expected for cpus in seen)
            assert all(os.sched_getaffinity(int(t)) == every_cpu
                       for t in os.listdir(f"/proc/{helper.proc.pid}/task"))
    finally:
        helper.close()
        volume.close()
