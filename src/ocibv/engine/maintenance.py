"""Store maintenance: scrub (re-verify chunks) and garbage collection.

Garbage collection is mark-and-sweep with a grace period, safe while backups run:

- mark: the digests named by the live manifests;
- sweep: every other chunk whose timestamp is older than ``now - grace_seconds`` is deleted
  with ``Backend.delete_if_older``, which re-checks the timestamp atomically against a
  concurrent touch.

A backup touches every chunk it relies on when it first meets it (``put_chunk``) and all of
them again just before saving its manifest (the seal in ``backup``), re-storing from the
image any that vanished. So a chunk a running backup will name is either young when the
collector looks at it, or deleted before the seal, which then stores it again. The full
argument is in ``docs/design.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ocibv.engine.chunk_store import ChunkStore, chunk_key
from ocibv.engine.errors import IntegrityError, ObjectNotFound
from ocibv.engine.manifest import Manifest
from ocibv.engine.parallel import batched, bounded_map


@dataclass
class ScrubReport:
    """Outcome of :func:`scrub`: damaged and missing chunks and the backups each breaks.

    ``damaged`` and ``missing`` map a chunk digest to the sorted ids of the backups (among
    the manifests given) that name it; an unreferenced damaged chunk maps to ``[]``.
    """

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
    progress: Callable[[int, int], None] | None = None,
) -> ScrubReport:
    """Read and verify every chunk the manifests name (with ``all_chunks``, every stored
    chunk too); report damaged and missing digests with the backup ids each affects.

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

    def check(batch: list[str]) -> list[tuple[str, str | None, int]]:
        out: list[tuple[str, str | None, int]] = []
        for digest in batch:
            try:
                blob = store.backend.get(chunk_key(digest))
            except ObjectNotFound:
                out.append((digest, "missing", 0))
                continue
            try:
                store.decode(digest, blob)
            except IntegrityError:
                out.append((digest, "damaged", len(blob)))
                continue
            out.append((digest, None, len(blob)))
        return out

    report = ScrubReport()
    total = len(users)
    for results in bounded_map(check, batched(list(users), 8), max(1, workers)):
        for digest, problem, stored in results:
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
            progress(report.chunks_checked, total)
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

    ``live_manifests`` are the backups to keep (every manifest not being deleted), computed
    just before the call. Safe while backups run as long as ``grace_seconds`` exceeds the
    time a backup takes from its seal to saving its manifest (seconds) plus the time from
    computing ``live_manifests`` to this call; a grace of hours also spares a long-running
    backup from storing again chunks it deduplicated against early on. Also removes
    leftovers of interrupted writes older than the grace period. ``now`` is for tests.
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
            info = backend.stat(key)
        except ObjectNotFound:
            continue
        if info.mtime >= cutoff:
            report.chunks_in_grace += 1
        elif backend.delete_if_older(key, cutoff):
            report.chunks_deleted += 1
            report.bytes_deleted += info.size
        else:
            report.chunks_in_grace += 1  # touched a moment ago
    report.temporaries_removed = backend.cleanup(cutoff)
    backend.sync()
    return report
