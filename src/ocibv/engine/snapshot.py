"""Point-in-time views of live volume images by copy-before-write, for group backups.

``begin_group`` holds the writers of every member volume (``WriteGate``) only while it
fixes the point in time: it installs a ``PointInTime`` on each image and takes each
volume's changed-block record, then lets the writers go. From then on every writer calls
``PointInTime.before_write`` before it changes a range: a 64 KiB block the backup has not
read yet has its old bytes copied to a preserve file beside the image first. The backup
reads through ``PointInTime.read``, which returns the point-in-time bytes; a block it has
read needs no preserving afterwards. ``GroupSnapshot.end`` detaches the views and deletes
the preserve files.

The image is only ever written by the writers themselves, so it always holds the live,
correct data: a crash mid-backup loses nothing but the backup. Preserve files are unlinked
as soon as they are opened (they vanish with the process), and ``discard_stale`` removes
any a crash could leave under another file system.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ocibv.engine.changed_blocks import Capture
from ocibv.engine.errors import VolumeImageError
from ocibv.engine.volume_files import read_if_cached, read_within

if TYPE_CHECKING:
    from ocibv.engine.live_volume import LiveVolume

BLOCK = 64 * 1024
"""Copy-before-write granularity: the changed-block granularity, a divisor of every chunk."""
_ZERO = -1  # the block read as zeros at the point in time; nothing stored
_READ = -2  # the backup has read the block; later writes need not preserve it
_WRITTEN_AFTER_READ = -3  # read by the backup, then overwritten: cannot be read again
_BEGIN_LOCK = threading.Lock()  # one point in time is fixed at a time: gates close in order


class WriteGate:
    """Counts writers in flight; ``close`` waits for them and holds new ones until ``open``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._closed = False

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._closed)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def enter_now(self) -> bool:
        """``writing``'s entry without waiting: False (and not entered) while closed;
        after True, call ``leave``."""
        with self._cond:
            if self._closed:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._closed)
            self._closed = True
            self._cond.wait_for(lambda: self._active == 0)

    def open(self) -> None:
        with self._cond:
            self._closed = False
            self._cond.notify_all()


def preserve_prefix(image_path: Path) -> str:
    return image_path.name + ".cow-"


def discard_stale(image_path: Path) -> None:
    """Remove preserve files a crash left beside ``image_path`` (call before attaching)."""
    for stale in image_path.parent.glob(preserve_prefix(image_path) + "*"):
        stale.unlink(missing_ok=True)


class PointInTime:
    """The bytes of one image as they were when the view was created.

    Invariant: a block with no entry in the state table has not been written since the
    point in time (every writer calls ``before_write`` first, which records an entry under
    the lock before the write starts), so the image still holds its point-in-time bytes.
    """

    def __init__(self, fd: int, size: int, image_path: Path, block: int = BLOCK) -> None:
        self.fd, self.size, self.block = fd, size, block
        path = image_path.with_name(preserve_prefix(image_path) + uuid.uuid4().hex[:12])
        self._pfd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.unlink(path)  # the data dies with the descriptor, even in a crash
        self._lock = threading.Lock()
        self._state: dict[int, int] = {}  # block -> preserve-file offset, _ZERO or _READ
        self._end = 0
        self.preserved_bytes = 0
        self._extents: list[tuple[int, int]] | None = None  # the last data_extents

    def close(self) -> None:
        """Free the preserved data."""
        os.close(self._pfd)

    def before_write(
        self, offset: int, length: int, *, fills: bool, cached_only: bool = False
    ) -> bool:
        """Writer hook: preserve the point-in-time bytes of every block of ``[offset,
        offset+length)`` the backup has not read yet. ``fills`` is False for trims and
        zeroing, after which the range reads as zeros: blocks that are holes need nothing.
        With ``cached_only`` (a write on the event loop) it stops and returns False at a
        block to preserve that is not in the page cache (the blocks before it are
        preserved; call again without it to finish); otherwise it returns True."""
        if length <= 0:
            return True
        first = offset // self.block
        last = min(offset + length, self.size) - 1
        if last < offset:
            return True
        blocks: Iterable[int] = range(first, last // self.block + 1)
        if not fills:
            blocks = self._data_blocks(first, last // self.block)
        with self._lock:
            for index in blocks:
                state = self._state.get(index)
                if state is None:
                    if not self._preserve(index, cached_only=cached_only):
                        return False
                elif state == _READ:
                    self._state[index] = _WRITTEN_AFTER_READ
        return True

    def _data_blocks(self, first: int, last: int) -> Iterator[int]:
        """Blocks in ``first..last`` that may hold data (SEEK_DATA); a hole stays a hole.
        Lazy: a whole-device discard (mkfs) must not build a list of every block."""
        pos, end = first * self.block, min((last + 1) * self.block, self.size)
        while pos < end:
            try:
                start = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError:
                break  # ENXIO: no data past pos
            if start >= end:
                break
            stop = min(os.lseek(self.fd, start, os.SEEK_HOLE), end)
            yield from range(max(start // self.block, first), (stop - 1) // self.block + 1)
            pos = stop

    def _preserve(self, index: int, *, cached_only: bool = False) -> bool:
        """Copy block ``index``'s bytes to the preserve file (or record it as zeros); with
        ``cached_only``, only if they are all in the page cache (else False, nothing done)."""
        start = index * self.block
        n = min(self.block, self.size - start)
        data = read_if_cached(self.fd, n, start) if cached_only else os.pread(self.fd, n, start)
        if data is None:
            return False
        if data.count(0) == len(data):
            self._state[index] = _ZERO
            return True
        written = 0
        while written < n:
            written += os.pwrite(self._pfd, memoryview(data)[written:], self._end + written)
        self._state[index] = self._end
        self._end += n
        self.preserved_bytes += n
        return True

    @property
    def preserve_fd(self) -> int:
        """The preserve file (a backup process reads preserved blocks through a copy)."""
        return self._pfd

    def read(self, offset: int, length: int) -> bytes | bytearray:
        """The point-in-time bytes of ``[offset, offset+length)`` (within ``size``). Blocks
        read whole are marked read and no longer preserved: reading one again is served from
        the image while nothing wrote it since (a backup re-reading a chunk it must store
        again), and raises VolumeImageError once a writer has changed it."""
        self._check(offset, length)
        data = read_within(self.fd, length, offset, self._extents)  # validated below
        if len(data) != length:
            raise VolumeImageError("short read: the image changed size")
        return apply_fixups(data, offset, self.claim(offset, length), self._pfd, self.block)

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | bytearray]:
        """:meth:`read` of each ``(offset, length)``."""
        return [self.read(offset, length) for offset, length in ranges]

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise VolumeImageError(f"snapshot read [{offset}, +{length}) beyond {self.size}")

    def claim(self, offset: int, length: int) -> list[tuple[int, int]]:
        """The second half of ``read``, for a reader that has just read ``[offset,
        offset+length)`` of the image itself (``backup_process``): mark the blocks read whole
        as read and return ``(block, state)`` of those whose point-in-time bytes are not in
        the image (preserved at a preserve-file offset, or ``_ZERO``). Correct only after
        the image was read: a block without an entry now was not written since the point
        in time, so what was read is its point-in-time content."""
        self._check(offset, length)
        end = offset + length
        fixups: list[tuple[int, int]] = []
        with self._lock:
            for index in range(offset // self.block, (end - 1) // self.block + 1 if length else 0):
                state = self._state.get(index)
                if state is None:
                    bstart = index * self.block
                    if bstart >= offset and min(bstart + self.block, self.size) <= end:
                        self._state[index] = _READ
                elif state == _READ:
                    pass  # not written since it was read: the image still holds it
                elif state == _WRITTEN_AFTER_READ:
                    raise VolumeImageError(
                        f"snapshot block {index} was overwritten after the backup read it"
                    )
                else:
                    fixups.append((index, state))
        return fixups

    def claim_many(self, ranges: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """:meth:`claim` of each ``(offset, length)``, in order (one message from a backup
        process per batch of chunks)."""
        return [self.claim(offset, length) for offset, length in ranges]

    def preserved_extents(self) -> list[tuple[int, int]]:
        """``(offset, length)`` of every preserved block (see ``data_extents``)."""
        with self._lock:
            preserved = [i for i, s in self._state.items() if s >= 0]
        return [(i * self.block, min(self.block, self.size - i * self.block)) for i in preserved]

    def data_extents(self) -> list[tuple[int, int]]:
        """``(offset, length)`` regions that may hold point-in-time data, sorted and merged.

        The image's extents are scanned before the preserved blocks are listed: a block
        that held data at the point in time and is a hole when the scan passes it was
        trimmed, hence preserved, before the list is taken."""
        extents = list(_image_extents(self.fd, self.size))
        self._extents = merge_extents(extents + self.preserved_extents())
        return self._extents


def apply_fixups(
    image_bytes: bytes | bytearray,
    offset: int,
    fixups: list[tuple[int, int]],
    pfd: int,
    block: int = BLOCK,
) -> bytes | bytearray:
    """``image_bytes`` (the image's bytes at ``offset``) with the blocks ``PointInTime.claim``
    listed replaced by their point-in-time bytes: zeros, or the preserve file's (``pfd``;
    preserved data never changes, so no lock is needed). Without fixups (the common case),
    ``image_bytes`` itself, not a copy; a bytearray is changed in place."""
    if not fixups:
        return image_bytes
    data = image_bytes if isinstance(image_bytes, bytearray) else bytearray(image_bytes)
    end = offset + len(data)
    for index, state in fixups:
        bstart = index * block
        lo, hi = max(bstart, offset), min(bstart + block, end)
        if state == _ZERO:
            data[lo - offset : hi - offset] = bytes(hi - lo)
        else:
            data[lo - offset : hi - offset] = os.pread(pfd, hi - lo, state + lo - bstart)
    return data


def _image_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    from ocibv.engine.volume_files import iter_data_extents

    return iter_data_extents(fd, size)


def merge_extents(extents: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ``(offset, length)`` extents with overlapping and touching ones merged."""
    out: list[tuple[int, int]] = []
    for start, length in sorted(extents):
        if out and start <= out[-1][0] + out[-1][1]:
            last_start, last_length = out[-1]
            out[-1] = (last_start, max(last_length, start + length - last_start))
        else:
            out.append((start, length))
    return out


class MemberSnapshot:
    """One volume of a group snapshot: its point-in-time view and its changed ranges."""

    def __init__(self, volume: LiveVolume, view: PointInTime, capture: Capture | None):
        self.volume, self.view, self.capture = volume, view, capture

    @property
    def size(self) -> int:
        return self.view.size


class GroupSnapshot:
    """A crash-consistent point in time across several live volumes; ``end`` exactly once."""

    def __init__(self, members: list[MemberSnapshot]) -> None:
        self.members = members

    def end(self, *, committed_backup_ids: dict[int, str] | None = None) -> None:
        """Detach every view and free its preserved data. ``committed_backup_ids`` maps a
        member's position to the backup that captured it durably: its changed-block capture
        is committed; every other member's capture is restored (merged back)."""
        done = committed_backup_ids or {}
        for position, member in enumerate(self.members):
            member.volume.detach_snapshot(member.view)
            if member.capture is not None:
                if position in done:
                    member.capture.commit(done[position])
                else:
                    member.capture.restore()


def begin_group(volumes: Sequence[LiveVolume]) -> GroupSnapshot:
    """Fix one point in time on every volume of ``volumes`` (in that order in the result).

    Writers on all of them are held only while the views are installed and the
    changed-block records taken — no I/O but opening one preserve file per volume."""
    ordered = sorted(range(len(volumes)), key=lambda i: str(volumes[i].path))
    with _BEGIN_LOCK:
        closed: list[LiveVolume] = []
        members: dict[int, MemberSnapshot] = {}
        try:
            for i in ordered:
                volumes[i].gate.close()
                closed.append(volumes[i])
            for i in ordered:
                members[i] = volumes[i].attach_snapshot()
        except BaseException:
            for member in members.values():
                member.volume.detach_snapshot(member.view, gate_held=True)
                if member.capture is not None:
                    member.capture.restore()
            raise
        finally:
            for volume in closed:
                volume.gate.open()
    return GroupSnapshot([members[i] for i in range(len(volumes))])
