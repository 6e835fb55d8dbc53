"""Backup, restore, scrub and garbage collection of volume images in a chunk store.

A volume image is cut into fixed, aligned chunks of ``chunk_size`` bytes. A backup stores the
non-zero chunks (deduplicated by digest) and then, last, a manifest naming them; a restore
writes them back and leaves everything else a hole. Work is spread over a small thread pool
(BLAKE3, zstd and file I/O release the GIL) with a bounded number of chunks in flight, so
memory does not grow with the volume.

Garbage collection scheme (see ``docs/design.md``): every chunk a backup relies on is
*touched* (its timestamp refreshed) when the backup first meets it and again, all of them,
just before the manifest is saved ("seal"); a chunk the seal finds gone is read from the
image again. The collector deletes only chunks that no live manifest names *and* that
nobody touched for ``grace_seconds``, with a delete that re-checks the timestamp atomically
against a concurrent touch. So a running backup never loses a chunk it will name, whether
it wrote the chunk or deduplicated against an old one.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from ocibv.engine.chunk_store import DEFAULT_CHUNK_SIZE, ChunkStore, chunk_key
from ocibv.engine.errors import IntegrityError, ObjectNotFound, VolumeImageError
from ocibv.engine.manifest import (
    FULL,
    INCREMENTAL,
    ChunkEntry,
    Manifest,
    save_manifest,
    validate_id,
)
from ocibv.engine.volume_files import iter_data_extents

Progress = Callable[[int, int], None]
T = TypeVar("T")
R = TypeVar("R")

# Threads per requested worker: part of each chunk's time is spent waiting in fsync (backup)
# or in page-cache writes (restore), so a few more threads than cores keep both cores busy.
THREADS_PER_WORKER = 2
# Chunks queued per thread: bounds memory to about threads * QUEUE_DEPTH * chunk_size.
QUEUE_DEPTH = 2


def _ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, results in order, at most a few items in flight."""
    depth = max(1, threads) * QUEUE_DEPTH
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="ocibv-chunk") as ex:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(ex.submit(fn, item))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _allocated_chunks(fd: int, size: int, chunk_size: int) -> Iterator[int]:
    """Indices of the chunks that overlap a data extent (holes are never read)."""
    next_index = 0
    for start, length in iter_data_extents(fd, size):
        first = max(start // chunk_size, next_index)
        last = (start + length - 1) // chunk_size
        yield from range(first, last + 1)
        next_index = max(next_index, last + 1)


def _changed_chunks(ranges: Iterable[tuple[int, int]], size: int, chunk_size: int) -> list[int]:
    """Sorted indices of the chunks that ``(offset, length)`` ranges touch, within ``size``."""
    indices: set[int] = set()
    for offset, length in ranges:
        if offset < 0 or length < 0:
            raise ValueError(f"bad changed range ({offset}, {length})")
        end = min(offset + length, size)
        if end > offset:
            indices.update(range(offset // chunk_size, (end - 1) // chunk_size + 1))
    return sorted(indices)


class _ImageReader:
    """Reads chunk ``index`` of an open image; turns short reads into VolumeImageError."""

    def __init__(self, fd: int, size: int, chunk_size: int) -> None:
        self.fd, self.size, self.chunk_size = fd, size, chunk_size
        self._zero = bytes(chunk_size)

    def slot_size(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def read(self, index: int) -> bytes | None:
        """The chunk's bytes, or None when they are all zeros."""
        n = self.slot_size(index)
        data = os.pread(self.fd, n, index * self.chunk_size)
        if len(data) != n:
            raise VolumeImageError(f"short read of chunk {index}: image changed size")
        # bytes == bytes runs at memory speed; a memoryview compare would be ~60x slower.
        zero = self._zero if n == self.chunk_size else bytes(n)
        return None if data == zero else data


def backup_volume(
    store: ChunkStore,
    image_path: Path,
    *,
    backup_id: str,
    volume_id: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    previous: Manifest | None = None,
    full: bool,
    changed_ranges: Iterable[tuple[int, int]] | None = None,
    progress: Progress | None = None,
    workers: int = 2,
    group_backup_id: str | None = None,
    created_at: str | None = None,
) -> Manifest:
    """Back up the image at ``image_path`` (a stable snapshot) and return its saved manifest.

    FULL (``full=True``) reads every allocated chunk and stores it with ``verify_existing``,
    so it repairs damaged or missing chunks. INCREMENTAL reads every allocated chunk too but
    stores only chunks not already present. When ``changed_ranges`` (byte ``(offset,
    length)`` pairs) is given with ``previous`` of the same chunk size, an INCREMENTAL reads
    only the chunks those ranges touch and takes every other chunk from ``previous``; the
    caller guarantees nothing else changed since ``previous``. Holes are never read and
    all-zero chunks are never stored. ``progress(bytes_done, bytes_total)`` is called from
    the calling thread. Chunks are durable (``backend.sync()``) before the manifest is
    saved, and the manifest is saved durably last: on any exception no manifest exists.
    """
    validate_id(backup_id)
    if chunk_size <= 0 or workers <= 0:
        raise ValueError("chunk_size and workers must be positive")
    try:
        fd = os.open(image_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise VolumeImageError(f"cannot open volume image {image_path}: {exc}") from exc
    try:
        size = os.fstat(fd).st_size
        reader = _ImageReader(fd, size, chunk_size)
        entries: dict[int, ChunkEntry] = {}
        seam = (
            changed_ranges is not None
            and not full
            and previous is not None
            and previous.chunk_size == chunk_size
        )
        if seam and previous is not None and changed_ranges is not None:
            to_read: list[int] = _changed_chunks(changed_ranges, size, chunk_size)
            skip = set(to_read)
            for entry in previous.chunks:
                if entry.chunk_index in skip or entry.chunk_index * chunk_size >= size:
                    continue
                if entry.size != reader.slot_size(entry.chunk_index):  # volume grew: re-read
                    to_read.append(entry.chunk_index)
                else:
                    entries[entry.chunk_index] = entry
            to_read.sort()
            indices: Iterable[int] = to_read
            total = sum(reader.slot_size(i) for i in to_read)
        else:
            indices = _allocated_chunks(fd, size, chunk_size)
            total = sum(reader.slot_size(i) for i in _allocated_chunks(fd, size, chunk_size))

        def read_and_store(index: int) -> tuple[int, ChunkEntry | None]:
            data = reader.read(index)
            if data is None:
                return index, None
            ref = store.put_chunk(data, verify_existing=full)
            return index, ChunkEntry(index, ref.digest, ref.size, ref.stored_size)

        done = 0
        if progress:
            progress(0, total)
        threads = workers * THREADS_PER_WORKER
        for index, stored in _ordered_map(read_and_store, indices, threads):
            if stored is None:
                entries.pop(index, None)
            else:
                entries[index] = stored
            done += reader.slot_size(index)
            if progress:
                progress(done, total)
        chunks = [entries[i] for i in sorted(entries)]
        _seal(store, reader, chunks, threads)
        store.backend.sync()
        manifest = Manifest(
            backup_id=backup_id,
            volume_id=volume_id,
            volume_size=size,
            chunk_size=chunk_size,
            created_at=created_at or _now_iso(),
            type=FULL if full else INCREMENTAL,
            chunks=chunks,
            group_backup_id=group_backup_id,
        )
        save_manifest(store.backend, manifest)
        return manifest
    finally:
        os.close(fd)


def _seal(store: ChunkStore, reader: _ImageReader, chunks: list[ChunkEntry], threads: int) -> None:
    """Touch every chunk the new manifest names; store again any that vanished meanwhile.

    A chunk can vanish between the first touch and now only if garbage collection ran with
    a grace period shorter than that interval; the image still holds its bytes.
    """
    first_of: dict[str, ChunkEntry] = {}
    for entry in chunks:
        first_of.setdefault(entry.digest, entry)

    def touch(entry: ChunkEntry) -> ChunkEntry | None:
        return entry if store.backend.touch(chunk_key(entry.digest)) is None else None

    missing = [e for e in _ordered_map(touch, first_of.values(), threads) if e is not None]
    for entry in missing:
        data = reader.read(entry.chunk_index)
        ref = store.put_chunk(data) if data is not None else None
        if ref is None or ref.digest != entry.digest:
            raise IntegrityError(
                f"chunk {entry.chunk_index} of the image no longer hashes to {entry.digest}: "
                "the image changed during the backup or the changed ranges were incomplete"
            )


def restore_volume(
    store: ChunkStore,
    manifest: Manifest,
    target_path: Path,
    *,
    progress: Progress | None = None,
    workers: int = 2,
) -> None:
    """Write the backup ``manifest`` describes to ``target_path``, durable on return.

    The target becomes a sparse file of ``manifest.volume_size`` bytes (previous content is
    discarded); chunks absent from the manifest and all-zero chunks stay holes. Every chunk
    is verified before it is written: IntegrityError or ChunkNotFound abort the restore
    (the target is then incomplete and must not be used). ``progress(bytes_done,
    bytes_total)`` counts the manifest's chunk bytes, from the calling thread.
    """
    if workers <= 0:
        raise ValueError("workers must be positive")
    try:
        fd = os.open(target_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise VolumeImageError(f"cannot open restore target {target_path}: {exc}") from exc
    try:
        os.ftruncate(fd, 0)
        os.ftruncate(fd, manifest.volume_size)
        zero = bytes(manifest.chunk_size)

        def fetch_and_write(entry: ChunkEntry) -> int:
            data = store.get_chunk(entry.digest)
            if len(data) != entry.size:
                raise IntegrityError(
                    f"chunk {entry.digest}: {len(data)} bytes where the manifest says {entry.size}"
                )
            if data != (zero if entry.size == manifest.chunk_size else bytes(entry.size)):
                offset = entry.chunk_index * manifest.chunk_size
                written = os.pwrite(fd, data, offset)
                while written < len(data):  # pwrite may write less than asked
                    written += os.pwrite(fd, memoryview(data)[written:], offset + written)
            return entry.size

        total = manifest.data_bytes
        done = 0
        if progress:
            progress(0, total)
        for n in _ordered_map(fetch_and_write, manifest.chunks, workers * THREADS_PER_WORKER):
            done += n
            if progress:
                progress(done, total)
        os.fsync(fd)
    except OSError as exc:
        raise VolumeImageError(f"restore to {target_path} failed: {exc}") from exc
    finally:
        os.close(fd)


@dataclass
class ScrubReport:
    """Outcome of :func:`scrub`: damaged and missing chunks and the backups each breaks."""

    chunks_checked: int = 0
    bytes_checked: int = 0
    damaged: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    removed: int = 0

    @property
    def affected_backups(self) -> set[str]:
        """Backup ids that cannot be restored until their chunks are repaired."""
        return {b for ids in (*self.damaged.values(), *self.missing.values()) for b in ids}

    @property
    def ok(self) -> bool:
        """True when every checked chunk is present and intact."""
        return not self.damaged and not self.missing


def scrub(
    store: ChunkStore,
    manifests: Iterable[Manifest],
    *,
    all_chunks: bool = False,
    remove_damaged: bool = False,
    workers: int = 2,
    progress: Progress | None = None,
) -> ScrubReport:
    """Read and verify every chunk the manifests name (and, with ``all_chunks``, every stored
    chunk); report damaged and missing digests with the backup ids each affects.

    With ``remove_damaged`` damaged chunks are deleted, so that the next backup of the same
    data (of any type) stores them again instead of deduplicating against a bad copy; a FULL
    backup repairs them either way. ``progress(chunks_done, chunks_total)``.
    """
    users: dict[str, list[str]] = {}
    for manifest in manifests:
        for digest in manifest.digests():
            users.setdefault(digest, []).append(manifest.backup_id)
    if all_chunks:
        for digest in store.iter_digests():
            users.setdefault(digest, [])
    report = ScrubReport()

    def check(digest: str) -> tuple[str, str | None, int]:
        try:
            blob = store.backend.get(chunk_key(digest))
        except ObjectNotFound:
            return digest, "missing", 0
        try:
            store.decode(digest, blob)
        except IntegrityError:
            return digest, "damaged", len(blob)
        return digest, None, len(blob)

    total = len(users)
    for done, (digest, problem, stored) in enumerate(
        _ordered_map(check, list(users), workers * THREADS_PER_WORKER), start=1
    ):
        report.chunks_checked += 1
        report.bytes_checked += stored
        if problem == "missing":
            report.missing[digest] = sorted(users[digest])
        elif problem == "damaged":
            report.damaged[digest] = sorted(users[digest])
            if remove_damaged:
                store.delete_chunk(digest)
                report.removed += 1
        if progress:
            progress(done, total)
    if report.removed:
        store.backend.sync()
    return report


@dataclass
class GcReport:
    """Outcome of :func:`collect_garbage`."""

    chunks_seen: int = 0
    chunks_live: int = 0
    chunks_deleted: int = 0
    bytes_deleted: int = 0
    chunks_in_grace: int = 0
    temporaries_removed: int = 0


def collect_garbage(
    store: ChunkStore,
    live_manifests: Iterable[Manifest],
    *,
    grace_seconds: float,
    now: float | None = None,
) -> GcReport:
    """Delete chunks no live manifest names and nobody touched for ``grace_seconds``.

    ``live_manifests`` are the backups to keep (normally every manifest in the store that
    has not been deleted); compute them just before calling. Safe while backups run as long
    as ``grace_seconds`` exceeds the time between computing ``live_manifests`` and calling
    this, plus the time a backup spends between its seal and saving its manifest (seconds).
    Also removes leftovers of interrupted writes older than the grace period.
    """
    if grace_seconds < 0:
        raise ValueError("grace_seconds must not be negative")
    cutoff = (time.time() if now is None else now) - grace_seconds
    live: set[str] = set()
    for manifest in live_manifests:
        live |= manifest.digests()
    report = GcReport()
    backend = store.backend
    for digest in store.iter_digests():
        report.chunks_seen += 1
        if digest in live:
            report.chunks_live += 1
            continue
        key = chunk_key(digest)
        try:
            stored = backend.size(key)
        except ObjectNotFound:
            continue
        if backend.delete_if_older(key, cutoff):
            report.chunks_deleted += 1
            report.bytes_deleted += stored
        else:
            report.chunks_in_grace += 1
    report.temporaries_removed = backend.cleanup(cutoff)
    backend.sync()
    return report


def unique_stored_bytes(target: Manifest, others: Iterable[Manifest]) -> int:
    """Stored bytes of the chunks of ``target`` that no other manifest names.

    What deleting ``target`` alone would free (OCI's ``uniqueSizeInGBs``); ``others`` may
    include ``target`` itself, which is ignored.
    """
    shared: set[str] = set()
    for other in others:
        if other.backup_id != target.backup_id:
            shared |= other.digests()
    unique = {e.digest: e.stored_size for e in target.chunks if e.digest not in shared}
    return sum(unique.values())
