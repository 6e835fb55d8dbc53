"""Volume groups: build from volumes, clone a group, update membership, delete (keeping the
volumes). Membership rules of spec §8: one group per volume, members AVAILABLE and in the
group's availability domain, at most 32 volumes and 128 TB."""

from __future__ import annotations

import sqlalchemy as sa

from ocibv.domain import limits
from ocibv.domain.errors import (
    Conflict,
    IncorrectState,
    InvalidParameter,
    LimitExceeded,
)
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import (
    AVAILABLE,
    FAULTY,
    PROVISIONING,
    TERMINATED,
    TERMINATING,
)
from ocibv.domain.ocid import new_ocid
from ocibv.jobs.context import JobContext
from ocibv.jobs.registry import JobRegistry
from ocibv.services.backup_policy_assignments import (
    drop_assignments_of,
    refuse_member_policies,
)
from ocibv.services.backup_rules import tags_of
from ocibv.services.common import (
    PageTokens,
    check_if_match,
    create_once,
    finish_deletion,
    get_for_delete,
    get_one,
    get_related,
    get_visible,
    move_compartment,
    require_compartment,
    transition,
)
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.listing import ListRequest, list_in_compartment
from ocibv.services.requests import CreateVolumeGroupDetails, UpdateVolumeGroupDetails
from ocibv.services.seams import GroupBackupRestorer
from ocibv.services.volumes import VolumeService, new_volume
from ocibv.store import jobs as job_rows
from ocibv.store import resources as repo
from ocibv.store.jobs import Job


class VolumeGroupService:
    def __init__(
        self,
        ctx: ServiceContext,
        tokens: PageTokens,
        volumes: VolumeService,
        group_restorer: GroupBackupRestorer,
    ) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.volumes = volumes
        self.group_restorer = group_restorer

    def register_jobs(self, jobs: JobRegistry) -> None:
        jobs.register(
            "create_volume_group", self.run_create_volume_group, self.fail_create_volume_group
        )
        jobs.register("delete_volume_group", self.run_delete_volume_group)

    def create_volume_group(
        self, caller: Caller, details: CreateVolumeGroupDetails, retry_token: str | None
    ) -> repo.Resource:
        return create_once(
            self.ctx, caller, "create_volume_group", retry_token, details, self._create
        )

    def _create(
        self, conn: sa.Connection, caller: Caller, details: CreateVolumeGroupDetails
    ) -> repo.Resource:
        require_compartment(conn, caller, details["compartment_id"])
        ad = details["availability_domain"]
        self.volumes.check_ad(ad)
        source = details["source_details"]
        group_id = new_ocid(Kind.VOLUME_GROUP, self.ctx.settings.region_key)
        group = repo.Resource(
            id=group_id,
            kind=Kind.VOLUME_GROUP,
            tenancy_id=caller.tenancy_id,
            compartment_id=details["compartment_id"],
            availability_domain=ad,
            display_name=details.get("display_name") or f"volumegroup{group_id[-8:]}",
            lifecycle_state=PROVISIONING,
            created_us=self.ctx.clock.now_us(),
            attrs={
                "volume_ids": [],
                "size_in_gbs": 0,
                "source_details": source,
                "is_hydrated": False,
                "volume_group_replicas": None,
                "freeform_tags": {},
                "defined_tags": {},
                **tags_of(details),
            },
        )
        kind = source["type"]
        if kind == "volumeIds":
            members = self._check_members(conn, caller, group, source.get("volumeIds", []))
            repo.insert(conn, group)
            self._set_members(conn, group, members)
        elif kind == "volumeGroupId":
            self._clone_group(conn, caller, group, source.get("volumeGroupId", ""))
        elif kind == "volumeGroupBackupId":
            restored = self.group_restorer.restore_group(conn, caller, group, source)
            for volume in restored:
                repo.insert(conn, volume)
            repo.insert(conn, group)
            self._set_members(conn, group, restored)
        else:
            raise InvalidParameter(
                f"sourceDetails.type: {kind!r} is not supported here "
                "(volumeIds, volumeGroupId, volumeGroupBackupId)."
            )
        policy_id = details.get("backup_policy_id")
        if policy_id:  # assigned with the group, as OCI does
            self.volumes.assigner.assign(conn, caller, group.id, policy_id, "backupPolicyId")
        job_rows.enqueue(conn, "create_volume_group", group.id)
        return group

    def _clone_group(
        self, conn: sa.Connection, caller: Caller, group: repo.Resource, source_id: str
    ) -> None:
        source = get_related(
            conn, caller, Kind.VOLUME_GROUP, source_id, "sourceDetails.volumeGroupId"
        )
        if source.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume group {source_id} is {source.lifecycle_state}; clone it when AVAILABLE."
            )
        if source.availability_domain != group.availability_domain:
            raise InvalidParameter(
                "availabilityDomain: a clone must be in the source group's availability domain "
                f"{source.availability_domain}."
            )
        originals = repo.get_many(conn, source.volume_ids)
        clones = []
        for vol_id in source.volume_ids:
            original = originals[vol_id]
            if original.lifecycle_state != AVAILABLE:
                raise IncorrectState(f"Member volume {vol_id} is not AVAILABLE; try again later.")
            clone = new_volume(
                self.ctx,
                caller,
                compartment_id=group.compartment_id,
                availability_domain=group.availability_domain,
                size_in_gbs=original.size_in_gbs,
                display_name=f"{original.display_name} (clone)",
                state=PROVISIONING,
                source_details={"type": "volume", "id": vol_id},
                attrs={"vpus_per_gb": original.attrs.get("vpus_per_gb")},
            )
            repo.insert(conn, clone)
            self.volumes.hold_clone_source(conn, original, clone.id)
            clones.append(clone)
        repo.insert(conn, group)
        self._set_members(conn, group, clones)

    def _check_members(
        self, conn: sa.Connection, caller: Caller, group: repo.Resource, volume_ids: list[str]
    ) -> list[repo.Resource]:
        if len(set(volume_ids)) != len(volume_ids):
            raise InvalidParameter("volumeIds: a volume is listed more than once.")
        if not volume_ids:
            raise InvalidParameter("volumeIds: a volume group needs at least one volume.")
        if len(volume_ids) > limits.MAX_VOLUMES_PER_GROUP:
            raise LimitExceeded(
                f"volumeIds: a volume group holds at most {limits.MAX_VOLUMES_PER_GROUP} volumes."
            )
        repo.lock(conn, volume_ids)  # "one group per volume" holds across processes
        members = [get_related(conn, caller, Kind.VOLUME, v, "volumeIds") for v in volume_ids]
        total = 0
        for vol in members:
            if vol.parent_id and vol.parent_id != group.id:
                raise Conflict(
                    f"Volume {vol.id} already belongs to volume group {vol.parent_id}; a volume "
                    "can be in only one group."
                )
            if vol.availability_domain != group.availability_domain:
                raise InvalidParameter(
                    f"volumeIds: volume {vol.id} is in {vol.availability_domain}, not in the "
                    f"group's availability domain {group.availability_domain}."
                )
            if vol.lifecycle_state != AVAILABLE:
                raise IncorrectState(
                    f"Volume {vol.id} is {vol.lifecycle_state}; only AVAILABLE volumes can join "
                    "a group."
                )
            total += vol.size_in_gbs
        if total > limits.MAX_GROUP_GBS:
            raise LimitExceeded(
                f"volumeIds: the volumes add up to {total} GB; a group holds at most "
                f"{limits.MAX_GROUP_GBS} GB."
            )
        return members

    def _set_members(
        self, conn: sa.Connection, group: repo.Resource, members: list[repo.Resource]
    ) -> None:
        """Make ``members`` the group's volumes (others leave it), in this transaction."""
        keep = {m.id for m in members}
        for vol_id in group.volume_ids:
            if vol_id not in keep:
                old = repo.get(conn, vol_id, Kind.VOLUME)
                if old is not None and old.parent_id == group.id:
                    repo.update(conn, old, parent_id=None)
        for vol in members:
            if vol.parent_id != group.id:
                repo.update(conn, vol, parent_id=group.id)
        attrs = dict(group.attrs)
        attrs["volume_ids"] = [m.id for m in members]
        attrs["size_in_gbs"] = sum(m.size_in_gbs for m in members)
        repo.update(conn, group, attrs=attrs)

    def get_volume_group(self, caller: Caller, group_id: str) -> repo.Resource:
        return get_one(self.ctx, caller, Kind.VOLUME_GROUP, group_id)

    def list_volume_groups(
        self, caller: Caller, request: ListRequest
    ) -> tuple[list[repo.Resource], str | None]:
        return list_in_compartment(
            self.ctx, self.tokens, caller, Kind.VOLUME_GROUP, request, ad_scoped=True
        )

    def update_volume_group(
        self, caller: Caller, group_id: str, details: UpdateVolumeGroupDetails, if_match: str | None
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            repo.lock(conn, [group_id])
            group = get_visible(conn, caller, Kind.VOLUME_GROUP, group_id)
            check_if_match(group, if_match)
            volume_ids = details.get("volume_ids")
            if volume_ids is not None:
                if group.lifecycle_state != AVAILABLE:
                    raise IncorrectState(
                        f"Volume group {group_id} is {group.lifecycle_state}; change its "
                        "volumes when it is AVAILABLE."
                    )
                members = self._check_members(conn, caller, group, volume_ids)
                refuse_member_policies(conn, group, [m.id for m in members])
                self._set_members(conn, group, members)
            elif group.lifecycle_state in (TERMINATING, TERMINATED):
                raise Conflict(f"Volume group {group_id} is {group.lifecycle_state}.")
            attrs = dict(group.attrs, **tags_of(details))
            repo.update(
                conn,
                group,
                display_name=details.get("display_name") or group.display_name,
                attrs=attrs,
            )
            return group

    def delete_volume_group(self, caller: Caller, group_id: str, if_match: str | None) -> None:
        with self.ctx.db.write() as conn:
            group = get_for_delete(conn, caller, Kind.VOLUME_GROUP, group_id, if_match)
            if group is None:
                return
            if group.lifecycle_state == PROVISIONING:
                raise IncorrectState(
                    f"Volume group {group_id} is PROVISIONING; delete it once it is AVAILABLE."
                )
            self._set_members(conn, group, [])
            transition(conn, group, TERMINATING)
            drop_assignments_of(conn, group.id)
            job_rows.enqueue(conn, "delete_volume_group", group.id)
        self.ctx.wake_jobs()

    def change_volume_group_compartment(
        self, caller: Caller, group_id: str, compartment_id: str
    ) -> repo.Resource:
        return move_compartment(self.ctx, caller, Kind.VOLUME_GROUP, group_id, compartment_id)

    # --- jobs -----------------------------------------------------------------------------

    def run_create_volume_group(self, job: JobContext) -> None:
        """Make each new member's image (clones, restores), then AVAILABLE and hydrated."""
        with self.ctx.db.read() as conn:
            group = repo.get(conn, job.job.resource_id, Kind.VOLUME_GROUP)
        if group is None:
            return
        for volume_id in group.volume_ids:
            self.volumes.provision(job, volume_id)
        with self.ctx.db.write() as conn:
            transition(conn, group, AVAILABLE, attrs=dict(group.attrs, is_hydrated=True))

    def fail_create_volume_group(self, job: Job, _exc: BaseException) -> None:
        """Members whose image could not be made end FAULTY, and so does the group."""
        with self.ctx.db.read() as conn:
            group = repo.get(conn, job.resource_id, Kind.VOLUME_GROUP)
        if group is None:
            return
        self.volumes.mark_faulty(group.volume_ids)
        with self.ctx.db.write() as conn:
            transition(conn, group, FAULTY)

    def run_delete_volume_group(self, job: JobContext) -> None:
        with self.ctx.db.write() as conn:
            group = repo.get(conn, job.job.resource_id, Kind.VOLUME_GROUP)
            if group is not None:
                finish_deletion(self.ctx, conn, group)
