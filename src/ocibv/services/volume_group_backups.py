"""Volume group backups: every member volume captured at one instant (crash-consistent),
one member VolumeBackup per volume; delete takes the members along; restore as a new group.

Lifecycle: REQUEST_RECEIVED (request stored, volumes held) → CREATING → COMMITTED (point in
time fixed, member backups exist, ``volumeBackupIds`` final) → AVAILABLE (every member's data
and manifest durable; the members become AVAILABLE in the same transaction). FAULTY on
failure, members included; TERMINATING → TERMINATED on delete.
"""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa

from ocibv.domain.errors import IncorrectState, InvalidParameter
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import (
    AVAILABLE,
    COMMITTED,
    CREATING,
    REQUEST_RECEIVED,
    RESTORING,
    TERMINATED,
    TERMINATING,
)
from ocibv.domain.ocid import new_ocid
from ocibv.domain.reservations import Reason
from ocibv.domain.retention import RETENTION_FIELDS
from ocibv.engine.manifest import BackupType
from ocibv.jobs.context import JobContext
from ocibv.jobs.registry import JobRegistry
from ocibv.services.backup_rules import (
    SCHEDULE_ATTRS,
    TAGS,
    check_deletable,
    new_volume_backup,
    retention_attrs,
    tags_of,
    updated_attrs,
    with_expiry,
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
    require_compartment,
    transition,
)
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.listing import ListRequest, list_in_compartment
from ocibv.services.requests import (
    CreateVolumeGroupBackupDetails,
    UpdateBackupDetails,
    VolumeGroupSource,
)
from ocibv.services.reservations import release, reserve
from ocibv.services.volumes import new_volume
from ocibv.store import jobs as job_rows
from ocibv.store import resources as repo
from ocibv.store.jobs import Job


class VolumeGroupBackupService:
    def __init__(self, ctx: ServiceContext, tokens: PageTokens, runs: BackupRuns) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.runs = runs

    def register_jobs(self, jobs: JobRegistry) -> None:
        jobs.register(
            "create_volume_group_backup",
            self.run_create_volume_group_backup,
            self.fail_create_volume_group_backup,
        )
        jobs.register("delete_volume_group_backup", self.run_delete_volume_group_backup)

    def create_volume_group_backup(
        self, caller: Caller, details: CreateVolumeGroupBackupDetails, retry_token: str | None
    ) -> repo.Resource:
        return create_once(
            self.ctx, caller, "create_volume_group_backup", retry_token, details, self._create
        )

    def _create(
        self, conn: sa.Connection, caller: Caller, details: CreateVolumeGroupBackupDetails
    ) -> repo.Resource:
        group = get_related(
            conn, caller, Kind.VOLUME_GROUP, details["volume_group_id"], "volumeGroupId"
        )
        if group.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume group {group.id} is {group.lifecycle_state}; back it up when AVAILABLE."
            )
        compartment_id = details.get("compartment_id") or group.compartment_id
        require_compartment(conn, caller, compartment_id)
        return self._insert(
            conn,
            group,
            compartment_id=compartment_id,
            display_name=details.get("display_name") or f"{group.display_name} backup",
            requested=BackupType(details.get("type") or BackupType.INCREMENTAL),
            created_us=self.ctx.clock.now_us(),
            retention_values=retention_attrs(details),
            extra={"source_type": "MANUAL", **tags_of(details)},
        )

    def create_scheduled_volume_group_backup(
        self,
        conn: sa.Connection,
        group: repo.Resource,
        *,
        requested: BackupType,
        display_name: str,
        created_us: int,
        retention_values: dict[str, object],
        scheduled: repo.Attrs,
    ) -> repo.Resource:
        """A group backup a policy's schedule takes (``sourceType`` SCHEDULED), by the same
        rules and job as a manual one; in the caller's transaction."""
        if group.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume group {group.id} is {group.lifecycle_state}; back it up when AVAILABLE."
            )
        return self._insert(
            conn,
            group,
            compartment_id=group.compartment_id,
            display_name=display_name,
            requested=requested,
            created_us=created_us,
            retention_values=retention_values,
            extra=scheduled,
        )

    def _insert(
        self,
        conn: sa.Connection,
        group: repo.Resource,
        *,
        compartment_id: str,
        display_name: str,
        requested: BackupType,
        created_us: int,
        retention_values: dict[str, object],
        extra: repo.Attrs,
    ) -> repo.Resource:
        backup_id = new_ocid(Kind.VOLUME_GROUP_BACKUP, self.ctx.settings.region_key)
        volumes = repo.get_many(conn, group.volume_ids)
        for volume_id in group.volume_ids:
            self.runs.hold_volume(conn, volumes[volume_id], backup_id)
        attrs: repo.Attrs = {
            "requested_type": requested.value,
            "type": requested.value,
            "volume_backup_ids": [],
            "member_volume_ids": group.volume_ids,
            "source_type": "MANUAL",
            "size_in_gbs": sum(v.size_in_gbs for v in volumes.values()),
            "unique_bytes": 0,
            "time_request_received_us": created_us,
            "freeform_tags": {},
            "defined_tags": {},
            **retention_values,
            **extra,
        }
        backup = repo.Resource(
            id=backup_id,
            kind=Kind.VOLUME_GROUP_BACKUP,
            tenancy_id=group.tenancy_id,
            compartment_id=compartment_id,
            display_name=display_name,
            lifecycle_state=REQUEST_RECEIVED,
            created_us=created_us,
            parent_id=group.id,
            attrs=with_expiry(attrs, created_us),
        )
        repo.insert(conn, backup)
        pinned = self.runs.pin_for(conn, group.volume_ids)
        job_rows.enqueue(conn, "create_volume_group_backup", backup.id, pinned_to=pinned)
        return backup

    def get_volume_group_backup(self, caller: Caller, backup_id: str) -> repo.Resource:
        return get_one(self.ctx, caller, Kind.VOLUME_GROUP_BACKUP, backup_id)

    def list_volume_group_backups(
        self, caller: Caller, request: ListRequest
    ) -> tuple[list[repo.Resource], str | None]:
        return list_in_compartment(self.ctx, self.tokens, caller, Kind.VOLUME_GROUP_BACKUP, request)

    def update_volume_group_backup(
        self, caller: Caller, backup_id: str, details: UpdateBackupDetails, if_match: str | None
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            res = get_for_update(conn, caller, Kind.VOLUME_GROUP_BACKUP, backup_id, if_match)
            what = f"Volume group backup {backup_id}"
            attrs = updated_attrs(self.ctx, res, details, what)
            retention_only = cast(
                UpdateBackupDetails, {k: details.get(k) for k in RETENTION_FIELDS if k in details}
            )
            members = list(repo.get_many(conn, res.volume_backup_ids).values())
            for member in members:
                member_attrs = updated_attrs(self.ctx, member, retention_only, what)
                repo.update(conn, member, attrs=member_attrs)
            repo.update(
                conn, res, display_name=details.get("display_name") or res.display_name, attrs=attrs
            )
        for row in (*members, res):
            self.runs.save_entry(row)
        return res

    def delete_volume_group_backup(
        self, caller: Caller, backup_id: str, if_match: str | None
    ) -> None:
        with self.ctx.db.write() as conn:
            res = get_for_delete(conn, caller, Kind.VOLUME_GROUP_BACKUP, backup_id, if_match)
            if res is None:
                return
            check_deletable(self.ctx, conn, res, f"Volume group backup {backup_id}")
            members = repo.get_many(conn, res.volume_backup_ids)
            for member in members.values():
                check_deletable(self.ctx, conn, member, f"Member volume backup {member.id}")
            for member in members.values():
                if member.lifecycle_state not in (TERMINATING, TERMINATED):
                    transition(conn, member, TERMINATING)
            transition(conn, res, TERMINATING)
            job_rows.enqueue(conn, "delete_volume_group_backup", res.id)
        self.ctx.wake_jobs()

    def change_volume_group_backup_compartment(
        self, caller: Caller, backup_id: str, compartment_id: str
    ) -> repo.Resource:
        res = move_compartment(
            self.ctx, caller, Kind.VOLUME_GROUP_BACKUP, backup_id, compartment_id
        )
        self.runs.save_entry(res)
        return res

    # --- restore: CreateVolumeGroup from a backup (``services.seams.GroupBackupRestorer``) --

    def restore_group(
        self,
        conn: sa.Connection,
        caller: Caller,
        group: repo.Resource,
        source: VolumeGroupSource,
    ) -> list[repo.Resource]:
        """New volumes (RESTORING, unsaved), one per member backup, each holding its backup
        (``Reason.RESTORE_SOURCE``) until it is restored."""
        backup = get_related(
            conn,
            caller,
            Kind.VOLUME_GROUP_BACKUP,
            source.get("volumeGroupBackupId", ""),
            "sourceDetails.volumeGroupBackupId",
        )
        if backup.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume group backup {backup.id} is {backup.lifecycle_state}; restore it once "
                "it is AVAILABLE."
            )
        members = repo.get_many(conn, backup.volume_backup_ids)
        restored = []
        for member_id in backup.volume_backup_ids:
            member = members[member_id]
            volume = new_volume(
                self.ctx,
                caller,
                compartment_id=group.compartment_id,
                availability_domain=group.availability_domain,
                size_in_gbs=member.size_in_gbs,
                display_name=member.display_name,
                state=RESTORING,
                source_details={"type": "volumeBackup", "id": member_id},
                attrs={k: member.attrs.get(k) for k in TAGS},
            )
            reserve(conn, member, Reason.RESTORE_SOURCE, volume.id, IncorrectState, "try later")
            restored.append(volume)
        if not restored:
            raise InvalidParameter(f"Volume group backup {backup.id} has no member backups.")
        return restored

    # --- jobs -------------------------------------------------------------------------------

    def run_create_volume_group_backup(self, job: JobContext) -> None:
        backup_id = job.job.resource_id
        members = self._commit(backup_id)
        if members is None:
            return
        job.step("committed")
        captured = self.runs.capture_all(job, members)
        reported = (
            BackupType.FULL
            if any(m.backup_type == BackupType.FULL for m in members)
            else BackupType.INCREMENTAL
        )
        with self.ctx.db.write() as conn:
            self.runs.settle(conn, captured)
            res = repo.get(conn, backup_id, Kind.VOLUME_GROUP_BACKUP)
            if res is None:
                raise RuntimeError(f"volume group backup {backup_id} vanished")
            transition(conn, res, AVAILABLE, attrs=dict(res.attrs, type=reported.value))
            release(conn, backup_id)
            rows = [*repo.get_many(conn, res.volume_backup_ids).values(), res]
        job.step("available")
        self.runs.after_backup(rows, res.tenancy_id)

    def _commit(self, backup_id: str) -> list[repo.Resource] | None:
        """Create the member backups (once) and move to COMMITTED; None if not ours to run."""
        with self.ctx.db.write() as conn:
            res = repo.get(conn, backup_id, Kind.VOLUME_GROUP_BACKUP)
            if res is None:
                return None
            if res.lifecycle_state == AVAILABLE:  # a crash after the commit: finish the rest
                rows = [*repo.get_many(conn, res.volume_backup_ids).values(), res]
                release(conn, backup_id)
            elif res.lifecycle_state not in (REQUEST_RECEIVED, CREATING, COMMITTED):
                return None
            else:
                return self._members(conn, res)
        self.runs.after_backup(rows, res.tenancy_id)
        return None

    def _members(self, conn: sa.Connection, res: repo.Resource) -> list[repo.Resource]:
        if res.lifecycle_state == REQUEST_RECEIVED:
            transition(conn, res, CREATING)
        existing = {m.volume_id: m for m in repo.get_many(conn, res.volume_backup_ids).values()}
        volumes = repo.get_many(conn, res.member_volume_ids)
        members = []
        for volume_id in res.member_volume_ids:
            member = existing.get(volume_id)
            if member is None:
                volume = volumes[volume_id]
                member = new_volume_backup(
                    self.ctx,
                    volume,
                    display_name=f"{res.display_name} - {volume.display_name}",
                    requested_type=res.requested_type,
                    base_backup_id=self.runs.base_for(
                        conn, volume, res.requested_type, res.created_us
                    ),
                    created_us=res.created_us,
                    state=CREATING,
                    retention_values={k: res.attrs.get(k) for k in RETENTION_FIELDS},
                    group_backup_id=res.id,
                )
                member.attrs.update({k: res.attrs.get(k) for k in SCHEDULE_ATTRS})
                repo.insert(conn, member)
            members.append(member)
        if res.lifecycle_state == CREATING:
            member_ids = [m.id for m in members]
            transition(conn, res, COMMITTED, attrs=dict(res.attrs, volume_backup_ids=member_ids))
        return members

    def fail_create_volume_group_backup(self, job: Job, _exc: BaseException) -> None:
        backup_id = job.resource_id
        with self.ctx.db.read() as conn:
            res = repo.get(conn, backup_id, Kind.VOLUME_GROUP_BACKUP)
        members = res.volume_backup_ids if res is not None else []
        self.runs.fail([backup_id, *members], backup_id)

    def run_delete_volume_group_backup(self, job: JobContext) -> None:
        with self.ctx.db.read() as conn:
            res = repo.get(conn, job.job.resource_id, Kind.VOLUME_GROUP_BACKUP)
        if res is None:
            return
        for member_id in res.volume_backup_ids:
            self.runs.catalog.forget(res.tenancy_id, member_id)
        self.runs.catalog.forget_entry(res.tenancy_id, res.id)
        with self.ctx.db.write() as conn:
            for member in repo.get_many(conn, res.volume_backup_ids).values():
                finish_deletion(self.ctx, conn, member)
            finish_deletion(self.ctx, conn, res)
        self.runs.refresh_unique_sizes(res.tenancy_id)
