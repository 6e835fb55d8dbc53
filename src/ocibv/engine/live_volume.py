"""A volume image open for live I/O: the block device an NBD export serves.

Every change goes the same way: through the ``WriteGate`` (so a group snapshot can hold
writers for an instant), the copy-before-write hook of an active snapshot, the
changed-block record, then the image. Trim and write-zeroes punch holes, keeping the image
sparse. Methods block; they are safe to call from many threads at once.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from ocibv.engine.changed_blocks import ChangedBlocks
from ocibv.engine.snapshot import MemberSnapshot, PointInTime, WriteGate, discard_stale
from ocibv.engine.volume_files import read_if_cached

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_FALLOC_FL_ZERO_RANGE = 0x10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_ZEROS = bytes(1024 * 1024)


def _fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    """fallocate(2); False when the file system does not support ``mode``."""
    if _libc.fallocate(fd, mode, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


class LiveVolume:
    """An attached volume image: ``read``/``write``/``trim``/``zero``/``flush``/``block_status``
    (the ``ocibv.nbd.exports.Export`` contract), changed-block tracking, snapshots.

    ``track_changes`` loads the changed-block record beside the image (see
    ``ChangedBlocks.open``); ``close`` saves it clean. Callers keep offsets within ``size``.
    """

    def __init__(self, path: Path, *, read_only: bool = False, track_changes: bool = True):
        self.path = path
        self._read_only = read_only
        discard_stale(path)
        self.fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        self._size = os.fstat(self.fd).st_size
        self.gate = WriteGate()
        self._snapshot: PointInTime | None = None
        self.changed: ChangedBlocks | None = None
        if track_changes and not read_only:
            try:
                self.changed = ChangedBlocks.open(path, self._size)
            except BaseException:
                os.close(self.fd)
                raise

    @property
    def size(self) -> int:
        return self._size

    @property
    def read_only(self) -> bool:
        return self._read_only

    def close(self) -> None:
        """Flush, save the changed-block record clean, close the image."""
        if not self._read_only:
            os.fsync(self.fd)
        if self.changed is not None:
            self.changed.close()
        os.close(self.fd)

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        if len(data) < length:  # only past end of file: the image shrank under us
            data += bytes(length - len(data))
        return data

    def read_cached(self, offset: int, length: int) -> bytearray | None:
        """The bytes at ``offset`` if all are in the page cache (RWF_NOWAIT), else None;
        never blocks on the disk."""
        return read_if_cached(self.fd, length, offset)

    def _before(
        self, offset: int, length: int, *, fills: bool, cached_only: bool = False
    ) -> bool:
        """The snapshot's and the changed-block record's hooks, before a write; False
        (nothing marked) when ``cached_only`` and a block to preserve is not cached."""
        if self._snapshot is not None and not self._snapshot.before_write(
            offset, length, fills=fills, cached_only=cached_only
        ):
            return False
        if self.changed is not None:
            self.changed.mark(offset, length)
        return True

    def write(self, offset: int, data: bytes | bytearray, *, fua: bool = False) -> None:
        with self.gate.writing():
            self._before(offset, len(data), fills=True)
            self._pwrite(offset, data)
        if fua:
            os.fdatasync(self.fd)

    def write_now(self, offset: int, data: bytes | bytearray) -> bool:
        """``write`` (without FUA) on the calling thread if it needs no waiting but the
        write itself into the page cache: the gate is open and the blocks a snapshot must
        preserve are cached. False: nothing was written (call ``write``)."""
        if not self.gate.enter_now():
            return False
        try:
            if not self._before(offset, len(data), fills=True, cached_only=True):
                return False
            self._pwrite(offset, data)
            return True
        finally:
            self.gate.leave()

    def _pwrite(self, offset: int, data: bytes | bytearray) -> None:
        view = memoryview(data)
        done = 0
        while done < len(data):
            done += os.pwrite(self.fd, view[done:], offset + done)

    def trim(self, offset: int, length: int, *, fua: bool = False) -> None:
        self.zero(offset, length, may_trim=True, fua=fua)

    def zero(self, offset: int, length: int, *, may_trim: bool, fua: bool = False) -> None:
        with self.gate.writing():
            # The range reads as zeros afterwards either way: a block that was a hole at the
            # point in time needs no preserving, even when zeroing allocates it.
            self._before(offset, length, fills=False)
            keep = _FALLOC_FL_KEEP_SIZE
            punched = may_trim and _fallocate(self.fd, keep | _FALLOC_FL_PUNCH_HOLE, offset, length)
            if not punched and not _fallocate(
                self.fd, keep | _FALLOC_FL_ZERO_RANGE, offset, length
            ):
                self._write_zeros(offset, length)
        if fua:
            os.fdatasync(self.fd)

    def _write_zeros(self, offset: int, length: int) -> None:
        end = offset + length
        while offset < end:
            n = min(len(_ZEROS), end - offset)
            offset += os.pwrite(self.fd, memoryview(_ZEROS)[:n], offset)

    def flush(self) -> None:
        os.fdatasync(self.fd)

    def block_status(self, offset: int, length: int) -> list[tuple[int, bool]]:
        """``(length, is_hole)`` extents from ``offset`` (SEEK_DATA/SEEK_HOLE), at most
        ``length`` bytes in all and at most 1024 extents (the client asks again)."""
        end = min(offset + length, self._size)
        out: list[tuple[int, bool]] = []
        pos = offset
        while pos < end and len(out) < 1024:
            try:
                data = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                data = end  # no data from pos on
            if data > pos:
                stop = min(data, end)
                out.append((stop - pos, True))
                pos = stop
                continue
            stop = min(os.lseek(self.fd, pos, os.SEEK_HOLE), end)
            out.append((stop - pos, False))
            pos = stop
        return out

    def attach_snapshot(self) -> MemberSnapshot:
        """Install a point-in-time view and take the changed-block record. The caller holds
        ``gate`` closed (``snapshot.begin_group`` does)."""
        if self._snapshot is not None:
            raise RuntimeError(f"{self.path.name} already has a snapshot")
        view = PointInTime(self.fd, self._size, self.path)
        capture = self.changed.take() if self.changed is not None else None
        self._snapshot = view
        return MemberSnapshot(self, view, capture)

    def detach_snapshot(self, view: PointInTime, *, gate_held: bool = False) -> None:
        """Remove ``view`` (waiting out writers that may be inside its hook) and free it."""
        if not gate_held:
            self.gate.close()
        try:
            if self._snapshot is view:
                self._snapshot = None
        finally:
            if not gate_held:
                self.gate.open()
        view.close()
