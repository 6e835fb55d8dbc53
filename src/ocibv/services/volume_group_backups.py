"""Volume group backups: every member volume captured at one instant (crash-consistent),
one member VolumeBackup per volume; delete takes the members along; restore as a new group.

Lifecycle: REQUEST_RECEIVED (request stored, volumes held) → CREATING → COMMITTED (point in
time fixed, member backups exist, ``volumeBackupIds`` final) → AVAILABLE (every member's data
and manifest durable). FAULTY on failure; TERMINATING → TERMINATED on delete.
"""

from __future__ import annotations

from typing import Any

from ocibv.domain.errors import IncorrectState, InvalidParameter
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
from ocibv.jobs.runner import JobContext
from ocibv.services.backup_rules import (
    check_deletable,
    new_volume_backup,
    retention_attrs,
    updated_attrs,
    with_expiry,
)
from ocibv.services.backup_runs import BackupRuns
from ocibv.services.common import (
    PageTokens,
    create_once,
    get_for_delete,
    get_for_update,
    get_one,
    get_related,
    move_compartment,
    require_compartment,
    tombstone_until,
    transition,
)
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.listing import ListRequest, list_in_compartment
from ocibv.services.volume_backups import base_for, lock_volume_for_backup
from ocibv.services.volumes import new_volume
from ocibv.store import jobs as job_rows
from ocibv.store import resources as repo
from ocibv.store.database import now_us

TAGS = ("freeform_tags", "defined_tags")


class VolumeGroupBackupService:
    def __init__(self, ctx: ServiceContext, tokens: PageTokens, runs: BackupRuns) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.runs = runs

    def create_volume_group_backup(
        self, caller: Caller, details: dict[str, Any], retry_token: str | None
    ) -> repo.Resource:
        return create_once(
            self.ctx,
            caller,
            "create_volume_group_backup",
            retry_token,
            details,
            lambda conn: self._create(conn, caller, details),
        )

    def _create(self, conn: Any, caller: Caller, details: dict[str, Any]) -> repo.Resource:
        group = get_related(
            conn, caller, "volumegroup", details["volume_group_id"], "volumeGroupId"
        )
        if group.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume group {group.id} is {group.lifecycle_state}; back it up when AVAILABLE."
            )
        compartment_id = details.get("compartment_id") or group.compartment_id
        require_compartment(conn, caller, compartment_id)
        retention_values = retention_attrs(details)
        created_us = now_us()
        backup_id = new_ocid("volumegroupbackup", self.ctx.settings.region_key)
        volumes = repo.get_many(conn, group.attrs["volume_ids"])
        for volume_id in group.attrs["volume_ids"]:
            lock_volume_for_backup(conn, volumes[volume_id], backup_id)
        requested = details.get("type") or "INCREMENTAL"
        attrs: dict[str, Any] = {
            "requested_type": requested,
            "type": requested,
            "volume_backup_ids": [],
            "member_volume_ids": list(group.attrs["volume_ids"]),
            "source_type": "MANUAL",
            "size_in_gbs": sum(int(v.attrs["size_in_gbs"]) for v in volumes.values()),
            "unique_bytes": 0,
            "time_request_received_us": created_us,
            **{k: details.get(k) or {} for k in TAGS},
            **retention_values,
        }
        backup = repo.Resource(
            id=backup_id,
            kind="volumegroupbackup",
            tenancy_id=caller.tenancy_id,
            compartment_id=compartment_id,
            display_name=details.get("display_name") or f"{group.display_name} backup",
            lifecycle_state=REQUEST_RECEIVED,
            created_us=created_us,
            parent_id=group.id,
            attrs=with_expiry(self.ctx, attrs, created_us),
        )
        repo.insert(conn, backup)
        job_rows.enqueue(conn, "create_volume_group_backup", backup.id, {})
        return backup

    def get_volume_group_backup(self, caller: Caller, backup_id: str) -> repo.Resource:
        return get_one(self.ctx, caller, "volumegroupbackup", backup_id)

    def list_volume_group_backups(
        self, caller: Caller, request: ListRequest
    ) -> tuple[list[repo.Resource], str | None]:
        return list_in_compartment(self.ctx, self.tokens, caller, "volumegroupbackup", request)

    def update_volume_group_backup(
        self, caller: Caller, backup_id: str, details: dict[str, Any], if_match: str | None
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            res = get_for_update(conn, caller, "volumegroupbackup", backup_id, if_match)
            what = f"Volume group backup {backup_id}"
            attrs = updated_attrs(self.ctx, res, details, what)
            retention_only = {
                k: v for k, v in details.items() if k not in TAGS and k != "display_name"
            }
            members = list(repo.get_many(conn, res.attrs["volume_backup_ids"]).values())
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
            res = get_for_delete(conn, caller, "volumegroupbackup", backup_id, if_match)
            if res is None:
                return
            check_deletable(self.ctx, conn, res, f"Volume group backup {backup_id}")
            members = repo.get_many(conn, res.attrs["volume_backup_ids"])
            for member in members.values():
                check_deletable(self.ctx, conn, member, f"Member volume backup {member.id}")
            for member in members.values():
                if member.lifecycle_state not in (TERMINATING, TERMINATED):
                    transition(conn, member, TERMINATING)
            transition(conn, res, TERMINATING)
            job_rows.enqueue(conn, "delete_volume_group_backup", res.id, {})
        self.ctx.wake_jobs()

    def change_volume_group_backup_compartment(
        self, caller: Caller, backup_id: str, compartment_id: str
    ) -> repo.Resource:
        res = move_compartment(self.ctx, caller, "volumegroupbackup", backup_id, compartment_id)
        self.runs.save_entry(res)
        return res

    # --- restore: CreateVolumeGroup with a volumeGroupBackupId source -----------------------

    def restore_group(
        self, conn: Any, caller: Caller, group: repo.Resource, source: dict[str, Any]
    ) -> list[repo.Resource]:
        """New volumes (RESTORING), one per member backup; returns them unsaved-in-group."""
        backup = get_related(
            conn,
            caller,
            "volumegroupbackup",
            source["volumeGroupBackupId"],
            "sourceDetails.volumeGroupBackupId",
        )
        if backup.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume group backup {backup.id} is {backup.lifecycle_state}; restore it once "
                "it is AVAILABLE."
            )
        members = repo.get_many(conn, backup.attrs["volume_backup_ids"])
        restored = []
        for member_id in backup.attrs["volume_backup_ids"]:
            member = members[member_id]
            restored.append(
                new_volume(
                    caller,
                    compartment_id=group.compartment_id,
                    availability_domain=group.availability_domain,
                    size_in_gbs=int(member.attrs["size_in_gbs"]),
                    display_name=member.display_name,
                    state=RESTORING,
                    source_details={"type": "volumeBackup", "id": member_id},
                    attrs={k: member.attrs.get(k) for k in TAGS},
                )
            )
        if not restored:
            raise InvalidParameter(f"Volume group backup {backup.id} has no member backups.")
        return restored

    # --- jobs -------------------------------------------------------------------------------

    def run_create_volume_group_backup(self, job: JobContext) -> None:
        backup_id = job.job.resource_id
        members = self._commit(backup_id)
        if members is None:
            return
        total = self.runs.bytes_to_read(m.attrs["volume_id"] for m in members)
        done = 0
        for member in members:
            if member.lifecycle_state != AVAILABLE:
                done += self.runs.back_up_member(job, member, done, total)
        with self.ctx.db.write() as conn:
            res = repo.get(conn, backup_id, "volumegroupbackup")
            assert res is not None
            reported = "FULL" if any(m.attrs["type"] == "FULL" for m in members) else "INCREMENTAL"
            transition(
                conn,
                res,
                AVAILABLE,
                attrs=dict(res.attrs, type=reported),
            )
        self.runs.save_entry(res)
        self.runs.release_volumes(backup_id, [m.attrs["volume_id"] for m in members])
        self.runs.save_identity(res.tenancy_id)
        self.runs.refresh_unique_sizes(res.tenancy_id)

    def _commit(self, backup_id: str) -> list[repo.Resource] | None:
        """Create the member backups (once) and move to COMMITTED; None if not ours to run."""
        with self.ctx.db.write() as conn:
            res = repo.get(conn, backup_id, "volumegroupbackup")
            if res is None or res.lifecycle_state not in (REQUEST_RECEIVED, CREATING, COMMITTED):
                return None
            if res.lifecycle_state == REQUEST_RECEIVED:
                transition(conn, res, CREATING)
            existing = {
                m.attrs["volume_id"]: m
                for m in repo.get_many(conn, res.attrs["volume_backup_ids"]).values()
            }
            volumes = repo.get_many(conn, res.attrs["member_volume_ids"])
            members = []
            for volume_id in res.attrs["member_volume_ids"]:
                member = existing.get(volume_id)
                if member is None:
                    volume = volumes[volume_id]
                    member = new_volume_backup(
                        self.ctx,
                        volume,
                        display_name=f"{res.display_name} - {volume.display_name}",
                        requested_type=res.attrs["requested_type"],
                        base_backup_id=None
                        if res.attrs["requested_type"] == "FULL"
                        else base_for(self.runs, conn, volume, res.created_us),
                        created_us=res.created_us,
                        state=CREATING,
                        retention_values={
                            k: res.attrs.get(k)
                            for k in (
                                "retention_period",
                                "is_prevent_deletion_enabled",
                                "is_retention_lock_enabled",
                                "is_indefinite_retention_enabled",
                            )
                        },
                        group_backup_id=backup_id,
                    )
                    repo.insert(conn, member)
                members.append(member)
            if res.lifecycle_state == CREATING:
                transition(
                    conn,
                    res,
                    COMMITTED,
                    attrs=dict(res.attrs, volume_backup_ids=[m.id for m in members]),
                )
        return members

    def fail_create_volume_group_backup(self, backup_id: str) -> None:
        with self.ctx.db.read() as conn:
            res = repo.get(conn, backup_id, "volumegroupbackup")
            members = (
                list(repo.get_many(conn, res.attrs["volume_backup_ids"]).values()) if res else []
            )
        if res is not None:
            self.runs.fail(
                [backup_id, *[m.id for m in members]], res.attrs["member_volume_ids"], backup_id
            )

    def run_delete_volume_group_backup(self, job: JobContext) -> None:
        with self.ctx.db.read() as conn:
            res = repo.get(conn, job.job.resource_id, "volumegroupbackup")
        if res is None:
            return
        purge = tombstone_until(self.ctx.settings.tombstone_seconds)
        for member_id in res.attrs["volume_backup_ids"]:
            self.runs.catalog.forget(res.tenancy_id, member_id)
        self.runs.catalog.backend(res.tenancy_id).delete(f"catalog/{res.id}.json")
        with self.ctx.db.write() as conn:
            for member in repo.get_many(conn, res.attrs["volume_backup_ids"]).values():
                transition(
                    conn,
                    member,
                    TERMINATED,
                    purge_after_us=purge,
                )
            transition(
                conn,
                res,
                TERMINATED,
                purge_after_us=purge,
            )
        self.runs.refresh_unique_sizes(res.tenancy_id)
