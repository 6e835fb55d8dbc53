"""Volume backups: create (one volume at one instant), get, list, update, delete, change
compartment, and the restore source of CreateVolume (``sourceDetails.type = volumeBackup``)."""

from __future__ import annotations

from typing import Any

from ocibv.domain.errors import Conflict, IncorrectState, InvalidParameter
from ocibv.domain.lifecycle import (
    AVAILABLE,
    CREATING,
    REQUEST_RECEIVED,
    TERMINATED,
    TERMINATING,
)
from ocibv.jobs.runner import JobContext
from ocibv.services.backup_rules import (
    check_deletable,
    new_volume_backup,
    retention_attrs,
    updated_attrs,
)
from ocibv.services.backup_runs import BackupRuns, busy_mark
from ocibv.services.common import (
    PageTokens,
    create_once,
    get_for_delete,
    get_for_update,
    get_one,
    get_related,
    move_compartment,
    tombstone_until,
    transition,
)
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.listing import ListRequest, list_in_compartment
from ocibv.store import jobs as job_rows
from ocibv.store import resources as repo
from ocibv.store.database import now_us


def lock_volume_for_backup(conn: Any, volume: repo.Resource, backup_id: str) -> None:
    """Fix the point in time: from now until the backup has read it, nothing writes."""
    if volume.lifecycle_state != AVAILABLE:
        raise IncorrectState(
            f"Volume {volume.id} is {volume.lifecycle_state}; it must be AVAILABLE to be backed up."
        )
    if volume.busy or not repo.update(
        conn, volume, expected_etag=volume.etag, busy=busy_mark(backup_id)
    ):
        raise IncorrectState(
            f"Volume {volume.id} is busy ({volume.busy}); try the backup again when it is done."
        )


def base_for(runs: BackupRuns, conn: Any, volume: repo.Resource, created_us: int) -> str | None:
    """The backup an increment builds on; None after a resize or without a prior backup."""
    if volume.attrs.get("resized_since_backup"):
        return None
    return runs.previous_backup(conn, volume, created_us)


class VolumeBackupService:
    def __init__(self, ctx: ServiceContext, tokens: PageTokens, runs: BackupRuns) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.runs = runs

    def create_volume_backup(
        self, caller: Caller, details: dict[str, Any], retry_token: str | None
    ) -> repo.Resource:
        return create_once(
            self.ctx,
            caller,
            "create_volume_backup",
            retry_token,
            details,
            lambda conn: self._create(conn, caller, details),
        )

    def _create(self, conn: Any, caller: Caller, details: dict[str, Any]) -> repo.Resource:
        volume = get_related(conn, caller, "volume", details["volume_id"], "volumeId")
        created_us = now_us()
        requested = details.get("type") or "INCREMENTAL"
        backup = new_volume_backup(
            self.ctx,
            volume,
            display_name=details.get("display_name"),
            requested_type=requested,
            base_backup_id=None
            if requested == "FULL"
            else base_for(self.runs, conn, volume, created_us),
            created_us=created_us,
            state=REQUEST_RECEIVED,
            retention_values=retention_attrs(details),
            tags={k: details.get(k) for k in ("freeform_tags", "defined_tags")},
        )
        lock_volume_for_backup(conn, volume, backup.id)
        repo.insert(conn, backup)
        job_rows.enqueue(conn, "create_volume_backup", backup.id, {})
        return backup

    def get_volume_backup(self, caller: Caller, backup_id: str) -> repo.Resource:
        return get_one(self.ctx, caller, "volumebackup", backup_id)

    def list_volume_backups(
        self, caller: Caller, request: ListRequest
    ) -> tuple[list[repo.Resource], str | None]:
        return list_in_compartment(self.ctx, self.tokens, caller, "volumebackup", request)

    def update_volume_backup(
        self, caller: Caller, backup_id: str, details: dict[str, Any], if_match: str | None
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            res = get_for_update(conn, caller, "volumebackup", backup_id, if_match)
            attrs = updated_attrs(self.ctx, res, details, f"Volume backup {backup_id}")
            repo.update(
                conn, res, display_name=details.get("display_name") or res.display_name, attrs=attrs
            )
        self.runs.save_entry(res)
        return res

    def delete_volume_backup(self, caller: Caller, backup_id: str, if_match: str | None) -> None:
        with self.ctx.db.write() as conn:
            res = get_for_delete(conn, caller, "volumebackup", backup_id, if_match)
            if res is None:
                return
            group_backup = res.attrs.get("volume_group_backup_id")
            if group_backup:
                raise Conflict(
                    f"Volume backup {backup_id} is part of volume group backup {group_backup}; "
                    "delete the volume group backup instead."
                )
            check_deletable(self.ctx, conn, res, f"Volume backup {backup_id}")
            transition(conn, res, TERMINATING)
            job_rows.enqueue(conn, "delete_volume_backup", res.id, {})
        self.ctx.wake_jobs()

    def change_volume_backup_compartment(
        self, caller: Caller, backup_id: str, compartment_id: str
    ) -> repo.Resource:
        res = move_compartment(self.ctx, caller, "volumebackup", backup_id, compartment_id)
        self.runs.save_entry(res)
        return res

    # --- restore source for CreateVolume ----------------------------------------------------

    def restore_source(self, conn: Any, caller: Caller, backup_id: str, field: str) -> int:
        """Check a backup can seed a new volume; returns the backup's size in GB."""
        backup = get_related(conn, caller, "volumebackup", backup_id, field)
        if backup.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume backup {backup_id} is {backup.lifecycle_state}; restore it once it is "
                "AVAILABLE."
            )
        return int(backup.attrs["size_in_gbs"])

    # --- jobs -------------------------------------------------------------------------------

    def run_create_volume_backup(self, job: JobContext) -> None:
        backup_id = job.job.resource_id
        with self.ctx.db.write() as conn:
            res = repo.get(conn, backup_id, "volumebackup")
            if res is None or res.lifecycle_state not in (REQUEST_RECEIVED, CREATING):
                return
            if res.lifecycle_state == REQUEST_RECEIVED:
                transition(conn, res, CREATING)
        total = self.runs.bytes_to_read([res.attrs["volume_id"]])
        self.runs.back_up_member(job, res, 0, total)
        self.runs.release_volumes(backup_id, [res.attrs["volume_id"]])
        self.runs.save_identity(res.tenancy_id)
        self.runs.refresh_unique_sizes(res.tenancy_id)

    def fail_create_volume_backup(self, backup_id: str) -> None:
        with self.ctx.db.read() as conn:
            res = repo.get(conn, backup_id, "volumebackup")
        if res is not None:
            self.runs.fail([backup_id], [res.attrs["volume_id"]], backup_id)

    def run_delete_volume_backup(self, job: JobContext) -> None:
        with self.ctx.db.read() as conn:
            res = repo.get(conn, job.job.resource_id, "volumebackup")
        if res is None:
            return
        self.runs.catalog.forget(res.tenancy_id, res.id)
        with self.ctx.db.write() as conn:
            transition(
                conn,
                res,
                TERMINATED,
                purge_after_us=tombstone_until(self.ctx.settings.tombstone_seconds),
            )
        self.runs.refresh_unique_sizes(res.tenancy_id)


def check_restore_size(size_in_gbs: int | None, backup_gbs: int) -> int:
    if size_in_gbs is not None and size_in_gbs < backup_gbs:
        raise InvalidParameter(
            f"sizeInGBs: {size_in_gbs} is smaller than the backed-up volume ({backup_gbs} GB)."
        )
    return size_in_gbs or backup_gbs
