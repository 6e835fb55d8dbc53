"""Running backups and restores: point in time, engine calls, truthful lifecycle.

A backup is requested with its volumes already reserved (``Reason.BACKUP``, held by the
backup), so nothing but an attachment's writer writes to them until the data is read; the job
reads every member through one copy-before-write snapshot taken for all at once (writers of
attached volumes wait only for that instant), so the members are one crash-consistent cut.
A backup's member volume backups become AVAILABLE together with it, in the one transaction
that also ends its reservations, and only after every manifest is durable in the store: a
backup that has said AVAILABLE stays restorable, and a failed one keeps nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime

import sqlalchemy as sa

from ocibv.domain import limits
from ocibv.domain.errors import IncorrectState
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE, FAULTY
from ocibv.domain.reservations import Reason
from ocibv.engine import backup as engine
from ocibv.engine.backup_process import BackupRequest, BackupWorkers, run_backup
from ocibv.engine.chunk_store import DEFAULT_CHUNK_SIZE
from ocibv.engine.chunk_table import Keys, Sizes, digest_keys, union
from ocibv.engine.errors import ObjectNotFound
from ocibv.engine.live_volume import LiveVolume
from ocibv.engine.manifest import BackupType
from ocibv.engine.snapshot import MemberSnapshot, begin_group
from ocibv.engine.volume_files import allocated_bytes, grow_image
from ocibv.jobs.context import JobContext
from ocibv.services.attachments import AttachmentService
from ocibv.services.backup_catalog import BackupCatalog, compartment_record
from ocibv.services.common import transition
from ocibv.services.context import ServiceContext
from ocibv.services.reservations import release, reserve
from ocibv.services.unique_sizes import RefTable
from ocibv.store import identity as ids
from ocibv.store import reservations as reservation_rows
from ocibv.store import resources as repo

log = logging.getLogger("ocibv.backups")


def _iso_from_us(us: int) -> str | None:
    """ISO 8601 UTC (milliseconds, ``Z``) of a µs timestamp; None for 0 (unknown)."""
    if not us:
        return None
    stamp = datetime.fromtimestamp(us / 1_000_000, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TenancySizes:
    """Reference tables of one tenancy: per volume backup, and per owner (a standalone
    backup, or a group backup with all its members)."""

    def __init__(self) -> None:
        self.members = RefTable()
        self.owners = RefTable()
        self.owner_of: dict[str, str] = {}

    def update(
        self, catalog: BackupCatalog, tenancy_id: str, backups: dict[str, repo.Resource]
    ) -> bool:
        """Apply the backups added and removed since the last update; False when that cannot
        be done incrementally (the caller then rebuilds from scratch)."""
        gone = [b for b in self.owner_of if b not in backups]
        gone_owners: dict[str, list[str]] = {}
        for backup_id in gone:
            gone_owners.setdefault(self.owner_of[backup_id], []).append(backup_id)
        for owner, members in gone_owners.items():
            if len(members) != sum(1 for o in self.owner_of.values() if o == owner):
                return False  # part of an owner went: recount
            gone_keys: list[tuple[Keys, Sizes]] = []
            for backup_id in members:
                chunks = catalog.pop_forgotten(backup_id)
                if chunks is None:
                    return False
                keys_sizes = digest_keys(chunks)
                self.members.remove_keys(backup_id, keys_sizes[0])
                gone_keys.append(keys_sizes)
                del self.owner_of[backup_id]
            self.owners.remove_keys(owner, union(gone_keys)[0])
        new_owners: dict[str, list[str]] = {}
        for backup_id, row in backups.items():
            if backup_id not in self.owner_of:
                new_owners.setdefault(row.group_backup_id or backup_id, []).append(backup_id)
        for owner, members in new_owners.items():
            if owner in self.owners:
                return False  # a member joined an owner already counted: recount
            found: list[tuple[Keys, Sizes]] = []
            for backup_id in members:
                if not catalog.has_manifest(tenancy_id, backup_id):
                    continue
                manifest = catalog.manifest(tenancy_id, backup_id)
                keys_sizes = digest_keys(manifest.chunks)
                self.members.add_keys(backup_id, *keys_sizes)
                found.append(keys_sizes)
                self.owner_of[backup_id] = owner
            if found:
                self.owners.add_keys(owner, *union(found))
        return True


class BackupRuns:
    def __init__(
        self, ctx: ServiceContext, catalog: BackupCatalog, attachments: AttachmentService
    ) -> None:
        self.ctx = ctx
        self.catalog = catalog
        self.attachments = attachments
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._sizes: dict[str, TenancySizes] = {}
        self._sizes_lock = threading.Lock()
        # backups run in helper processes (engine/backup_process.py), unless
        # OCIBV_BACKUP_PROCESS=0 or the store lives in this process's memory (tests); a
        # helper leaves a CPU to the NBD clients while they make requests (engine/cpu_share)
        self.workers = (
            BackupWorkers(foreground=attachments.requests_served)
            if ctx.settings.backup_process
            else None
        )

    def close(self) -> None:
        """Stop the backup helper processes."""
        if self.workers is not None:
            self.workers.close()

    # --- requesting -------------------------------------------------------------------------

    def hold_volume(self, conn: sa.Connection, volume: repo.Resource, backup_id: str) -> None:
        """Fix the point in time: from now until the backup has read it, nothing writes —
        but an attached volume's writer, whose writes the backup's snapshot preserves."""
        if volume.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume {volume.id} is {volume.lifecycle_state}; it must be AVAILABLE to be "
                "backed up."
            )
        reserve(
            conn, volume, Reason.BACKUP, backup_id, IncorrectState,
            "try the backup again when it is done",
        )

    def pin_for(self, conn: sa.Connection, volume_ids: Iterable[str]) -> str | None:
        """The process a backup of these volumes must run in: the one serving an attachment
        of any of them (its snapshot lives in that process's memory); None if detached."""
        for reservation in reservation_rows.on(conn, volume_ids):
            if reservation.reason in (Reason.ATTACH, Reason.ATTACH_READ_ONLY):
                return reservation.process_id
        return None

    def base_for(
        self, conn: sa.Connection, volume: repo.Resource, requested: BackupType, created_us: int
    ) -> str | None:
        """The backup an INCREMENTAL builds on: the volume's newest AVAILABLE backup before
        ``created_us``; None for a FULL, after a resize, or without a prior backup."""
        if requested == BackupType.FULL or volume.attrs.get("resized_since_backup"):
            return None
        candidates = [
            b
            for b in repo.children(conn, Kind.VOLUME_BACKUP, volume.id)
            if b.lifecycle_state == AVAILABLE and b.created_us < created_us
        ]
        return max(candidates, key=lambda b: b.created_us).id if candidates else None

    # --- backing up -------------------------------------------------------------------------

    def capture_all(
        self, job: JobContext, members: list[repo.Resource]
    ) -> list[tuple[repo.Resource, int]]:
        """Read every member's volume into the store at one point in time and save each
        manifest durably; each member with its stored bytes. A member whose manifest a
        crashed run left is not read again once that manifest is verified whole (rule W4);
        member states do not change here."""
        manifests: dict[str, int] = {}
        pending = []
        for member in members:
            tenancy = member.tenancy_id
            try:
                found = self.catalog.manifest(tenancy, member.id)
            except ObjectNotFound:
                pending.append(member)
                continue
            if engine.verify_backup(self.catalog.chunk_store(tenancy), found):
                self.catalog.forget(tenancy, member.id)  # incomplete: read it again
                pending.append(member)
            else:
                manifests[member.id] = found.stored_bytes
        if pending:
            self._capture_at_one_instant(job, pending, manifests)
        return [(member, manifests[member.id]) for member in members]

    def _capture_at_one_instant(
        self, job: JobContext, pending: list[repo.Resource], manifests: dict[str, int]
    ) -> None:
        """Each volume is read through a copy-before-write snapshot taken for all of them at
        once (writers of attached volumes wait only for that instant), and an INCREMENTAL reads
        only what the volume's changed-block record says changed, when the record can vouch
        for it; otherwise it compares content."""
        lives: list[LiveVolume] = []
        opened: list[LiveVolume] = []
        try:
            for member in pending:
                live = self.attachments.live_volume(member.volume_id)
                if live is None:  # detached: opened for the job (its changed-block record)
                    live = LiveVolume(self.ctx.settings.volume_path(member.volume_id))
                    opened.append(live)
                lives.append(live)
            snapshot = begin_group(lives)
            committed: dict[int, str] = {}
            try:
                changed = [
                    _changed_ranges(member, view)
                    for member, view in zip(pending, snapshot.members, strict=True)
                ]
                progress = _GroupProgress(job, self.bytes_to_read(pending, changed))

                def capture(position: int) -> None:
                    member = pending[position]
                    view = snapshot.members[position]
                    manifests[member.id] = self._read_member(
                        job, member, view, changed[position], progress
                    )
                    committed[position] = member.id
                    job.step("captured_member")

                # Members that read only their changed blocks go side by side; the others
                # one after another, so each deduplicates against what those before it
                # stored (volumes cloned from one image share most of their chunks).
                at_once = MEMBERS_AT_ONCE if None not in changed else 1
                _run_all(capture, range(len(pending)), at_once)
            finally:
                snapshot.end(committed_backup_ids=committed)
        finally:
            for live in opened:
                live.close()

    def _read_member(
        self, job: JobContext, member: repo.Resource, view: MemberSnapshot,
        ranges: list[tuple[int, int]] | None, group_progress: _GroupProgress,
    ) -> int:
        """Back up one member through its snapshot view, reading only ``ranges`` (what
        changed since its base) when given; returns its stored bytes."""
        tenancy = member.tenancy_id
        base_id = member.attrs.get("base_backup_id")
        if base_id and ranges is None:
            job.note(
                f"volume {member.volume_id}: its changed-block record cannot vouch for what "
                "changed since the last backup (first tracked backup, a crash, or writes "
                "behind its back): comparing content instead"
            )

        def progress(read: int, volume_total: int) -> None:
            group_progress.report(member.id, read, volume_total)

        store = self.catalog.chunk_store(tenancy)
        request = BackupRequest(
            store_url=store.backend.url,
            image_path=self.ctx.settings.volume_path(member.volume_id),
            backup_id=member.id,
            volume_id=member.volume_id,
            chunk_size=self.chunk_size,
            previous_id=base_id,
            backup_type=member.requested_type,
            changed_ranges=ranges,
            workers=self.ctx.settings.workers,
            group_backup_id=member.group_backup_id,
            created_at=_iso_from_us(member.created_us),  # the point in time, not "now"
            size=view.size,
        )
        if self.workers is not None and not store.backend.url.startswith("memory:"):
            # the helper reads the base manifest itself (and keeps the ones it wrote)
            result = self.workers.backup(request, view.view, progress)
            store.refresh()  # the packs and index objects the helper wrote
            self.catalog.remember(result.manifest)  # for the unique sizes: not read back
            stored = result.stored_bytes
        else:
            previous = self.catalog.manifest(tenancy, base_id) if base_id else None
            manifest = run_backup(store, request, previous, view.view, progress)
            self.catalog.remember(manifest)  # durable now; the next backup builds on it
            stored = manifest.stored_bytes
        group_progress.record()  # what was read, exactly (reports are otherwise throttled)
        return stored

    def settle(
        self, conn: sa.Connection, members: Iterable[tuple[repo.Resource, int]]
    ) -> None:
        """Make captured member backups AVAILABLE (in the caller's transaction, with the
        owner's own state change and the release of its reservations)."""
        for member, stored_bytes in members:
            fresh = repo.get(conn, member.id, Kind.VOLUME_BACKUP)
            if fresh is None:
                continue
            transition(
                conn, fresh, AVAILABLE, attrs=dict(fresh.attrs, stored_bytes=stored_bytes)
            )
            volume = repo.get(conn, fresh.volume_id, Kind.VOLUME)
            if volume is not None and volume.attrs.get("resized_since_backup"):
                repo.update(conn, volume, attrs=dict(volume.attrs, resized_since_backup=False))

    def bytes_to_read(
        self, members: list[repo.Resource], changed: list[list[tuple[int, int]] | None]
    ) -> int:
        """What backing up these members reads at most, for progress: what changed, when
        that is known; else the volume's data extents (a walk of them: as long as the
        volume, so only where the backup reads it all anyway)."""
        total = 0
        for member, ranges in zip(members, changed, strict=True):
            if ranges is not None:
                total += sum(length for _, length in ranges)
                continue
            path = self.ctx.settings.volume_path(member.volume_id)
            if path.exists():
                total += allocated_bytes(path)
        return total

    def after_backup(self, rows: Iterable[repo.Resource], tenancy_id: str) -> None:
        """Once a backup is AVAILABLE: its catalog entries, the identity and unique sizes."""
        for row in rows:
            self.save_entry(row)
        self.save_identity(tenancy_id)
        self.refresh_unique_sizes(tenancy_id)

    def save_entry(self, res: repo.Resource) -> None:
        """Keep the store's copy of an AVAILABLE backup's row current (for ``recover``)."""
        if res.lifecycle_state == AVAILABLE:
            self.catalog.save_entry(res.tenancy_id, res)

    def fail(self, backup_ids: Iterable[str], owner_id: str) -> None:
        """The job of ``owner_id`` failed: unless the owner already reached AVAILABLE (its data
        is whole), every listed backup goes FAULTY and loses its manifest; the owner's
        reservations end in the same transaction either way."""
        failed: list[repo.Resource] = []
        with self.ctx.db.write() as conn:
            rows = repo.get_many(conn, backup_ids)
            owner = rows.get(owner_id)
            if owner is not None and owner.lifecycle_state != AVAILABLE:
                failed = [res for res in rows.values() if transition(conn, res, FAULTY)]
            release(conn, owner_id)
        for res in failed:
            if res.kind == Kind.VOLUME_BACKUP:
                try:
                    self.catalog.forget(res.tenancy_id, res.id)
                except Exception:  # the store may be what failed; GC cleans up later
                    log.exception("could not remove manifest of %s", res.id)

    def save_identity(self, tenancy_id: str) -> None:
        """Keep the tenancy, its keys and compartments in the store, for ``recover``."""
        with self.ctx.db.read() as conn:
            tenancy = ids.get_tenancy(conn, tenancy_id)
            keys = ids.keys_of_tenancy(conn, tenancy_id)
            compartments = repo.of_kind(conn, tenancy_id, Kind.COMPARTMENT)
        if tenancy is None:
            return
        self.catalog.save_identity(
            tenancy_id,
            {
                "tenancy": {
                    "id": tenancy.id,
                    "name": tenancy.name,
                    "description": tenancy.description,
                },
                "users": keys,
                "compartments": [compartment_record(c) for c in compartments],
            },
        )

    # --- sizes ------------------------------------------------------------------------------

    def refresh_unique_sizes(self, tenancy_id: str) -> None:
        """Bring every AVAILABLE backup's unique size up to date after the set of backups
        changed. Incremental: reads the manifests of backups added since the last call (and
        uses the digests the catalog kept of backups deleted since), so the cost does not
        grow with the tenancy's history; the first call in a process reads every manifest."""
        with self.ctx.db.read() as conn:
            backups = {
                b.id: b
                for b in repo.of_kind(conn, tenancy_id, Kind.VOLUME_BACKUP)
                if b.lifecycle_state == AVAILABLE
            }
            groups = {
                g.id: g
                for g in repo.of_kind(conn, tenancy_id, Kind.VOLUME_GROUP_BACKUP)
                if g.lifecycle_state == AVAILABLE
            }
        with self._sizes_lock:
            sizes = self._sizes.get(tenancy_id)
            if sizes is None or not sizes.update(self.catalog, tenancy_id, backups):
                sizes = TenancySizes()
                sizes.update(self.catalog, tenancy_id, backups)
                self._sizes[tenancy_id] = sizes
            per_member = sizes.members.take_dirty()
            per_owner = sizes.owners.take_dirty()
        with self.ctx.db.write() as conn:
            for backup_id, value in per_member.items():
                if backup_id in backups:
                    self._set_unique(conn, backups[backup_id], value)
            for owner_id, value in per_owner.items():
                if owner_id in groups:
                    self._set_unique(conn, groups[owner_id], value)

    @staticmethod
    def _set_unique(conn: sa.Connection, res: repo.Resource, value: int) -> None:
        if res.attrs.get("unique_bytes") != value:
            fresh = repo.get(conn, res.id)
            if fresh is not None:
                repo.update(conn, fresh, attrs=dict(fresh.attrs, unique_bytes=value))

    # --- restoring --------------------------------------------------------------------------

    def restore_image(self, job: JobContext, volume_id: str, backup_id: str) -> None:
        with self.ctx.db.read() as conn:
            backup = repo.get(conn, backup_id, Kind.VOLUME_BACKUP)
            volume = repo.get(conn, volume_id, Kind.VOLUME)
        if backup is None or volume is None:
            raise RuntimeError(f"restore of {volume_id} from {backup_id}: a row is missing")
        manifest = self.catalog.manifest(backup.tenancy_id, backup_id)
        target = self.ctx.settings.volume_path(volume_id)
        engine.restore_volume(
            self.catalog.chunk_store(backup.tenancy_id),
            manifest,
            target,
            progress=job.progress,
            workers=self.ctx.settings.workers,
        )
        size = volume.size_in_gbs * limits.GIB
        if size > manifest.volume_size:
            grow_image(target, size)


def _changed_ranges(member: repo.Resource, view: MemberSnapshot) -> list[tuple[int, int]] | None:
    """What changed in the member's volume since its base backup, when its changed-block
    record can vouch for it; None for a FULL or a content comparison."""
    base_id = member.attrs.get("base_backup_id")
    return view.capture.ranges_since(base_id) if view.capture and base_id else None


MEMBERS_AT_ONCE = 2
"""Members of a group backup read at once: each backup has single-threaded stretches (its
plan, manifest and verification) that another member's chunk work fills; more would only
share the same cores."""


def _run_all(fn: Callable[[int], None], items: Iterable[int], at_once: int) -> None:
    """``fn`` of every item, ``at_once`` at a time; every started call finishes before the
    first exception (in item order) is raised."""
    positions = list(items)
    if len(positions) <= 1 or at_once <= 1:
        for position in positions:
            fn(position)
        return
    with ThreadPoolExecutor(min(at_once, len(positions)), "ocibv-member") as pool:
        futures = [pool.submit(fn, position) for position in positions]
        wait(futures)
    for future in futures:
        future.result()


class _GroupProgress:
    """A job's progress over the members read at once: the sum of what each has read."""

    def __init__(self, job: JobContext, total: int) -> None:
        self.job, self.total = job, total
        self._read: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def report(self, member_id: str, read: int, member_total: int) -> None:
        with self._lock:
            self._read[member_id] = (read, member_total)
        self._send(force=False)

    def record(self) -> None:
        self._send(force=True)

    def _send(self, *, force: bool) -> None:
        with self._lock:
            done = sum(read for read, _ in self._read.values())
            most = sum(member_total for _, member_total in self._read.values())
        self.job.progress(done, max(self.total, most), force=force)
