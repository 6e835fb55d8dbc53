"""Backups of live volumes run in helper processes, so the serving process stays responsive.

A backup's CPU work (reading, BLAKE3, zstd, packing: one to two cores' worth for the whole
backup) used to run on threads of the process that serves NBD. Measured on the 2-core dev
VM: a QD1 4 KiB writer's p99 went from ~1 ms to 16-70 ms during a FULL (of its own volume
or of another: copy-before-write was not the cause). The writes themselves never blocked in
the kernel; the NBD threads waited for a CPU and for the GIL behind eight chunk threads. A
smaller switch interval did not help (the wait is the CPU, not the GIL's 5 ms timeout), so
the backup now runs in another process at a lower priority (``NICE``): the kernel serves the
NBD threads first and they never contend for the serving process's GIL with chunk work.

The snapshot stays where the writers are. The helper reads the image itself, then asks the
serving process to ``claim`` the range (``PointInTime.claim``: mark its blocks read, list
those preserved meanwhile) and reads preserved blocks from the preserve file, whose
descriptor it received. That is the same optimistic read-then-validate as
``PointInTime.read``, split across two processes; a claim costs the serving process a dict
lookup per 64 KiB block.

Helpers are long-lived (``BackupWorkers`` keeps idle ones), so a small INCREMENTAL does not pay
an interpreter start, and each keeps its chunk stores (and their pack indexes) and the last
manifests it wrote between jobs. Protocol: length-prefixed pickle frames on a socketpair, see
``backup_worker``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ocibv.engine.backup import SnapshotSource, backup_volume
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.chunk_table import ChunkTable
from ocibv.engine.cpu_share import CpuShare
from ocibv.engine.errors import VolumeImageError
from ocibv.engine.manifest import BackupType, Manifest
from ocibv.engine.snapshot import PointInTime

NICE = 10
"""Niceness of a backup process: the serving process's threads win every CPU contest."""
MAX_IDLE = 2
"""Idle backup processes kept for the next jobs."""
_FRAME = struct.Struct(">I")
Progress = Callable[[int, int], None]
Foreground = Callable[[], int]
"""How many requests clients have made of this process's attached volumes (a counter)."""


@dataclasses.dataclass(frozen=True)
class BackupRequest:
    """What ``engine.backup.backup_volume`` needs, minus the objects that cannot cross a
    process boundary: the store is named by URL, the previous manifest by its id."""

    store_url: str
    image_path: Path
    backup_id: str
    volume_id: str
    chunk_size: int  # of a first backup; later ones keep their previous backup's
    previous_id: str | None
    backup_type: BackupType
    changed_ranges: list[tuple[int, int]] | None
    workers: int
    group_backup_id: str | None
    created_at: str | None
    size: int


def run_backup(
    store: ChunkStore,
    request: BackupRequest,
    previous: Manifest | None,
    snapshot: SnapshotSource,
    progress: Progress,
) -> Manifest:
    """``backup_volume`` as ``request`` asks (``previous`` is ``request.previous_id``'s
    manifest), in the serving process or in a helper. The store's index is brought up to
    date first: a long-lived process would otherwise store again the chunks other processes
    (another helper, another server) stored since it last looked."""
    store.refresh()
    return backup_volume(
        store,
        request.image_path,
        backup_id=request.backup_id,
        volume_id=request.volume_id,
        chunk_size=previous.chunk_size if previous else request.chunk_size,
        previous=previous,
        backup_type=request.backup_type,
        changed_ranges=request.changed_ranges,
        progress=progress,
        workers=request.workers,
        group_backup_id=request.group_backup_id,
        created_at=request.created_at,
        snapshot=snapshot,
    )


RETURNED_ENTRIES_MAX = 65536
"""A helper sends a manifest back packed (48 bytes an entry: 3 MiB at most) when it has no
more entries than this; a bigger one's chunk table follows the answer as the descriptor of
its file (SCM_RIGHTS). Either way the serving process counts its unique size without
reading and parsing it from the store (~5 us an entry)."""


class BackupResult(NamedTuple):
    """What the serving process needs of a backup the helper saved: its stored bytes and
    the manifest — with its chunks when small (``RETURNED_ENTRIES_MAX``), else without
    them (``table_entries`` of them follow as a descriptor)."""

    backup_id: str
    stored_bytes: int
    manifest: Manifest
    table_entries: int | None = None

    @classmethod
    def of(cls, manifest: Manifest) -> BackupResult:
        if len(manifest.chunks) <= RETURNED_ENTRIES_MAX:
            return cls(manifest.backup_id, manifest.stored_bytes, manifest)
        header = dataclasses.replace(manifest, chunks=[])
        return cls(manifest.backup_id, manifest.stored_bytes, header, len(manifest.chunks))


class WorkerLost(VolumeImageError):
    """The backup process died or broke the protocol."""


def send_frame(sock: socket.socket, message: object) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_FRAME.pack(len(body)) + body)


def recv_frame(sock: socket.socket) -> Any:
    head = _recv_exactly(sock, _FRAME.size)
    return pickle.loads(_recv_exactly(sock, _FRAME.unpack(head)[0]))


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise EOFError("backup process connection closed")
        got += k
    return bytes(buf)


class BackupProcess:
    """One helper process (``python -m ocibv.engine.backup_worker``); one job at a time."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # same ocibv as ours
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ocibv.engine.backup_worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
            )
        finally:
            theirs.close()
        self.sock = ours

    def run(
        self,
        request: BackupRequest,
        view: PointInTime,
        progress: Progress | None,
        foreground: Foreground | None = None,
    ) -> BackupResult:
        """Run one backup; the helper's exception is re-raised here. Serves the helper's
        claims on ``view`` meanwhile (on the calling thread), and keeps the helper off one
        CPU while ``foreground`` moves (``CpuShare``)."""
        share = CpuShare(self.proc.pid, foreground) if foreground is not None else None
        try:
            kind, value = self._serve(request, view, progress, share)
        except (OSError, EOFError, pickle.PickleError) as exc:
            self.kill()
            raise WorkerLost(f"backup process failed: {exc}") from exc
        except BaseException:  # e.g. progress failed: the helper is mid-job, end it
            self.kill()
            raise
        finally:
            if share is not None:
                share.release()
        if kind == "error":
            raise value
        result: BackupResult = value
        return result

    def _serve(
        self,
        request: BackupRequest,
        view: PointInTime,
        progress: Progress | None,
        share: CpuShare | None,
    ) -> tuple[str, Any]:
        socket.send_fds(self.sock, [b"F"], [view.preserve_fd])
        send_frame(self.sock, ("backup", request))
        while True:
            message = recv_frame(self.sock)
            if share is not None:
                share.check()
            kind = message[0]
            if kind == "claims":
                _, rid, ranges = message
                self._answer(rid, view.claim_many, ranges)
            elif kind == "preserved":
                self._answer(message[1], view.preserved_extents)
            elif kind == "progress":
                if progress is not None:
                    progress(message[1], message[2])
            elif kind in ("done", "error"):
                value = message[1]
                if kind == "done" and value.table_entries is not None:
                    _, fds, _, _ = socket.recv_fds(self.sock, 1, 1)
                    if len(fds) != 1:
                        raise EOFError("backup process sent no chunk table")
                    value.manifest.chunks = ChunkTable.adopt(fds[0], value.table_entries)
                send_frame(self.sock, ("end",))
                return kind, value
            else:
                raise EOFError(f"backup process sent {kind!r}")

    def _answer(self, rid: int, fn: Callable[..., Any], *args: Any) -> None:
        try:
            reply: tuple[Any, ...] = ("reply", rid, fn(*args), None)
        except VolumeImageError as exc:
            reply = ("reply", rid, None, exc)
        send_frame(self.sock, reply)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        """Ask the helper to exit (it exits on EOF), then make sure it did."""
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()


class BackupWorkers:
    """The serving process's backup helpers: one per running backup, ``MAX_IDLE`` kept."""

    def __init__(self, foreground: Foreground | None = None) -> None:
        self.foreground = foreground
        self._lock = threading.Lock()
        self._idle: list[BackupProcess] = []
        self._closed = False

    def backup(
        self, request: BackupRequest, view: PointInTime, progress: Progress | None = None
    ) -> BackupResult:
        worker = self._take()
        healthy = False
        try:
            result = worker.run(request, view, progress, self.foreground)
            healthy = True
            return result
        except WorkerLost:
            raise
        except BaseException:
            healthy = worker.alive  # the backup failed, the helper is fine
            raise
        finally:
            self._give_back(worker, healthy)

    def warm(self) -> None:
        """Start a helper now, so the first backup does not wait for it."""
        self._give_back(BackupProcess(), True)

    def _take(self) -> BackupProcess:
        with self._lock:
            if self._closed:
                raise RuntimeError("backup workers are closed")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
                worker.kill()
        return BackupProcess()

    def _give_back(self, worker: BackupProcess, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and len(self._idle) < MAX_IDLE and worker.alive:
                self._idle.append(worker)
                return
        if healthy:
            worker.close()
        else:
            worker.kill()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()
