"""Changed-block tracking: mark, take/commit/restore, persistence, crash distrust, and an
INCREMENTAL from the record that matches one that compares content."""

from __future__ import annotations

import random
import time
from pathlib import Path

from ocibv.engine.backends import MemoryBackend
from ocibv.engine.backup import backup_volume, restore_volume
from ocibv.engine.changed_blocks import GRANULARITY, ChangedBlocks, bitmap_path
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.live_volume import LiveVolume
from ocibv.engine.manifest import FULL, INCREMENTAL
from tests.engine.store_helpers import KIB, MIB, mixed_image, sha256, write_image

G = GRANULARITY
SIZE = 10 * G + 1000  # a partial last block


def fresh(tmp_path: Path) -> ChangedBlocks:
    record = ChangedBlocks.open(tmp_path / "vol.img", SIZE)
    assert not record.trusted  # no saved record yet
    return record


def test_marks_round_to_blocks_merge_and_clip(tmp_path: Path) -> None:
    record = fresh(tmp_path)
    record.mark(G + 5, 1)
    record.mark(2 * G, 10)
    record.mark(5 * G - 1, 2)  # straddles blocks 4 and 5
    record.mark(SIZE - 1, 500)  # past the end: clipped
    record.mark(0, 0)
    assert list(record.ranges()) == [(G, 2 * G), (4 * G, 2 * G), (10 * G, 1000)]


def test_whole_bytes_of_the_bitmap_mark_and_list_fast(tmp_path: Path) -> None:
    size = 1024**4  # 1 TiB: 16 M blocks, 2 MiB of bitmap
    record = ChangedBlocks(tmp_path / "big.img", size)
    record.mark(3 * G, size - 3 * G - 1)
    assert list(record.ranges()) == [(3 * G, size - 3 * G)]


def test_take_clears_and_restore_puts_back(tmp_path: Path) -> None:
    record = fresh(tmp_path)
    record.mark(0, G)
    capture = record.take()
    assert list(record.ranges()) == []
    record.mark(3 * G, G)  # written while the backup runs
    capture.restore()
    assert list(record.ranges()) == [(0, G), (3 * G, G)]


def test_ranges_are_valid_only_against_the_committed_backup(tmp_path: Path) -> None:
    record = fresh(tmp_path)
    first = record.take()
    assert first.ranges_since(None) is None  # untrusted: compare content
    first.commit("backup-1")
    assert record.trusted and record.base == "backup-1"
    record.mark(G, G)
    second = record.take()
    assert second.ranges_since("backup-1") == [(G, G)]
    assert second.ranges_since("backup-0") is None  # an older base: the record cannot vouch


def test_clean_close_persists_and_crash_is_untrusted(tmp_path: Path) -> None:
    image = tmp_path / "vol.img"
    record = fresh(tmp_path)
    record.take().commit("b1")
    record.mark(2 * G, 3)
    record.close()
    reopened = ChangedBlocks.open(image, SIZE)
    assert reopened.trusted and reopened.base == "b1"
    assert list(reopened.ranges()) == [(2 * G, G)]
    reopened.mark(7 * G, 1)
    # No close: the process died. The file on disk says "in use".
    after_crash = ChangedBlocks.open(image, SIZE)
    assert not after_crash.trusted
    assert after_crash.take().ranges_since("b1") is None


def test_damaged_or_resized_record_is_untrusted(tmp_path: Path) -> None:
    image = tmp_path / "vol.img"
    record = fresh(tmp_path)
    record.take().commit("b1")
    record.close()
    raw = bytearray(bitmap_path(image).read_bytes())
    raw[-6] ^= 0xFF
    bitmap_path(image).write_bytes(raw)
    assert not ChangedBlocks.open(image, SIZE).trusted
    record = ChangedBlocks.open(image, SIZE)
    record.take().commit("b2")
    record.close()
    assert not ChangedBlocks.open(image, SIZE + G).trusted
    ChangedBlocks.invalidate(image)
    assert not bitmap_path(image).exists()


def test_incremental_from_the_record_equals_a_content_comparison(tmp_path: Path) -> None:
    image = mixed_image(tmp_path / "vol.img", size=16 * MIB)
    store = ChunkStore(MemoryBackend())
    volume = LiveVolume(image)
    try:
        capture = volume.changed.take() if volume.changed else None
        assert capture is not None and capture.ranges_since(None) is None
        full = backup_volume(store, image, backup_id="b1", volume_id="v", backup_type=FULL)
        capture.commit("b1")
        rng = random.Random(3)
        for _ in range(40):
            offset = rng.randrange(0, 16 * MIB - 8 * KIB)
            volume.write(offset, rng.randbytes(rng.choice([512, 4 * KIB, 70 * KIB])))
        volume.trim(2 * MIB, 1 * MIB)
        volume.zero(9 * MIB, 5000, may_trim=False)
        capture = volume.changed.take() if volume.changed else None
        assert capture is not None
        ranges = capture.ranges_since("b1")
        assert ranges is not None and sum(n for _, n in ranges) < 6 * MIB
        tracked = backup_volume(
            store, image, backup_id="b2", volume_id="v", backup_type=INCREMENTAL, previous=full,
            changed_ranges=ranges,
        )  # fmt: skip
        compared = backup_volume(
            store, image, backup_id="b3", volume_id="v", backup_type=INCREMENTAL, previous=full
        )
        assert tracked.chunks == compared.chunks
        restored = write_image(tmp_path / "restored.img", 0, [])
        restore_volume(store, tracked, restored)
        assert sha256(restored) == sha256(image)
    finally:
        volume.close()


def test_shutdown_while_a_backup_holds_a_capture_is_not_clean(tmp_path: Path) -> None:
    image = tmp_path / "vol.img"
    record = fresh(tmp_path)
    record.take().commit("b1")
    record.mark(0, G)
    record.take()  # a backup is running and has not finished when the server stops
    record.close()
    assert not ChangedBlocks.open(image, SIZE).trusted


def test_an_image_written_behind_the_record_makes_it_untrusted(tmp_path: Path) -> None:
    """A host writing the image file directly (not through its LiveVolume) changes its mtime:
    the record can no longer vouch for what changed."""
    image = tmp_path / "vol.img"
    image.write_bytes(bytes(SIZE))
    record = fresh(tmp_path)
    record.take().commit("b1")
    record.close()
    record = ChangedBlocks.open(image, SIZE)
    assert record.trusted
    record.close()
    time.sleep(0.01)
    with open(image, "r+b") as handle:
        handle.write(b"behind its back")
    assert not ChangedBlocks.open(image, SIZE).trusted
