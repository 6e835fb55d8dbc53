"""Backup and restore of volume images through a chunk store.

A volume image is cut into fixed, aligned chunks of ``chunk_size`` bytes. A backup stores the
non-zero chunks (deduplicated by digest) and then, last, a manifest naming them; a restore
writes them back and leaves everything else a hole. Work is spread over a small thread pool
(BLAKE3, zstd and file I/O release the GIL) with a bounded number of chunks in flight, so
memory does not grow with the volume.

A backup writes its packs and their index (``ChunkStore.flush``), then its manifest, then
*verifies* it (rule W2 of docs/design.md): every chunk it names must have a copy in a pack
that exists and no garbage-collection plan condemns; chunks that fail are stored again from
the image (a stable snapshot) and the verification repeats. Only then does the backup
return. That keeps a running backup safe from a concurrent collector without any atomic
touch. Scrub and garbage collection live in ``maintenance``, re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

from ocibv.engine.chunk_store import DEFAULT_CHUNK_SIZE, ChunkStore, chunk_digest
from ocibv.engine.chunk_table import ChunkEntry, ChunkTable, binary_digests, entries_between
from ocibv.engine.errors import IntegrityError, VolumeImageError
from ocibv.engine.maintenance import GcReport, ScrubReport, collect_garbage, scrub
from ocibv.engine.manifest import (
    BackupType,
    Manifest,
    Reuse,
    delete_manifest,
    save_manifest,
    validate_id,
)
from ocibv.engine.pack import Buffer
from ocibv.engine.parallel import batched, bounded_map
from ocibv.engine.volume_files import iter_data_extents, read_sparse_many, start_writeback

__all__ = [
    "GcReport",
    "ScrubReport",
    "backup_volume",
    "collect_garbage",
    "restore_volume",
    "scrub",
    "verify_backup",
]

Progress = Callable[[int, int], None]
T = TypeVar("T")
R = TypeVar("R")


class SnapshotSource(Protocol):
    """A point-in-time view of a live image (``ocibv.engine.snapshot.PointInTime``)."""

    @property
    def size(self) -> int: ...

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | bytearray]:
        """The point-in-time bytes of each ``(offset, length)``, in order."""
        ...

    def data_extents(self) -> list[tuple[int, int]]:
        """Sorted ``(offset, length)`` regions that may hold point-in-time data."""
        ...


THREADS_PER_WORKER = 2
"""Backup threads per requested worker: a thread that fills a pack writes and fsyncs it, so
one more thread than cores keeps the cores busy. More threads only cost GIL hand-offs and
memory (measured on the benchmark image with 4 MiB batches: 4 per worker used the same CPU
for a FULL, with a peak RSS of 112 MB against 76 to 83 MB)."""
RESTORE_THREADS_PER_WORKER = 4
"""Restore threads per worker on a local store (a thread waits while its writes are throttled
by the page cache's dirty limits)."""


BATCH_BYTES = 4 * 1024 * 1024
"""Chunk bytes per task submitted to the thread pool (see ``_work_batches``): each task
costs held-GIL time in the pool's futures and locks, against ~0.4 ms of reading and hashing
per MiB; 4 MiB batches on 2 threads per worker cut a content-rescan INCREMENTAL's CPU by
~20% against 1 MiB batches on 4 (docs/design.md, "Data path and throughput")."""
RESTORE_SPAN = 2 * 1024 * 1024
"""Stored bytes of a pack a restore task reads at once (one ranged read per task). Measured
with ``bench/backup.py`` (4 GiB image, 8 restore threads): 2 MiB peaked at 75-78 MB of RSS
against 104-105 MB with 4 MiB, in the same wall time (3.7 s) and ~4% more CPU."""
REMOTE_THREADS_PER_WORKER = 2
"""A restore from a remote backend reads whole packs: one GET per pack costs an S3 server
about half of what two ranged GETs of its halves do (measured on moto: restore of the 1 GiB
benchmark image 1.4 s instead of 1.6 to 2.3 s, server CPU 0.3 s instead of 0.55 s)."""
RESTORE_WINDOW = 16384
"""Manifest entries a restore plans and writes at a time (4 GiB of volume in 256 KiB chunks).
A whole manifest's entries and reads, planned at once, cost ~1 KB a chunk: a sparse 32 GiB
image of 131k chunks restored at a peak of 162-164 MB that way, at 115 MB windowed."""
WRITEBACK_BYTES = 64 * 1024 * 1024
"""A restore starts the write-out of what it wrote every this many bytes, so the final
fsync finds little left to write (the page cache would otherwise hold it all: Linux starts
background write-out only at 10% of memory dirty or after 30 s)."""


KEPT_PER_BATCH = 4096
"""Entries kept from the previous manifest (nothing to read) a task carries at most: they
cost a task nothing but appending, so they ride along with the reads in few large tasks (a
task per 16 kept entries made a no-change INCREMENTAL of 16k chunks cost ~0.2 s)."""


class KeptRun(NamedTuple):
    """Entries ``first`` up to ``stop`` of the previous manifest's chunk table, kept as they
    are: copied as packed records, never decoded (a no-change INCREMENTAL of 16k chunks
    spent ~70 ms making and packing again ``ChunkEntry`` objects it did not change)."""

    first: int
    stop: int


WorkItem = int | ChunkEntry | KeptRun
"""A chunk to read (its index), an entry kept from the previous manifest, or a run of them."""


def _batch_size(chunk_size: int) -> int:
    return max(1, BATCH_BYTES // chunk_size)


def _work_batches(work: Iterable[WorkItem], reads: int) -> Iterator[list[WorkItem]]:
    """``work`` in lists of at most ``reads`` chunks to read (indices) and about
    ``KEPT_PER_BATCH`` kept entries, consumed lazily and in order."""
    batch: list[WorkItem] = []
    to_read = kept = 0
    for item in work:
        batch.append(item)
        if isinstance(item, int):
            to_read += 1
        elif isinstance(item, KeptRun):
            kept += item.stop - item.first
        else:
            kept += 1
        if to_read >= reads or kept >= KEPT_PER_BATCH:
            yield batch
            batch, to_read, kept = [], 0, 0
    if batch:
        yield batch


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _allocated_chunks(
    fd: int, size: int, chunk_size: int, snapshot: SnapshotSource | None = None
) -> Iterator[int]:
    """Indices of the chunks that overlap a data extent (holes are never read)."""
    next_index = 0
    extents = snapshot.data_extents() if snapshot is not None else iter_data_extents(fd, size)
    for start, length in extents:
        first = max(start // chunk_size, next_index)
        last = (start + length - 1) // chunk_size
        yield from range(first, last + 1)
        next_index = max(next_index, last + 1)


def _check_ranges(ranges: list[tuple[int, int]]) -> None:
    for offset, length in ranges:
        if offset < 0 or length < 0:
            raise ValueError(f"bad changed range ({offset}, {length})")


def _changed_indices(
    ranges: list[tuple[int, int]], size: int, chunk_size: int
) -> Iterator[int]:
    """Increasing indices of the chunks that sorted ``(offset, length)`` ranges touch,
    within ``size``, each once (streamed: no list of a volume's chunks)."""
    last = -1
    for offset, length in ranges:
        end = min(offset + length, size)
        if end <= offset:
            continue
        first = max(offset // chunk_size, last + 1)
        stop = (end - 1) // chunk_size
        yield from range(first, stop + 1)
        last = max(last, stop)


def _merge_changed(
    previous: Iterable[ChunkEntry], ranges: list[tuple[int, int]], size: int,
    chunk_size: int, reader: _ImageReader,
) -> Iterator[int | ChunkEntry]:
    """An INCREMENTAL with changed ranges, in chunk order: the index of every chunk to read
    (changed, or sized unlike its slot after a resize) and every entry of ``previous`` kept
    as it is. Both inputs are streams sorted by index."""
    changed = _changed_indices(ranges, size, chunk_size)
    pending = next(changed, None)
    for entry in previous:
        index = entry.chunk_index
        while pending is not None and pending < index:
            yield pending
            pending = next(changed, None)
        if pending == index:
            yield pending
            pending = next(changed, None)
        elif index * chunk_size >= size:
            continue
        elif entry.size != reader.slot_size(index):  # the volume grew: read it again
            yield index
        else:
            yield entry
    while pending is not None:
        yield pending
        pending = next(changed, None)


def _kept_runs(
    previous: ChunkTable, changed: Iterable[int]
) -> Iterator[int | KeptRun]:
    """:func:`_merge_changed` for a volume whose size did not change (every kept entry fits
    its slot): the ``changed`` indices (increasing) to read, and the rest of ``previous`` as
    runs of at most ``KEPT_PER_BATCH`` entries."""
    position = 0
    for index in changed:
        at = previous.position_of(index, position)
        yield from _runs(position, at)
        yield index
        position = at + 1 if at < len(previous) and previous.index_at(at) == index else at
    yield from _runs(position, len(previous))


def _runs(first: int, stop: int) -> Iterator[KeptRun]:
    for start in range(first, stop, KEPT_PER_BATCH):
        yield KeptRun(start, min(stop, start + KEPT_PER_BATCH))


def _in_order(
    fn: Callable[[T], R], items: Iterable[T], threads: int
) -> Iterator[R]:
    """``parallel.bounded_map`` with results put back *in input order* (a manifest is
    written as it is produced). The work in flight stays bounded by ``bounded_map``; only
    the results that finished ahead of a slow one wait here (a few entries each), so a
    thread writing a pack never stalls the others."""

    def numbered(item: tuple[int, T]) -> tuple[int, R]:
        return item[0], fn(item[1])

    waiting: dict[int, R] = {}
    following = 0
    for seq, result in bounded_map(numbered, enumerate(items), threads):
        waiting[seq] = result
        while following in waiting:
            yield waiting.pop(following)
            following += 1


class _ImageReader:
    """Reads chunk ``index`` of an open image; turns short reads into VolumeImageError."""

    def __init__(
        self, fd: int, size: int, chunk_size: int, snapshot: SnapshotSource | None = None
    ) -> None:
        self.fd, self.size, self.chunk_size = fd, size, chunk_size
        self.snapshot = snapshot
        self._zero = bytes(chunk_size)

    def slot_size(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def read(self, index: int) -> bytes | bytearray | None:
        """The chunk's bytes, or None when they are all zeros."""
        return next(self.read_many([index]))

    def read_many(self, indices: list[int]) -> Iterator[bytes | bytearray | None]:
        """:meth:`read` of each chunk, in order (a snapshot is asked about them all at
        once). An image nobody writes is read one chunk at a time as the caller asks, so a
        chunk the caller drops is not held while the rest of the batch is read (see
        ``read_sparse_many``)."""
        if not indices:
            return
        ranges = [(index * self.chunk_size, self.slot_size(index)) for index in indices]
        if self.snapshot is not None:
            datas: Iterable[bytes | bytearray] = self.snapshot.read_many(ranges)
        else:
            datas = read_sparse_many(self.fd, ranges)
        for index, (_, n), data in zip(indices, ranges, datas, strict=True):
            if len(data) != n:
                raise VolumeImageError(f"short read of chunk {index}: image changed size")
            # bytes == bytes runs at memory speed; a memoryview compare would be ~60x slower
            zero = self._zero if n == self.chunk_size else bytes(n)
            yield None if data == zero else data


HOLE_BLOCK = 4096
_ZERO_BLOCK = bytes(HOLE_BLOCK)


def _nonzero_runs(data: Buffer) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the runs of ``data`` not made of all-zero 4 KiB blocks."""
    heads = bytes(data[::HOLE_BLOCK])  # a block whose first byte is not 0 is not a zero block
    if 0 not in heads:
        yield 0, len(data)
        return
    run_start: int | None = None
    for i, head in enumerate(heads):
        start = i * HOLE_BLOCK
        # bytes == bytes runs at memory speed; a memoryview compare would be ~60x slower
        is_zero = head == 0 and bytes(data[start : start + HOLE_BLOCK]) == _ZERO_BLOCK[
            : len(data) - start
        ]
        if is_zero and run_start is not None:
            yield run_start, start
            run_start = None
        elif not is_zero and run_start is None:
            run_start = start
    if run_start is not None:
        yield run_start, len(data)


def backup_volume(
    store: ChunkStore,
    image_path: Path,
    *,
    backup_id: str,
    volume_id: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    previous: Manifest | None = None,
    backup_type: BackupType,
    changed_ranges: Iterable[tuple[int, int]] | None = None,
    progress: Progress | None = None,
    workers: int = 2,
    group_backup_id: str | None = None,
    created_at: str | None = None,
    snapshot: SnapshotSource | None = None,
) -> Manifest:
    """Back up the image at ``image_path`` (a stable snapshot) and return its saved manifest.

    FULL reads every allocated chunk and stores it with ``verify_existing``,
    so it repairs damaged or missing chunks. INCREMENTAL reads every allocated chunk too but
    stores only chunks not already present. When ``changed_ranges`` (byte ``(offset,
    length)`` pairs) is given with ``previous`` of the same chunk size, an INCREMENTAL reads
    only the chunks those ranges touch and takes every other chunk from ``previous``; the
    caller guarantees nothing else changed since ``previous``. Holes are never read and
    all-zero chunks are never stored. ``progress(bytes_done, bytes_total)`` is called from
    the calling thread. Chunks are durable (``backend.sync()``) before the manifest is
    saved, and the manifest is saved durably last: on any exception no manifest exists
    (chunks already stored stay until garbage collection).

    With ``snapshot`` (a point-in-time view of the live image at ``image_path``, see
    ``ocibv.engine.snapshot``) every byte is read through it, so writers may keep writing
    to the image during the backup. Each chunk is then read once: the seal's re-read of a
    chunk that garbage collection removed mid-backup fails (VolumeImageError) instead of
    storing bytes newer than the point in time.
    """
    validate_id(backup_id)
    if chunk_size <= 0 or workers <= 0:
        raise ValueError("chunk_size and workers must be positive")
    try:
        fd = os.open(image_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise VolumeImageError(f"cannot open volume image {image_path}: {exc}") from exc
    full = backup_type == BackupType.FULL
    try:
        size = snapshot.size if snapshot is not None else os.fstat(fd).st_size
        reader = _ImageReader(fd, size, chunk_size, snapshot)
        seam = (
            changed_ranges is not None
            and not full
            and previous is not None
            and previous.chunk_size == chunk_size
        )
        # Work items in chunk order: an index to read, or an entry kept from ``previous``.
        # Streamed, never listed: the manifest is written as results come back in order.
        if seam and previous is not None and changed_ranges is not None:
            ranges = sorted(changed_ranges)
            _check_ranges(ranges)
            kept = previous.chunks
            same_size = previous.volume_size == size  # every kept entry fits its slot

            def items() -> Iterator[WorkItem]:
                if same_size and isinstance(kept, ChunkTable):
                    return _kept_runs(kept, _changed_indices(ranges, size, chunk_size))
                return _merge_changed(kept, ranges, size, chunk_size, reader)

            if same_size:  # only the changed chunks are read: no pass over ``kept`` to total
                total = sum(reader.slot_size(i) for i in _changed_indices(ranges, size, chunk_size))
            else:
                total = sum(reader.slot_size(i) for i in items() if isinstance(i, int))
            work: Iterable[WorkItem] = items()
        else:
            work = _allocated_chunks(fd, size, chunk_size, snapshot)
            total = sum(
                reader.slot_size(i) for i in _allocated_chunks(fd, size, chunk_size, snapshot)
            )

        # a content rescan: a chunk whose digest is its previous entry's is kept as that entry
        # without asking the index (it was stored; the W2 verification checks it as ever)
        rescanned = (
            previous.chunks
            if not full and not seam and previous is not None
            and previous.chunk_size == chunk_size
            else None
        )

        def read_and_store(batch: list[WorkItem]) -> tuple[list[ChunkEntry | KeptRun], int]:
            """The batch's entries in order (all-zero chunks dropped), and the bytes read."""
            found: dict[int, ChunkEntry] = {}
            indices: list[int] = []
            datas: list[bytes | bytearray] = []  # the batch's chunks to store (<= 4 MiB)
            digests: list[str | None] = []
            read = 0
            wanted = [item for item in batch if isinstance(item, int)]
            before = (
                entries_between(rescanned, wanted[0], wanted[-1] + 1)
                if rescanned is not None and wanted
                else {}
            )
            for chunk, data in zip(wanted, reader.read_many(wanted), strict=True):
                read += reader.slot_size(chunk)
                if data is None:
                    continue
                digest, old = None, before.get(chunk)
                if old is not None:
                    digest = chunk_digest(data)
                    if digest == old.digest and old.size == len(data):
                        found[chunk] = old
                        continue
                indices.append(chunk)
                datas.append(data)
                digests.append(digest)

            # neighbours stay together
            refs = store.put_chunks(datas, digests=digests, verify_existing=full)
            for index, ref in zip(indices, refs, strict=True):
                found[index] = ChunkEntry(index, ref.digest, ref.size, ref.stored_size)
            if vouched is not None:
                vouched.fresh.extend(ref.digest for ref in refs)
            out: list[ChunkEntry | KeptRun] = []
            for item in batch:
                if isinstance(item, int):
                    entry = found.get(item)
                    if entry is not None:
                        out.append(entry)
                else:
                    out.append(item)
            return out, read

        kept_table = previous.chunks if previous is not None else None
        # the packs that can vouch for the entries kept from ``previous``, and the digests
        # of the chunks read (filled as they are stored: the only ones looked up one by one)
        vouched = (
            Vouched(previous.verified_packs, [])
            if seam and previous is not None and previous.verified_packs is not None
            else None
        )

        plan: list[tuple[int, int] | int] = []  # Reuse.plan: runs of ``previous``, new entries

        def planned(segment: tuple[int, int] | int) -> None:
            last = plan[-1] if plan else None
            if isinstance(segment, int) and isinstance(last, int):
                plan[-1] = last + segment
            elif isinstance(segment, tuple) and isinstance(last, tuple) and last[1] == segment[0]:
                plan[-1] = (last[0], segment[1])
            elif segment:
                plan.append(segment)

        def append(entries: list[ChunkEntry | KeptRun]) -> None:
            """Add a task's entries to the new manifest; kept runs as packed records."""
            pending: list[ChunkEntry] = []
            for item in entries:
                if isinstance(item, KeptRun):
                    assert isinstance(kept_table, ChunkTable)  # runs come only from a table
                    chunks.extend(pending)
                    planned(len(pending))
                    pending = []
                    records = kept_table.records(item.first, item.stop)
                    chunks.extend_records(records, item.stop - item.first)
                    planned((item.first, item.stop))
                else:
                    pending.append(item)
            chunks.extend(pending)
            planned(len(pending))

        done = 0
        if progress:
            progress(0, total)
        threads = workers * THREADS_PER_WORKER
        batches = _work_batches(work, _batch_size(chunk_size))
        chunks = ChunkTable()
        for entries, read in _in_order(read_and_store, batches, threads):
            append(entries)
            done += read
            if progress:
                progress(done, total)
        store.flush()
        manifest = Manifest(
            backup_id=backup_id,
            volume_id=volume_id,
            volume_size=size,
            chunk_size=chunk_size,
            created_at=created_at or _now_iso(),
            type=backup_type,
            chunks=chunks,
            group_backup_id=group_backup_id,
        )
        reuse = None
        if previous is not None and any(isinstance(segment, tuple) for segment in plan):
            reuse = Reuse(previous, plan)  # the text of the kept runs is copied
        save_manifest(store.backend, manifest, reuse)
        try:
            _verify_and_repair(store, reader, manifest, vouched)
        except BaseException:
            delete_manifest(store.backend, backup_id)  # never leave an unverified manifest
            raise
        return manifest
    except BaseException:
        # Blobs still buffered are not written: a full disk stays as full as the failure left
        # it. A concurrent backup that deduplicated against one finds it missing when it
        # verifies, and stores it again (rule W2).
        store.abandon_buffer()
        raise
    finally:
        os.close(fd)


VERIFY_ATTEMPTS = 4


class Vouched(NamedTuple):
    """An INCREMENTAL's entries apart from ``fresh`` are its base's, which a verification
    found in ``packs``."""

    packs: frozenset[str]
    fresh: list[str]


def verify_backup(
    store: ChunkStore, manifest: Manifest, vouched: Vouched | None = None
) -> set[str]:
    """Digests of ``manifest`` without a usable stored copy (empty: the backup is whole);
    with ``vouched``, the other entries are checked by their packs while those are usable.
    A whole backup remembers the packs it was found in (``Manifest.verified_packs``)."""
    found = None
    if vouched is not None:
        found = store.verify(vouched.fresh, vouched=vouched.packs)
    if found is None or not found.vouched:
        found = store.verify(binary_digests(manifest.chunks))
    manifest.verified_packs = None if found.missing else found.packs
    return found.missing


def _verify_and_repair(
    store: ChunkStore, reader: _ImageReader, manifest: Manifest, vouched: Vouched | None
) -> None:
    """Rule W2: verify after the manifest is saved; store again from the image what a
    concurrent garbage collection condemned or removed, until nothing is missing."""
    for _ in range(VERIFY_ATTEMPTS):
        missing = verify_backup(store, manifest, vouched)
        if not missing:
            return
        seen: set[str] = set()
        for entry in manifest.chunks:
            if entry.digest not in missing or entry.digest in seen:
                continue
            seen.add(entry.digest)
            data = reader.read(entry.chunk_index)
            if data is None or chunk_digest(data) != entry.digest:
                raise IntegrityError(
                    f"chunk {entry.chunk_index} of the image no longer hashes to "
                    f"{entry.digest}: the image changed during the backup or the changed "
                    "ranges were incomplete"
                )
            store.put_chunk(data, digest=entry.digest, force=True)
        store.flush()
    raise IntegrityError(
        f"backup {manifest.backup_id}: chunks kept vanishing while it was verified "
        "(garbage collection with a grace period of 0 running in a loop?)"
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
    discarded); chunks absent from the manifest and all-zero 4 KiB blocks stay holes, so a
    hole of the source is a hole of the restore. Every chunk
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

        def fetch_and_write(slots: dict[str, list[ChunkEntry]], group: list[str]) -> int:
            done = 0
            for digest, data in store.iter_group(group):
                view = memoryview(data)
                for entry in slots[digest]:
                    if len(data) != entry.size:
                        raise IntegrityError(
                            f"chunk {digest}: {len(data)} bytes, the manifest says {entry.size}"
                        )
                    base = entry.chunk_index * manifest.chunk_size
                    for start, end in _nonzero_runs(data):
                        written = os.pwrite(fd, view[start:end], base + start)
                        while start + written < end:  # pwrite may write less than asked
                            written += os.pwrite(
                                fd, view[start + written : end], base + start + written
                            )
                    done += entry.size
            return done

        total = manifest.data_bytes
        done = flushed = 0
        if progress:
            progress(0, total)
        # one ranged read per span of a pack: few requests, bounded memory
        span, threads = RESTORE_SPAN, workers * RESTORE_THREADS_PER_WORKER
        if store.backend.remote:  # whole packs, from fewer threads (same memory)
            span, threads = max(span, store.pack_size), workers * REMOTE_THREADS_PER_WORKER

        def reads() -> Iterator[tuple[dict[str, list[ChunkEntry]], list[str]]]:
            """The reads of a window of the manifest at a time, with the entries they fill:
            what a restore holds does not grow with the volume, and the next window is
            planned while the threads still work on the last one's reads."""
            for window in batched(manifest.chunks, RESTORE_WINDOW):
                slots: dict[str, list[ChunkEntry]] = {}
                for entry in window:
                    slots.setdefault(entry.digest, []).append(entry)
                for group in store.plan_reads(slots, span):
                    yield slots, group

        for n in bounded_map(lambda read: fetch_and_write(*read), reads(), threads):
            done += n
            if done - flushed >= WRITEBACK_BYTES:  # the disk writes while we decode
                start_writeback(fd)
                flushed = done
            if progress:
                progress(done, total)
        os.fsync(fd)
    except OSError as exc:
        raise VolumeImageError(f"restore to {target_path} failed: {exc}") from exc
    finally:
        os.close(fd)
