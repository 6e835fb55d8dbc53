"""Running backups and restores: point in time, engine calls, truthful lifecycle.

A backup is requested with its volumes already marked busy (``"backup <backup ocid>"``), so
nothing writes to them from that instant — the backup's point in time — until the data is
read. Member volume backups become AVAILABLE only after their manifest is durable in the store;
on any failure every member and the group end FAULTY and their manifests are removed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ocibv.domain import limits
from ocibv.domain.lifecycle import AVAILABLE, FAULTY
from ocibv.domain.retention import Retention
from ocibv.engine import backup as engine
from ocibv.engine.chunk_store import DEFAULT_CHUNK_SIZE
from ocibv.engine.manifest import Manifest
from ocibv.engine.volume_files import allocated_bytes
from ocibv.jobs.runner import JobContext
from ocibv.services.backup_catalog import BackupCatalog, unique_bytes
from ocibv.services.common import transition
from ocibv.services.context import ServiceContext
from ocibv.store import identity as ids
from ocibv.store import resources as repo

log = logging.getLogger("ocibv.backups")

RETENTION_FIELDS = (
    "retention_period",
    "is_prevent_deletion_enabled",
    "is_retention_lock_enabled",
    "is_indefinite_retention_enabled",
)


def busy_mark(backup_id: str) -> str:
    return f"backup {backup_id}"


def point_in_time(res: repo.Resource) -> datetime:
    return datetime.fromtimestamp(res.created_us / 1e6, tz=UTC)


def retention_expiry(ctx: ServiceContext, res: repo.Resource) -> datetime | None:
    day = float(ctx.settings.retention_day_seconds)
    return Retention.from_attrs(res.attrs).expires_at(point_in_time(res), day)


class BackupRuns:
    def __init__(self, ctx: ServiceContext, catalog: BackupCatalog) -> None:
        self.ctx = ctx
        self.catalog = catalog
        self.chunk_size = DEFAULT_CHUNK_SIZE

    # --- backing up -------------------------------------------------------------------------

    def previous_backup(self, conn: Any, volume: repo.Resource, before_us: int) -> str | None:
        """The volume's newest AVAILABLE backup older than ``before_us`` (the increment base)."""
        candidates = [
            b
            for b in repo.children(conn, "volumebackup", volume.id)
            if b.lifecycle_state == AVAILABLE and b.created_us < before_us
        ]
        return max(candidates, key=lambda b: b.created_us).id if candidates else None

    def back_up_member(
        self, job: JobContext, member: repo.Resource, done_before: int, total: int
    ) -> int:
        """Read one volume into the store; the member becomes AVAILABLE. Returns the bytes
        this volume counted for progress (``total`` spans every volume of the job)."""
        tenancy = member.tenancy_id
        volume_id = member.attrs["volume_id"]
        base_id = member.attrs.get("base_backup_id")
        previous = self.catalog.manifest(tenancy, base_id) if base_id else None
        seen = [0]

        def progress(done: int, volume_total: int) -> None:
            seen[0] = volume_total
            job.progress(done_before + done, max(total, done_before + volume_total))

        manifest = engine.backup_volume(
            self.catalog.chunk_store(tenancy),
            self.ctx.settings.volume_path(volume_id),
            backup_id=member.id,
            volume_id=volume_id,
            chunk_size=previous.chunk_size if previous else self.chunk_size,
            previous=previous,
            full=member.attrs["requested_type"] == "FULL",
            progress=progress,
            workers=self.ctx.settings.workers,
        )
        with self.ctx.db.write() as conn:
            fresh = repo.get(conn, member.id, "volumebackup")
            assert fresh is not None
            attrs = dict(fresh.attrs, stored_bytes=manifest.stored_bytes)
            transition(conn, fresh, AVAILABLE, attrs=attrs)
            volume = repo.get(conn, volume_id, "volume")
            if volume is not None and volume.attrs.get("resized_since_backup"):
                repo.update(conn, volume, attrs=dict(volume.attrs, resized_since_backup=False))
        self.save_entry(fresh)
        return seen[0] or manifest.data_bytes

    def bytes_to_read(self, volume_ids: Iterable[str]) -> int:
        """What backing up these volumes reads at most (their data extents), for progress."""
        paths = [self.ctx.settings.volume_path(v) for v in volume_ids]
        return sum(allocated_bytes(p) for p in paths if p.exists())

    def save_entry(self, res: repo.Resource) -> None:
        """Keep the store's copy of an AVAILABLE backup's row current (for ``recover``)."""
        if res.lifecycle_state == AVAILABLE:
            self.catalog.save_entry(res.tenancy_id, res)

    def release_volumes(self, backup_id: str, volume_ids: Iterable[str]) -> None:
        with self.ctx.db.write() as conn:
            for vol in repo.get_many(conn, volume_ids).values():
                if vol.busy == busy_mark(backup_id):
                    repo.update(conn, vol, busy=None)

    def fail(self, backup_ids: Iterable[str], volume_ids: Iterable[str], owner_id: str) -> None:
        """The job of ``owner_id`` failed: unless the owner already reached AVAILABLE (its data
        is whole), every listed backup goes FAULTY and loses its manifest; the volumes are
        released either way."""
        failed: list[repo.Resource] = []
        with self.ctx.db.write() as conn:
            rows = repo.get_many(conn, backup_ids)
            owner = rows.get(owner_id)
            if owner is not None and owner.lifecycle_state != AVAILABLE:
                failed = [res for res in rows.values() if transition(conn, res, FAULTY)]
        for res in failed:
            if res.kind == "volumebackup":
                try:
                    self.catalog.forget(res.tenancy_id, res.id)
                except Exception:  # the store may be what failed; GC cleans up later
                    log.exception("could not remove manifest of %s", res.id)
        self.release_volumes(owner_id, volume_ids)

    def save_identity(self, tenancy_id: str) -> None:
        """Keep the tenancy, its keys and compartments in the store, for ``recover``."""
        with self.ctx.db.read() as conn:
            tenancy = ids.get_tenancy(conn, tenancy_id)
            keys = ids.keys_of_tenancy(conn, tenancy_id)
            compartments = repo.of_kind(conn, tenancy_id, "compartment")
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
                "compartments": [
                    {k: v for k, v in c.__dict__.items() if k not in ("busy",)}
                    for c in compartments
                ],
            },
        )

    # --- sizes ------------------------------------------------------------------------------

    def refresh_unique_sizes(self, tenancy_id: str) -> None:
        """Recompute every AVAILABLE backup's unique size after the set of backups changed."""
        with self.ctx.db.read() as conn:
            backups = [
                b
                for b in repo.of_kind(conn, tenancy_id, "volumebackup")
                if b.lifecycle_state == AVAILABLE
            ]
            groups = [
                g
                for g in repo.of_kind(conn, tenancy_id, "volumegroupbackup")
                if g.lifecycle_state == AVAILABLE
            ]
        loaded = {}
        for b in backups:
            if self.catalog.has_manifest(tenancy_id, b.id):
                loaded[b.id] = self.catalog.manifest(tenancy_id, b.id)
        per_member = unique_bytes({bid: [m] for bid, m in loaded.items()})
        owners: dict[str, list[Manifest]] = {}
        for b in backups:
            if b.id in loaded:
                owner = b.attrs.get("volume_group_backup_id") or b.id
                owners.setdefault(owner, []).append(loaded[b.id])
        per_owner = unique_bytes(owners)
        with self.ctx.db.write() as conn:
            for res in backups:
                self._set_unique(conn, res, per_member.get(res.id, 0))
            for res in groups:
                self._set_unique(conn, res, per_owner.get(res.id, 0))

    @staticmethod
    def _set_unique(conn: Any, res: repo.Resource, value: int) -> None:
        if res.attrs.get("unique_bytes") != value:
            fresh = repo.get(conn, res.id)
            if fresh is not None:
                repo.update(conn, fresh, attrs=dict(fresh.attrs, unique_bytes=value))

    # --- restoring --------------------------------------------------------------------------

    def restore_image(self, job: JobContext, volume_id: str, backup_id: str) -> None:
        with self.ctx.db.read() as conn:
            backup = repo.get(conn, backup_id, "volumebackup")
            volume = repo.get(conn, volume_id, "volume")
        assert backup is not None and volume is not None
        manifest = self.catalog.manifest(backup.tenancy_id, backup_id)
        target = self.ctx.settings.volume_path(volume_id)

        def progress(done: int, total: int) -> None:
            job.progress(done, total)

        engine.restore_volume(
            self.catalog.chunk_store(backup.tenancy_id),
            manifest,
            target,
            progress=progress,
            workers=self.ctx.settings.workers,
        )
        size = int(volume.attrs["size_in_gbs"]) * limits.GIB
        if size > manifest.volume_size:
            from ocibv.engine.volume_files import grow_image

            grow_image(target, size)
