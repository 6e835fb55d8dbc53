"""Volume backups: create (one volume at one instant), get, list, update, delete, change
compartment, and the restore source of CreateVolume (``sourceDetails.type = volumeBackup``)."""

from __future__ import annotations

import sqlalchemy as sa

from ocibv.domain.errors import Conflict, IncorrectState
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import (
    AVAILABLE,
    CREATING,
    REQUEST_RECEIVED,
    TERMINATING,
)
from ocibv.domain.reservations import Reason
from ocibv.engine.manifest import BackupType
from ocibv.jobs.context import JobContext
from ocibv.jobs.registry import JobRegistry
from ocibv.services.backup_rules import (
    check_deletable,
    new_volume_backup,
    retention_attrs,
    tags_of,
    updated_attrs,
)
from ocibv.services.backup_runs import BackupRuns
from ocibv.services.common import (
    PageTokens,
    create_once,
    finish_deletion,
    get_for_delete,
    get_for_update,
    get_one,
    get_related,
    move_compartment,
    transition,
)
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.listing import ListRequest, list_in_compartment
from ocibv.services.requests import CreateVolumeBackupDetails, UpdateBackupDetails
from ocibv.services.reservations import release, reserve
from ocibv.store import jobs as job_rows
from ocibv.store import resources as repo
from ocibv.store.jobs import Job


class VolumeBackupService:
    def __init__(self, ctx: ServiceContext, tokens: PageTokens, runs: BackupRuns) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.runs = runs

    def register_jobs(self, jobs: JobRegistry) -> None:
        jobs.register(
            "create_volume_backup", self.run_create_volume_backup, self.fail_create_volume_backup
        )
        jobs.register("delete_volume_backup", self.run_delete_volume_backup)

    def create_volume_backup(
        self, caller: Caller, details: CreateVolumeBackupDetails, retry_token: str | None
    ) -> repo.Resource:
        return create_once(
            self.ctx, caller, "create_volume_backup", retry_token, details, self._create
        )

    def _create(
        self, conn: sa.Connection, caller: Caller, details: CreateVolumeBackupDetails
    ) -> repo.Resource:
        volume = get_related(conn, caller, Kind.VOLUME, details["volume_id"], "volumeId")
        created_us = self.ctx.clock.now_us()
        requested = BackupType(details.get("type") or BackupType.INCREMENTAL)
        backup = new_volume_backup(
            self.ctx,
            volume,
            display_name=details.get("display_name"),
            requested_type=requested,
            base_backup_id=self.runs.base_for(conn, volume, requested, created_us),
            created_us=created_us,
            state=REQUEST_RECEIVED,
            retention_values=retention_attrs(details),
            tags=tags_of(details),
        )
        return self._insert(conn, volume, backup)

    def _insert(
        self, conn: sa.Connection, volume: repo.Resource, backup: repo.Resource
    ) -> repo.Resource:
        self.runs.hold_volume(conn, volume, backup.id)
        repo.insert(conn, backup)
        pinned = self.runs.pin_for(conn, [volume.id])
        job_rows.enqueue(conn, "create_volume_backup", backup.id, pinned_to=pinned)
        return backup

    def create_scheduled_volume_backup(
        self,
        conn: sa.Connection,
        volume: repo.Resource,
        *,
        requested: BackupType,
        display_name: str,
        created_us: int,
        retention_values: dict[str, object],
        scheduled: repo.Attrs,
    ) -> repo.Resource:
        """A backup a policy's schedule takes (``sourceType`` SCHEDULED; ``scheduled`` holds
        its expiration), by the same rules and job as a manual one; in the caller's
        transaction. 409 IncorrectState when the volume cannot be backed up now."""
        backup = new_volume_backup(
            self.ctx,
            volume,
            display_name=display_name,
            requested_type=requested,
            base_backup_id=self.runs.base_for(conn, volume, requested, created_us),
            created_us=created_us,
            state=REQUEST_RECEIVED,
            retention_values=retention_values,
        )
        backup.attrs.update(scheduled)
        return self._insert(conn, volume, backup)

    def get_volume_backup(self, caller: Caller, backup_id: str) -> repo.Resource:
        return get_one(self.ctx, caller, Kind.VOLUME_BACKUP, backup_id)

    def list_volume_backups(
        self, caller: Caller, request: ListRequest
    ) -> tuple[list[repo.Resource], str | None]:
        return list_in_compartment(self.ctx, self.tokens, caller, Kind.VOLUME_BACKUP, request)

    def update_volume_backup(
        self, caller: Caller, backup_id: str, details: UpdateBackupDetails, if_match: str | None
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            res = get_for_update(conn, caller, Kind.VOLUME_BACKUP, backup_id, if_match)
            attrs = updated_attrs(self.ctx, res, details, f"Volume backup {backup_id}")
            repo.update(
                conn, res, display_name=details.get("display_name") or res.display_name, attrs=attrs
            )
        self.runs.save_entry(res)
        return res

    def delete_volume_backup(self, caller: Caller, backup_id: str, if_match: str | None) -> None:
        with self.ctx.db.write() as conn:
            res = get_for_delete(conn, caller, Kind.VOLUME_BACKUP, backup_id, if_match)
            if res is None:
                return
            if res.group_backup_id:
                raise Conflict(
                    f"Volume backup {backup_id} is part of volume group backup "
                    f"{res.group_backup_id}; delete the volume group backup instead."
                )
            check_deletable(self.ctx, conn, res, f"Volume backup {backup_id}")
            transition(conn, res, TERMINATING)
            job_rows.enqueue(conn, "delete_volume_backup", res.id)
        self.ctx.wake_jobs()

    def change_volume_backup_compartment(
        self, caller: Caller, backup_id: str, compartment_id: str
    ) -> repo.Resource:
        res = move_compartment(self.ctx, caller, Kind.VOLUME_BACKUP, backup_id, compartment_id)
        self.runs.save_entry(res)
        return res

    # --- restore source for CreateVolume (``services.seams.BackupRestorer``) ----------------

    def restore_source(
        self, conn: sa.Connection, caller: Caller, backup_id: str, field: str
    ) -> repo.Resource:
        """The AVAILABLE backup a new volume is restored from (else 400/409)."""
        backup = get_related(conn, caller, Kind.VOLUME_BACKUP, backup_id, field)
        if backup.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume backup {backup_id} is {backup.lifecycle_state}; restore it once it is "
                "AVAILABLE."
            )
        return backup

    def hold_for_restore(self, conn: sa.Connection, backup: repo.Resource, volume_id: str) -> None:
        """Keep ``backup`` from being deleted until ``volume_id`` is restored from it."""
        reserve(conn, backup, Reason.RESTORE_SOURCE, volume_id, IncorrectState, "try later")

    def restore_image(self, job: JobContext, volume_id: str, backup_id: str) -> None:
        self.runs.restore_image(job, volume_id, backup_id)

    # --- jobs -------------------------------------------------------------------------------

    def run_create_volume_backup(self, job: JobContext) -> None:
        backup_id = job.job.resource_id
        with self.ctx.db.write() as conn:
            res = repo.get(conn, backup_id, Kind.VOLUME_BACKUP)
            if res is None or res.lifecycle_state not in (REQUEST_RECEIVED, CREATING, AVAILABLE):
                return
            if res.lifecycle_state == REQUEST_RECEIVED:
                transition(conn, res, CREATING)
        if res.lifecycle_state == AVAILABLE:  # a crash after the commit: finish the rest
            self.runs.after_backup([res], res.tenancy_id)
            return
        job.step("creating")
        captured = self.runs.capture_all(job, [res])
        job.step("captured")
        with self.ctx.db.write() as conn:
            self.runs.settle(conn, captured)
            release(conn, backup_id)
            fresh = repo.get(conn, backup_id, Kind.VOLUME_BACKUP)
        job.step("available")
        if fresh is not None:
            self.runs.after_backup([fresh], fresh.tenancy_id)

    def fail_create_volume_backup(self, job: Job, _exc: BaseException) -> None:
        self.runs.fail([job.resource_id], job.resource_id)

    def run_delete_volume_backup(self, job: JobContext) -> None:
        with self.ctx.db.read() as conn:
            res = repo.get(conn, job.job.resource_id, Kind.VOLUME_BACKUP)
        if res is None:
            return
        self.runs.catalog.forget(res.tenancy_id, res.id)
        with self.ctx.db.write() as conn:
            finish_deletion(self.ctx, conn, res)
        self.runs.refresh_unique_sizes(res.tenancy_id)
