"""Store maintenance: scrub (re-verify chunks) and garbage collection by plans.

Garbage collection (docs/design.md, "Garbage collection") uses only put, get, list, stat and
delete. One run: (1) sweeps the plans older than the grace period — a condemned pack is
deleted unless a chunk in it is live (named by a manifest listed *now*) and has no other
usable copy; the plan is deleted after its packs; (2) marks the packs older than the grace
period by their live bytes; packs without live chunks are condemned, mostly dead ones are
repacked (live chunks copied into new packs first) and condemned; (3) writes the condemned
packs as a new plan; (4) consolidates the index objects. Backups verify after saving their
manifest (``backup``), which makes this safe while they run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ocibv.engine import keys
from ocibv.engine.backends.base import Backend
from ocibv.engine.chunk_store import INDEX_BATCH, ChunkStore
from ocibv.engine.errors import ChunkNotFound, IntegrityError, ObjectNotFound
from ocibv.engine.index import (
    PLAN_VERSION,
    PackEntries,
    existing_packs,
    index_keys,
    plan_keys,
    read_index_object,
    read_plan,
    write_index_object,
)
from ocibv.engine.manifest import Manifest, iter_manifests
from ocibv.engine.parallel import batched, bounded_map
from ocibv.engine.repository import now_iso

REPACK_LIVE_FRACTION = 0.5
"""A pack with less than this fraction of its bytes live is repacked."""
TEMPORARY_MIN_AGE = 600.0
"""Leftovers of interrupted writes (local ``.tmp-*``) are removed only when this old."""
CONSOLIDATE_AT = 64
"""Index objects beyond which a collection merges them into one."""


@dataclass
class ScrubReport:
    """Outcome of :func:`scrub`: damaged and missing chunks and the backups each breaks.

    ``damaged`` and ``missing`` map a chunk digest to the sorted ids of the backups (among
    the manifests given) that name it; an unreferenced damaged chunk maps to ``[]``.
    ``damaged_objects`` lists index objects that could not be read.
    """

    chunks_checked: int = 0
    bytes_checked: int = 0
    damaged: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    damaged_objects: list[str] = field(default_factory=list)
    removed: int = 0

    @property
    def affected_backups(self) -> set[str]:
        """Backup ids that cannot be restored until their chunks are repaired."""
        return {b for ids in (*self.damaged.values(), *self.missing.values()) for b in ids}

    @property
    def ok(self) -> bool:
        """True when every checked chunk is present and intact."""
        return not self.damaged and not self.missing and not self.damaged_objects


def scrub(
    store: ChunkStore,
    manifests: Iterable[Manifest],
    *,
    all_chunks: bool = False,
    remove_damaged: bool = False,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> ScrubReport:
    """Read and verify every chunk the manifests name (with ``all_chunks``, every indexed
    chunk too); report damaged and missing digests with the backup ids each affects.

    With ``remove_damaged`` the packs holding damaged blobs are rewritten without them (their
    good blobs are copied first), so that the next backup of the same data stores it again
    instead of deduplicating against a bad copy; a FULL backup repairs them either way.
    """
    store.refresh()
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
                data = store.get_chunk(digest)
            except ChunkNotFound:
                out.append((digest, "missing", 0))
            except IntegrityError:
                out.append((digest, "damaged", 0))
            else:
                out.append((digest, None, len(data)))
        return out

    report = ScrubReport(damaged_objects=sorted(store.index.damaged))
    total = len(users)
    for results in bounded_map(check, batched(list(users), 8), max(1, workers)):
        for digest, problem, size in results:
            report.chunks_checked += 1
            report.bytes_checked += size
            if problem == "missing":
                report.missing[digest] = sorted(users[digest])
            elif problem == "damaged":
                report.damaged[digest] = sorted(users[digest])
        if progress:
            progress(report.chunks_checked, total)
    if remove_damaged and report.damaged:
        report.removed = _drop_damaged(store, set(report.damaged))
    return report


def _drop_damaged(store: ChunkStore, damaged: set[str]) -> int:
    """Rewrite the packs holding blobs of ``damaged`` digests without them; return how many
    damaged blobs went. Good blobs are copied (and indexed) before a pack is deleted."""
    victims: dict[str, list[tuple[str, int]]] = {}
    for digest in damaged:
        for loc in store.index.locations(digest):
            victims.setdefault(loc.pack, [])
    for digest in list(store.iter_digests()):
        for loc in store.index.locations(digest):
            if loc.pack in victims:
                victims[loc.pack].append((digest, loc.offset))
    for entries in victims.values():
        for digest, _offset in entries:
            if digest in damaged:
                continue
            try:
                store.put_chunk(store.get_chunk(digest), digest=digest, force=True)
            except (ChunkNotFound, IntegrityError):
                continue
    store.flush()
    for pack in victims:
        store.backend.delete(keys.pack_key(pack))
    store.backend.sync()
    return len(damaged)


@dataclass
class GcReport:
    """Outcome of :func:`collect_garbage`."""

    packs_seen: int = 0
    packs_deleted: int = 0
    bytes_deleted: int = 0
    packs_kept: int = 0  # condemned, but a live chunk had no other copy: kept
    packs_condemned: int = 0
    packs_repacked: int = 0
    plans_swept: int = 0
    index_objects_merged: int = 0
    temporaries_removed: int = 0


def live_digests(backend: Backend) -> set[str]:
    """Digests named by every manifest stored now (a damaged manifest aborts: IntegrityError)."""
    live: set[str] = set()
    for manifest in iter_manifests(backend):
        live.update(entry.digest for entry in manifest.chunks)
    return live


def _read_indexes(backend: Backend) -> tuple[list[str], PackEntries, dict[str, float]]:
    """Index objects now: their keys, their packs and, per pack, its index object's time."""
    read: list[str] = []
    packs: PackEntries = {}
    times: dict[str, float] = {}
    for key in index_keys(backend):
        try:
            mtime = backend.stat(key).mtime
            content = read_index_object(backend, key)
        except ObjectNotFound:
            continue
        read.append(key)
        for pid, entries in content.items():
            known = packs.get(pid)
            if known is None:
                packs[pid] = list(entries)
            else:  # a pack in two index objects (a consolidation under way): once each
                seen = set(known)
                known.extend(e for e in entries if e not in seen)
            times[pid] = min(times.get(pid, mtime), mtime)
    return read, packs, times


def collect_garbage(
    store: ChunkStore,
    *,
    grace_seconds: float,
    now: float | None = None,
) -> GcReport:
    """One collection run (sweep due plans, mark, plan, consolidate); see the module doc.

    Lists the manifests itself, after deciding which plans are due: every stored manifest is
    live (deleting a backup deletes its manifest). Safe while backups, restores and other
    collections run. ``now`` is for tests.
    """
    if grace_seconds < 0:
        raise ValueError("grace_seconds must not be negative")
    backend = store.backend
    cutoff = (time.time() if now is None else now) - grace_seconds
    report = GcReport()
    plans: dict[str, tuple[float, set[str]]] = {}
    for key in plan_keys(backend):
        try:
            plans[key] = (backend.stat(key).mtime, read_plan(backend, key))
        except ObjectNotFound:
            continue
    due = [key for key, (mtime, _packs) in plans.items() if mtime <= cutoff]
    live = live_digests(backend)  # listed after the due plans were chosen
    existing = existing_packs(backend)  # before the index: a pack indexed meanwhile is
    read, packs, times = _read_indexes(backend)  # not mistaken for an orphan
    report.packs_seen = len(existing)
    where: dict[str, set[str]] = {}
    for pid, entries in packs.items():
        if pid in existing:
            for digest, _loc in entries:
                where.setdefault(digest, set()).add(pid)
    condemned = {p for _m, ps in plans.values() for p in ps}

    def needed(pid: str, exclude: set[str]) -> bool:
        return any(
            digest in live and not (where.get(digest, set()) - exclude - {pid})
            for digest, _loc in packs.get(pid, [])
        )

    for key in due:
        for pid in sorted(plans[key][1]):
            if pid not in existing:
                continue
            if needed(pid, condemned):
                report.packs_kept += 1
                continue
            report.bytes_deleted += sum(loc.length for _d, loc in packs.get(pid, []))
            backend.delete(keys.pack_key(pid))
            existing.discard(pid)
            report.packs_deleted += 1
        backend.sync()
        backend.delete(key)
        report.plans_swept += 1
    still = {p for key, (_m, ps) in plans.items() if key not in due for p in ps}

    to_condemn: list[str] = []
    to_repack: list[str] = []
    for pid in sorted(existing - still):
        if pid not in packs:  # not indexed: a crashed (or still running) writer's pack
            try:
                if backend.stat(keys.pack_key(pid)).mtime <= cutoff:
                    to_condemn.append(pid)
            except ObjectNotFound:
                pass
            continue
        if times[pid] > cutoff:
            continue
        total = sum(loc.length for _d, loc in packs[pid])
        alive = sum(loc.length for d, loc in packs[pid] if d in live)
        if alive == 0:
            to_condemn.append(pid)
        elif alive < REPACK_LIVE_FRACTION * total:
            to_repack.append(pid)
    if to_repack:
        _repack(store, to_repack, packs, live, where, set(to_repack) | still)
        report.packs_repacked = len(to_repack)
        to_condemn.extend(to_repack)
    if to_condemn:
        plan = {"version": PLAN_VERSION, "created_at": now_iso(), "packs": sorted(to_condemn)}
        name = f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:12]}"
        backend.put(keys.plan_key(name), json.dumps(plan).encode())
        report.packs_condemned = len(to_condemn)

    if report.packs_deleted or len(read) > CONSOLIDATE_AT:
        merged = {pid: entries for pid, entries in packs.items() if pid in existing}
        for part in _split(merged, INDEX_BATCH):  # objects a reader parses in bounded memory
            write_index_object(backend, part)
        backend.sync()
        for key in read:
            backend.delete(key)
        report.index_objects_merged = len(read)
    # A temporary younger than TEMPORARY_MIN_AGE may be a write in progress, whatever G is.
    report.temporaries_removed = backend.cleanup(min(cutoff, time.time() - TEMPORARY_MIN_AGE))
    backend.sync()
    return report


def _split(packs: PackEntries, entries: int) -> Iterator[PackEntries]:
    """``packs`` in groups of about ``entries`` index entries (whole packs)."""
    part: PackEntries = {}
    count = 0
    for pid, pack_entries in packs.items():
        part[pid] = pack_entries
        count += len(pack_entries)
        if count >= entries:
            yield part
            part, count = {}, 0
    if part:
        yield part


def _repack(
    store: ChunkStore,
    victims: list[str],
    packs: PackEntries,
    live: set[str],
    where: dict[str, set[str]],
    leaving: set[str],
) -> None:
    """Copy the live chunks of ``victims`` that have no copy outside ``leaving`` into new
    packs, indexed and durable (``flush``) before the caller condemns the victims."""
    copied: set[str] = set()
    for pid in victims:
        for digest, loc in packs[pid]:
            if digest not in live or digest in copied or where.get(digest, set()) - leaving:
                continue
            try:
                store.copy_blob(digest, loc)  # verified, then copied as it is
            except (ObjectNotFound, IntegrityError):
                try:  # this copy is damaged or gone: any other the index knows
                    data = store.get_chunk(digest)
                except (ChunkNotFound, IntegrityError):
                    continue  # damaged: scrub reports it; a FULL backup repairs it
                store.put_chunk(data, digest=digest, force=True)
            copied.add(digest)
    store.flush()
