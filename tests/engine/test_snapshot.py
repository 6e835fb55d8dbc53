"""Copy-before-write snapshots: exact point-in-time bytes under concurrent writers,
crash-consistent group cuts, bounded writer hold, preserved data freed."""

from __future__ import annotations

import os
import random
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibv.engine.backends import MemoryBackend
from ocibv.engine.backup import backup_volume, restore_volume
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.errors import VolumeImageError
from ocibv.engine.live_volume import LiveVolume
from ocibv.engine.manifest import FULL
from ocibv.engine.snapshot import BLOCK, begin_group
from tests.engine.store_helpers import KIB, MIB, mixed_image, write_image, writing_randomly

SIZE = 16 * MIB  # mixed_image needs 13 MiB


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[LiveVolume]:
    image = mixed_image(tmp_path / "vol.img", size=SIZE)
    vol = LiveVolume(image)
    yield vol
    vol.close()


def test_reader_sees_exactly_the_point_in_time_under_writers(volume: LiveVolume) -> None:
    before = volume.path.read_bytes()
    snap = begin_group([volume])
    view = snap.members[0].view
    first_half = view.read(0, SIZE // 2)
    rng = random.Random(5)

    def writer(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(150):
            offset = r.randrange(0, SIZE - 100 * KIB)
            action = r.random()
            if action < 0.7:
                volume.write(offset, r.randbytes(r.choice([1, 4 * KIB, 65 * KIB, 100 * KIB])))
            elif action < 0.85:
                volume.trim(offset, r.choice([4 * KIB, 200 * KIB]))
            else:
                volume.zero(offset, 70 * KIB, may_trim=False)

    threads = [threading.Thread(target=writer, args=(rng.random(),)) for _ in range(4)]
    for t in threads:
        t.start()
    second_half = b"".join(view.read(o, 256 * KIB) for o in range(SIZE // 2, SIZE, 256 * KIB))
    for t in threads:
        t.join()
    assert first_half + second_half == before
    assert volume.path.read_bytes() != before  # the writers really wrote
    with pytest.raises(VolumeImageError):
        view.read(0, BLOCK)  # read once: later writes were not preserved for it
    snap.end()


def test_only_unread_blocks_are_preserved_and_end_frees_them(volume: LiveVolume) -> None:
    snap = begin_group([volume])
    view = snap.members[0].view
    view.read(MIB, BLOCK)  # the backup has read this block
    volume.write(MIB, b"x" * BLOCK)
    assert view.preserved_bytes == 0
    volume.write(MIB + BLOCK, b"y" * 10)  # unread data block: preserved whole
    assert view.preserved_bytes == BLOCK
    volume.write(3 * BLOCK + 3, b"z")  # a hole at the point in time: nothing to store
    assert view.preserved_bytes == BLOCK
    assert not [p for p in volume.path.parent.iterdir() if ".cow-" in p.name]
    snap.end()
    with pytest.raises(OSError):
        os.fstat(view._pfd)  # the preserved data is gone with its descriptor
    volume.write(MIB + 2 * BLOCK, b"after")  # no snapshot: nothing preserved, no error


def test_write_now_keeps_the_point_in_time_or_declines(volume: LiveVolume) -> None:
    """The event loop's write (``write_now``): it preserves what a snapshot needs, as
    ``write`` does; it declines, writing nothing, while the gate is closed or when a block
    to preserve would have to be read from the disk."""
    before = volume.path.read_bytes()
    snap = begin_group([volume])
    view = snap.members[0].view
    assert volume.write_now(MIB + 5, b"n" * 4 * KIB)  # cached: preserved, then written
    assert view.preserved_bytes == BLOCK
    volume.gate.close()
    assert not volume.write_now(8 * MIB, b"g" * 4 * KIB)  # held: the caller queues it
    volume.gate.open()
    data = next(o for o in range(2 * MIB, SIZE, BLOCK) if before[o : o + BLOCK].strip(b"\0"))
    os.fsync(volume.fd)  # clean pages, which the kernel can then evict
    os.posix_fadvise(volume.fd, 0, 0, os.POSIX_FADV_DONTNEED)
    # no cache probe first: a missed RWF_NOWAIT read starts readahead of the block
    declined = not volume.write_now(data, b"d" * 4 * KIB)
    assert view.read(0, SIZE) == before
    snap.end()
    after = volume.path.read_bytes()
    assert after[MIB + 5 : MIB + 5 + 4 * KIB] == b"n" * 4 * KIB
    assert after[8 * MIB : 8 * MIB + 4 * KIB] == before[8 * MIB : 8 * MIB + 4 * KIB]
    if not declined:
        pytest.skip("this file system kept the evicted block cached (eviction is a hint)")
    assert after[data : data + 4 * KIB] == before[data : data + 4 * KIB]  # nothing written


def test_writers_are_not_blocked_for_the_length_of_the_backup(volume: LiveVolume) -> None:
    snap = begin_group([volume])
    started = time.monotonic()
    for i in range(64):
        volume.write(i * BLOCK, b"w" * BLOCK)  # the backup has read nothing yet
    assert time.monotonic() - started < 5
    snap.end()


def test_backup_through_the_snapshot_restores_the_point_in_time(
    volume: LiveVolume, tmp_path: Path
) -> None:
    expected = volume.path.read_bytes()
    store = ChunkStore(MemoryBackend())
    snap = begin_group([volume])
    member = snap.members[0]
    with writing_randomly(volume, SIZE):
        manifest = backup_volume(
            store,
            volume.path,
            backup_id="b1",
            volume_id="v",
            backup_type=FULL,
            snapshot=member.view,
        )
    snap.end(committed_backup_ids={0: "b1"})
    restored = write_image(tmp_path / "restored.img", 0, [])
    restore_volume(store, manifest, restored)
    assert restored.read_bytes() == expected
    assert volume.changed is not None and volume.changed.base == "b1"


def test_group_cut_is_consistent_across_volumes(tmp_path: Path) -> None:
    """Records numbered n are written to A, then to B. At a crash-consistent instant, B
    never holds a record that A does not, and A is at most one record ahead of B."""
    slots = 64
    vols = []
    for name in ("a", "b"):
        write_image(tmp_path / f"{name}.img", slots * 4 * KIB, [])
        vols.append(LiveVolume(tmp_path / f"{name}.img"))
    a, b = vols
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            record = struct.pack(">Q", n) * 512  # 4 KiB
            slot = (n % slots) * 4 * KIB
            a.write(slot, record)
            b.write(slot, record)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        cuts = []
        for _ in range(5):
            snap = begin_group([a, b])
            time.sleep(0.01)  # the writer keeps going meanwhile
            views = [m.view for m in snap.members]
            image_a = views[0].read(0, views[0].size)
            time.sleep(0.01)  # B would be ahead of A now, were it read live
            cuts.append([image_a, views[1].read(0, views[1].size)])
            snap.end()
    finally:
        stop.set()
        thread.join()
    for image_a, image_b in cuts:
        latest_a = max(struct.unpack_from(">Q", image_a, s * 4 * KIB)[0] for s in range(slots))
        latest_b = max(struct.unpack_from(">Q", image_b, s * 4 * KIB)[0] for s in range(slots))
        assert latest_b <= latest_a <= latest_b + 1
        for s in range(slots):  # every record is whole, never torn
            block = image_a[s * 4 * KIB : (s + 1) * 4 * KIB]
            assert block == block[:8] * 512
    for vol in vols:
        vol.close()


def test_stale_preserve_files_are_discarded_and_the_image_is_live(tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "vol.img", size=SIZE)
    stale = tmp_path / "vol.img.cow-0123456789ab"
    stale.write_bytes(b"old bytes of a crashed backup")
    volume = LiveVolume(image)
    assert not stale.exists()
    snap = begin_group([volume])
    volume.write(MIB, b"new")
    expected = image.read_bytes()
    # A crash now: the snapshot vanishes, the image already holds the live data.
    volume.close()
    assert image.read_bytes() == expected and expected[MIB : MIB + 3] == b"new"
    assert snap.members[0].view.preserved_bytes == BLOCK
