"""The backup helper process: ``python -m ocibv.engine.backup_worker FD`` (see
``backup_process``).

On the socket ``FD`` it receives, per job, the preserve file's descriptor (one byte with
SCM_RIGHTS) and ``("backup", BackupRequest)``; it runs ``backup_volume`` through a
``RemoteView`` and answers ``("done", BackupResult)`` or ``("error", exception)``, sending
``("claims", id, [(offset, length), ...])``, ``("preserved", id)`` and ``("progress", done, total)``
meanwhile. The serving process answers claims with ``("reply", id, value, error)``. It exits
when the socket closes (the serving process stopped or died).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import sys
import threading
from collections import OrderedDict
from typing import Any

from ocibv.engine.backends import open_backend
from ocibv.engine.backup_process import (
    NICE,
    BackupRequest,
    BackupResult,
    recv_frame,
    run_backup,
    send_frame,
)
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.chunk_table import ChunkTable
from ocibv.engine.errors import VolumeImageError
from ocibv.engine.manifest import Manifest, load_manifest
from ocibv.engine.snapshot import apply_fixups, merge_extents
from ocibv.engine.volume_files import iter_data_extents, read_within

MANIFESTS_KEPT = 8


class Channel:
    """The socket to the serving process, shared by the backup's threads: requests carry
    an id and wait for their reply; a reader thread dispatches replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, tuple[Any, BaseException | None]] = {}
        self._next = 0
        self._broken: BaseException | None = None

    def send(self, message: object, fd: int | None = None) -> None:
        """Send ``message``, then ``fd`` (one byte with SCM_RIGHTS) when given."""
        with self._send_lock:
            send_frame(self.sock, message)
            if fd is not None:
                socket.send_fds(self.sock, [b"T"], [fd])

    def call(self, *request: Any) -> Any:
        with self._cond:
            rid = self._next
            self._next += 1
        self.send((request[0], rid, *request[1:]))
        with self._cond:
            self._cond.wait_for(lambda: rid in self._replies or self._broken is not None)
            if rid not in self._replies:
                raise VolumeImageError(f"serving process gone: {self._broken}")
            value, error = self._replies.pop(rid)
        if error is not None:
            raise error
        return value

    def deliver(self, rid: int, value: Any, error: BaseException | None) -> None:
        with self._cond:
            self._replies[rid] = (value, error)
            self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self._cond:
            self._broken = exc
            self._cond.notify_all()


class RemoteView:
    """A ``SnapshotSource`` over a ``PointInTime`` living in the serving process: the image
    and the preserve file are read here, the block states are claimed there."""

    def __init__(self, channel: Channel, image_fd: int, preserve_fd: int, size: int) -> None:
        self.channel, self.fd, self.pfd, self._size = channel, image_fd, preserve_fd, size
        self._extents: list[tuple[int, int]] | None = None  # the last data_extents

    @property
    def size(self) -> int:
        return self._size

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | bytearray]:
        """Read every range of the image, then claim them all in one message (a message
        per chunk cost the serving process and this one more than the claims do)."""
        datas = []
        for offset, length in ranges:
            data = read_within(self.fd, length, offset, self._extents)  # claims validate it
            if len(data) != length:
                raise VolumeImageError("short read: the image changed size")
            datas.append(data)
        fixups = self.channel.call("claims", ranges)
        return [
            apply_fixups(data, offset, fix, self.pfd)
            for data, (offset, _), fix in zip(datas, ranges, fixups, strict=True)
        ]

    def data_extents(self) -> list[tuple[int, int]]:
        extents = list(iter_data_extents(self.fd, self._size))  # scanned before the list
        self._extents = merge_extents(extents + self.channel.call("preserved"))
        return self._extents


class Worker:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stores: dict[str, ChunkStore] = {}
        self.manifests: OrderedDict[str, Manifest] = OrderedDict()

    def store(self, url: str) -> ChunkStore:
        store = self.stores.get(url)
        if store is None:
            store = self.stores[url] = ChunkStore(open_backend(url))
        return store

    def manifest(self, store: ChunkStore, backup_id: str) -> Manifest:
        found = self.manifests.get(backup_id)
        if found is None:
            found = load_manifest(store.backend, backup_id)
        self.keep(found)
        return found

    def keep(self, manifest: Manifest) -> None:
        self.manifests[manifest.backup_id] = manifest
        self.manifests.move_to_end(manifest.backup_id)
        while len(self.manifests) > MANIFESTS_KEPT:
            self.manifests.popitem(last=False)

    def serve(self) -> None:
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(self.sock, 1, 1)
            except OSError:
                return
            if not fds:
                return  # EOF: the serving process is done with us
            try:
                self.job(fds[0])
            finally:
                os.close(fds[0])

    def job(self, preserve_fd: int) -> None:
        """Run one backup on a thread; meanwhile dispatch the serving process's replies
        until it says ``end`` (after it got the answer)."""
        message = recv_frame(self.sock)
        request: BackupRequest = message[1]
        channel = Channel(self.sock)

        def run() -> None:
            table_fd = None
            try:
                result = self.backup(request, channel, preserve_fd)
                answer: tuple[str, Any] = ("done", result)
                if result.table_entries is not None:  # the table follows (BackupResult)
                    table = self.manifests[result.backup_id].chunks
                    assert isinstance(table, ChunkTable)
                    table_fd = table.fileno()
            except BaseException as exc:  # reported to the serving process
                answer = ("error", _picklable(exc))
            channel.send(answer, table_fd)

        thread = threading.Thread(target=run, name="ocibv-backup")
        thread.start()
        try:
            while True:
                message = recv_frame(self.sock)
                if message[0] == "end":
                    break
                _, rid, value, error = message
                channel.deliver(rid, value, error)
        except (OSError, EOFError):
            os._exit(1)  # the serving process is gone: nobody to report to
        thread.join()

    def backup(self, request: BackupRequest, channel: Channel, preserve_fd: int) -> BackupResult:
        store = self.store(request.store_url)
        previous = self.manifest(store, request.previous_id) if request.previous_id else None
        try:
            fd = os.open(request.image_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise VolumeImageError(f"cannot open volume image {request.image_path}: {exc}") from exc
        try:
            view = RemoteView(channel, fd, preserve_fd, request.size)
            manifest = run_backup(
                store,
                request,
                previous,
                view,
                lambda done, total: channel.send(("progress", done, total)),
            )
        finally:
            os.close(fd)
        self.keep(manifest)  # the next INCREMENTAL's base
        return BackupResult.of(manifest)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return VolumeImageError(f"{type(exc).__name__}: {exc}")


def lower_priority() -> None:
    """SCHED_BATCH and ``OCIBV_BACKUP_NICE`` (default ``NICE``), inherited by the backup's
    threads: the serving process's threads win CPU contests. (A woken NBD thread may still
    wait for a helper thread's slice to end: ``cpu_share``.)"""
    nice = int(os.environ.get("OCIBV_BACKUP_NICE", NICE))
    if nice:
        os.nice(nice)
    with contextlib.suppress(AttributeError, OSError):  # not Linux
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main() -> None:
    lower_priority()
    sock = socket.socket(fileno=int(sys.argv[1]))
    Worker(sock).serve()


if __name__ == "__main__":
    main()
