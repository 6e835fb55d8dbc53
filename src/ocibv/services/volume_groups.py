"""Volume groups: build from volumes, clone a group, update membership, delete (keeping the
volumes). Membership rules of spec §8: one group per volume, members AVAILABLE and in the
group's availability domain, at most 32 volumes and 128 TB."""

from __future__ import annotations

from typing import Any

from ocibv.domain import limits
from ocibv.domain.errors import (
    Conflict,
    IncorrectState,
    InvalidParameter,
    LimitExceeded,
)
from ocibv.domain.lifecycle import (
    AVAILABLE,
    FAULTY,
    PROVISIONING,
    RESTORING,
    TERMINATED,
    TERMINATING,
)
from ocibv.domain.ocid import new_ocid
from ocibv.jobs.runner import JobContext
from ocibv.services.common import (
    PageTokens,
    check_if_match,
    create_once,
    get_for_delete,
    get_one,
    get_related,
    get_visible,
    move_compartment,
    require_compartment,
    tombstone_until,
    transition,
)
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.listing import ListRequest, list_in_compartment
from ocibv.services.volumes import VolumeService, new_volume
from ocibv.store import jobs as job_rows
from ocibv.store import resources as repo

TAGS = ("freeform_tags", "defined_tags")


class VolumeGroupService:
    def __init__(self, ctx: ServiceContext, tokens: PageTokens, volumes: VolumeService) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.volumes = volumes
        # Restores from group backups plug in here: ``(conn, caller, group, source)`` ->
        # the new (unsaved) RESTORING volumes (set by the container).
        self.restore_volumes: Any = None

    def create_volume_group(
        self, caller: Caller, details: dict[str, Any], retry_token: str | None
    ) -> repo.Resource:
        return create_once(
            self.ctx,
            caller,
            "create_volume_group",
            retry_token,
            details,
            lambda conn: self._create(conn, caller, details),
        )

    def _create(self, conn: Any, caller: Caller, details: dict[str, Any]) -> repo.Resource:
        require_compartment(conn, caller, details["compartment_id"])
        ad = details["availability_domain"]
        self.volumes._check_ad(ad)
        source = details["source_details"]
        group = repo.Resource(
            id=new_ocid("volumegroup", "phx"),
            kind="volumegroup",
            tenancy_id=caller.tenancy_id,
            compartment_id=details["compartment_id"],
            availability_domain=ad,
            display_name=details.get("display_name") or "volumegroup",
            lifecycle_state=PROVISIONING,
            attrs={
                "volume_ids": [],
                "size_in_gbs": 0,
                "source_details": source,
                "is_hydrated": False,
                "volume_group_replicas": None,
                **{k: details.get(k) or {} for k in TAGS},
            },
        )
        if details.get("display_name") is None:
            group.display_name = f"volumegroup{group.id[-8:]}"
        kind = source["type"]
        if kind == "volumeIds":
            members = self._check_members(conn, caller, group, source["volumeIds"])
            repo.insert(conn, group)
            self._set_members(conn, group, members)
            job_rows.enqueue(conn, "create_volume_group", group.id, {})
        elif kind == "volumeGroupId":
            self._clone_group(conn, caller, group, source["volumeGroupId"])
        elif kind == "volumeGroupBackupId" and self.restore_volumes is not None:
            restored = self.restore_volumes(conn, caller, group, source)
            for volume in restored:
                volume.source_id = volume.attrs["source_details"]["id"]
                repo.insert(conn, volume)
            repo.insert(conn, group)
            self._set_members(conn, group, restored)
            job_rows.enqueue(
                conn,
                "create_volume_group",
                group.id,
                {"restores": {v.id: v.attrs["source_details"]["id"] for v in restored}},
            )
        else:
            raise InvalidParameter(
                f"sourceDetails.type: {kind!r} is not supported here "
                "(volumeIds, volumeGroupId, volumeGroupBackupId)."
            )
        return group

    def _clone_group(self, conn: Any, caller: Caller, group: repo.Resource, source_id: str) -> None:
        source = get_related(conn, caller, "volumegroup", source_id, "sourceDetails.volumeGroupId")
        if source.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume group {source_id} is {source.lifecycle_state}; clone it when AVAILABLE."
            )
        if source.availability_domain != group.availability_domain:
            raise InvalidParameter(
                "availabilityDomain: a clone must be in the source group's availability domain "
                f"{source.availability_domain}."
            )
        originals = repo.get_many(conn, source.attrs["volume_ids"])
        clones = []
        for vol_id in source.attrs["volume_ids"]:
            original = originals[vol_id]
            if original.lifecycle_state != AVAILABLE or original.busy:
                raise IncorrectState(f"Member volume {vol_id} is not AVAILABLE; try again later.")
            clone = new_volume(
                caller,
                compartment_id=group.compartment_id,
                availability_domain=group.availability_domain,
                size_in_gbs=int(original.attrs["size_in_gbs"]),
                display_name=f"{original.display_name} (clone)",
                state=PROVISIONING,
                source_details={"type": "volume", "id": vol_id},
                attrs={"vpus_per_gb": original.attrs.get("vpus_per_gb")},
            )
            clone.source_id = vol_id
            repo.insert(conn, clone)
            clones.append(clone)
        repo.insert(conn, group)
        self._set_members(conn, group, clones)
        job_rows.enqueue(
            conn,
            "create_volume_group",
            group.id,
            {"clones": {c.id: c.attrs["source_details"]["id"] for c in clones}},
        )

    def _check_members(
        self, conn: Any, caller: Caller, group: repo.Resource, volume_ids: list[str]
    ) -> list[repo.Resource]:
        if len(set(volume_ids)) != len(volume_ids):
            raise InvalidParameter("volumeIds: a volume is listed more than once.")
        if not volume_ids:
            raise InvalidParameter("volumeIds: a volume group needs at least one volume.")
        if len(volume_ids) > limits.MAX_VOLUMES_PER_GROUP:
            raise LimitExceeded(
                f"volumeIds: a volume group holds at most {limits.MAX_VOLUMES_PER_GROUP} volumes."
            )
        members = [get_related(conn, caller, "volume", v, "volumeIds") for v in volume_ids]
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
            total += int(vol.attrs["size_in_gbs"])
        if total > limits.MAX_GROUP_GBS:
            raise LimitExceeded(
                f"volumeIds: the volumes add up to {total} GB; a group holds at most "
                f"{limits.MAX_GROUP_GBS} GB."
            )
        return members

    def _set_members(self, conn: Any, group: repo.Resource, members: list[repo.Resource]) -> None:
        """Make ``members`` the group's volumes (others leave it), in this transaction."""
        keep = {m.id for m in members}
        for vol_id in group.attrs.get("volume_ids", []):
            if vol_id not in keep:
                old = repo.get(conn, vol_id, "volume")
                if old is not None and old.parent_id == group.id:
                    repo.update(conn, old, parent_id=None)
        for vol in members:
            if vol.parent_id != group.id:
                repo.update(conn, vol, parent_id=group.id)
        attrs = dict(group.attrs)
        attrs["volume_ids"] = [m.id for m in members]
        attrs["size_in_gbs"] = sum(int(m.attrs["size_in_gbs"]) for m in members)
        repo.update(conn, group, attrs=attrs)

    def get_volume_group(self, caller: Caller, group_id: str) -> repo.Resource:
        return get_one(self.ctx, caller, "volumegroup", group_id)

    def list_volume_groups(
        self, caller: Caller, request: ListRequest
    ) -> tuple[list[repo.Resource], str | None]:
        return list_in_compartment(
            self.ctx, self.tokens, caller, "volumegroup", request, ad_scoped=True
        )

    def update_volume_group(
        self, caller: Caller, group_id: str, details: dict[str, Any], if_match: str | None
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            group = get_visible(conn, caller, "volumegroup", group_id)
            check_if_match(group, if_match)
            if details.get("volume_ids") is not None:
                if group.lifecycle_state != AVAILABLE:
                    raise IncorrectState(
                        f"Volume group {group_id} is {group.lifecycle_state}; change its "
                        "volumes when it is AVAILABLE."
                    )
                members = self._check_members(conn, caller, group, details["volume_ids"])
                self._set_members(conn, group, members)
            elif group.lifecycle_state in (TERMINATING, TERMINATED):
                raise Conflict(f"Volume group {group_id} is {group.lifecycle_state}.")
            attrs = dict(group.attrs)
            for key in TAGS:
                if details.get(key) is not None:
                    attrs[key] = details[key]
            repo.update(
                conn,
                group,
                display_name=details.get("display_name") or group.display_name,
                attrs=attrs,
            )
            return group

    def delete_volume_group(self, caller: Caller, group_id: str, if_match: str | None) -> None:
        with self.ctx.db.write() as conn:
            group = get_for_delete(conn, caller, "volumegroup", group_id, if_match)
            if group is None:
                return
            if group.lifecycle_state == PROVISIONING:
                raise IncorrectState(
                    f"Volume group {group_id} is PROVISIONING; delete it once it is AVAILABLE."
                )
            if group.busy:
                raise Conflict(f"Volume group {group_id} is busy ({group.busy}); try later.")
            self._set_members(conn, group, [])
            transition(conn, group, TERMINATING)
            job_rows.enqueue(conn, "delete_volume_group", group.id, {})
        self.ctx.wake_jobs()

    def change_volume_group_compartment(
        self, caller: Caller, group_id: str, compartment_id: str
    ) -> repo.Resource:
        return move_compartment(self.ctx, caller, "volumegroup", group_id, compartment_id)

    # --- jobs -----------------------------------------------------------------------------

    def run_create_volume_group(self, job: JobContext) -> None:
        """Clone each new member (if any), then AVAILABLE and hydrated."""
        group_id = job.job.resource_id
        for clone_id, source_id in job.job.payload.get("clones", {}).items():
            self.volumes.provision(job, clone_id, clone_from=source_id)
        for volume_id, backup_id in job.job.payload.get("restores", {}).items():
            self.volumes.provision(job, volume_id, restore_from=backup_id)
        self.finish_group(group_id)

    def finish_group(self, group_id: str) -> None:
        with self.ctx.db.write() as conn:
            group = repo.get(conn, group_id, "volumegroup")
            if group is not None:
                transition(
                    conn,
                    group,
                    AVAILABLE,
                    attrs=dict(group.attrs, is_hydrated=True),
                )

    def run_delete_volume_group(self, job: JobContext) -> None:
        with self.ctx.db.write() as conn:
            group = repo.get(conn, job.job.resource_id, "volumegroup")
            if group is not None:
                transition(
                    conn,
                    group,
                    TERMINATED,
                    purge_after_us=tombstone_until(self.ctx.settings.tombstone_seconds),
                )

    def mark_faulty(self, group_id: str) -> None:
        with self.ctx.db.write() as conn:
            group = repo.get(conn, group_id, "volumegroup")
            if group is None:
                return
            transition(conn, group, FAULTY)
            for vol in repo.get_many(conn, group.attrs.get("volume_ids", [])).values():
                if vol.lifecycle_state in (PROVISIONING, RESTORING):
                    transition(conn, vol, FAULTY)
