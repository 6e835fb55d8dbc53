"""Volumes: create (empty, clone or restore), get, list, update (grow), delete, change
compartment.

A volume's data is a sparse image file; its lifecycle never runs ahead of that file:
AVAILABLE only once the image exists with every byte of its source.
"""

from __future__ import annotations

from pathlib import Path

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
    RESTORING,
    TERMINATING,
)
from ocibv.domain.ocid import new_ocid
from ocibv.domain.reservations import Reason
from ocibv.engine import volume_files
from ocibv.jobs.context import JobContext
from ocibv.jobs.registry import JobRegistry
from ocibv.services.backup_policy_assignments import drop_assignments_of
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
from ocibv.services.requests import CreateVolumeDetails, UpdateVolumeDetails, VolumeSource
from ocibv.services.reservations import refuse_if_held, release, reserve
from ocibv.services.seams import BackupRestorer, PolicyAssigner
from ocibv.store import jobs as job_rows
from ocibv.store import resources as repo
from ocibv.store.jobs import Job

UPDATABLE = (
    "vpus_per_gb",
    "is_auto_tune_enabled",
    "autotune_policies",
    "is_reservations_enabled",
    "freeform_tags",
    "defined_tags",
)


def new_volume(
    ctx: ServiceContext,
    caller: Caller,
    *,
    compartment_id: str,
    availability_domain: str,
    size_in_gbs: int,
    display_name: str | None,
    state: str,
    source_details: VolumeSource | None,
    attrs: repo.Attrs | None = None,
) -> repo.Resource:
    """An unsaved volume row with every response field defaulted."""
    volume_id = new_ocid(Kind.VOLUME, ctx.settings.region_key)
    base: repo.Attrs = {
        "size_in_gbs": size_in_gbs,
        "vpus_per_gb": 10,
        "is_hydrated": False,
        "source_details": source_details,
        "freeform_tags": {},
        "defined_tags": {},
        "system_tags": {},
        "is_auto_tune_enabled": False,
        "auto_tuned_vpus_per_gb": None,
        "autotune_policies": [],
        "is_reservations_enabled": False,
        "kms_key_id": None,
        "cluster_placement_group_id": None,
        "block_volume_replicas": None,
    }
    base.update({k: v for k, v in (attrs or {}).items() if v is not None})
    return repo.Resource(
        id=volume_id,
        kind=Kind.VOLUME,
        tenancy_id=caller.tenancy_id,
        compartment_id=compartment_id,
        availability_domain=availability_domain,
        display_name=display_name or f"volume{volume_id[-8:]}",
        lifecycle_state=state,
        created_us=ctx.clock.now_us(),
        source_id=source_details.get("id") if source_details else None,
        attrs=base,
    )


def at_least(size_gbs: int | None, source_gbs: int, what: str) -> int:
    """The size of a volume made from a source: as asked, never smaller than the source."""
    if size_gbs is not None and size_gbs < source_gbs:
        raise InvalidParameter(f"sizeInGBs: {size_gbs} is smaller than {what} ({source_gbs} GB).")
    return size_gbs or source_gbs


class VolumeService:
    def __init__(
        self,
        ctx: ServiceContext,
        tokens: PageTokens,
        restorer: BackupRestorer,
        assigner: PolicyAssigner,
    ) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.restorer = restorer
        self.assigner = assigner

    def register_jobs(self, jobs: JobRegistry) -> None:
        jobs.register("create_volume", self.run_create_volume, self.fail_create_volume)
        jobs.register("delete_volume", self.run_delete_volume)

    # --- operations -------------------------------------------------------------------------

    def create_volume(
        self, caller: Caller, details: CreateVolumeDetails, retry_token: str | None
    ) -> repo.Resource:
        return create_once(
            self.ctx, caller, "create_volume", retry_token, details, self._create_volume
        )

    def _create_volume(
        self, conn: sa.Connection, caller: Caller, details: CreateVolumeDetails
    ) -> repo.Resource:
        require_compartment(conn, caller, details["compartment_id"])
        source = details.get("source_details")
        ad = details.get("availability_domain")
        size_gbs = details.get("size_in_gbs")
        size_mbs = details.get("size_in_mbs")
        if size_gbs is None and size_mbs is not None:
            size_gbs = size_mbs // 1024
        state = PROVISIONING
        backup_id = details.get("volume_backup_id")
        if source is None and backup_id:
            source = {"type": "volumeBackup", "id": backup_id}
        clone_from: repo.Resource | None = None
        restore_from: repo.Resource | None = None
        if source is not None and source["type"] == "volume":
            clone_from = self._clone_source(conn, caller, source.get("id", ""), ad)
            ad = clone_from.availability_domain
            size_gbs = at_least(size_gbs, clone_from.size_in_gbs, "the source volume")
        elif source is not None and source["type"] == "volumeBackup":
            field = "sourceDetails.id"
            restore_from = self.restorer.restore_source(conn, caller, source.get("id", ""), field)
            size_gbs = at_least(size_gbs, restore_from.size_in_gbs, "the backed-up volume")
            state = RESTORING
        elif source is not None:
            raise InvalidParameter(
                f"sourceDetails.type: {source['type']!r} is not supported here "
                "(volume, volumeBackup)."
            )
        if ad is None:
            raise InvalidParameter("availabilityDomain: required unless cloning a volume.")
        self.check_ad(ad)
        size_gbs = size_gbs or limits.DEFAULT_VOLUME_GBS
        self._check_fits(size_gbs)
        res = new_volume(
            self.ctx,
            caller,
            compartment_id=details["compartment_id"],
            availability_domain=ad,
            size_in_gbs=size_gbs,
            display_name=details.get("display_name"),
            state=state,
            source_details=source,
            attrs={k: details.get(k) for k in UPDATABLE},
        )
        repo.insert(conn, res)
        policy_id = details.get("backup_policy_id")
        if policy_id:  # the deprecated way to assign a policy, still honoured (as OCI does)
            self.assigner.assign(conn, caller, res.id, policy_id, "backupPolicyId")
        if clone_from is not None:
            self.hold_clone_source(conn, clone_from, res.id)
        if restore_from is not None:
            self.restorer.hold_for_restore(conn, restore_from, res.id)
        job_rows.enqueue(conn, "create_volume", res.id)
        return res

    def _clone_source(
        self, conn: sa.Connection, caller: Caller, source_id: str, ad: str | None
    ) -> repo.Resource:
        src = get_related(conn, caller, Kind.VOLUME, source_id, "sourceDetails.id")
        if src.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Source volume {src.id} is {src.lifecycle_state}; it must be AVAILABLE "
                "to be cloned."
            )
        if ad is not None and ad != src.availability_domain:
            raise InvalidParameter(
                "availabilityDomain: a clone must be in the source volume's availability "
                f"domain {src.availability_domain}."
            )
        return src

    def hold_clone_source(self, conn: sa.Connection, source: repo.Resource, clone_id: str) -> None:
        """Keep ``source`` unchanged (no import, resize or delete) until the clone is made."""
        reserve(
            conn, source, Reason.CLONE_SOURCE, clone_id, IncorrectState, "clone it when it is done"
        )

    def get_volume(self, caller: Caller, volume_id: str) -> repo.Resource:
        return get_one(self.ctx, caller, Kind.VOLUME, volume_id)

    def list_volumes(
        self, caller: Caller, request: ListRequest
    ) -> tuple[list[repo.Resource], str | None]:
        return list_in_compartment(
            self.ctx, self.tokens, caller, Kind.VOLUME, request, ad_scoped=True
        )

    def update_volume(
        self, caller: Caller, volume_id: str, details: UpdateVolumeDetails, if_match: str | None
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            res = get_for_update(conn, caller, Kind.VOLUME, volume_id, if_match)
            attrs = dict(res.attrs)
            for key in UPDATABLE:
                value = details.get(key)
                if value is not None:
                    attrs[key] = value
            new_size = details.get("size_in_gbs")
            if new_size is not None and new_size != res.size_in_gbs:
                self._grow(conn, res, attrs, new_size)
            repo.update(
                conn, res, display_name=details.get("display_name") or res.display_name, attrs=attrs
            )
            return res

    def _grow(
        self, conn: sa.Connection, res: repo.Resource, attrs: repo.Attrs, new_size: int
    ) -> None:
        current = res.size_in_gbs
        if new_size < current:
            raise InvalidParameter(
                f"sizeInGBs: a volume can only grow; {new_size} is smaller than {current}."
            )
        if res.lifecycle_state != AVAILABLE:
            raise IncorrectState(
                f"Volume {res.id} is {res.lifecycle_state}; resize it when AVAILABLE."
            )
        refuse_if_held(conn, res, IncorrectState, "resize it when that is done")
        self._check_fits(new_size)
        group_id = res.parent_id
        if group_id:
            group = repo.get(conn, group_id, Kind.VOLUME_GROUP)
            if group is not None:
                total = group.size_in_gbs - current + new_size
                if total > limits.MAX_GROUP_GBS:
                    raise InvalidParameter(
                        f"sizeInGBs: volume group {group_id} would exceed "
                        f"{limits.MAX_GROUP_GBS} GB."
                    )
                repo.update(conn, group, attrs=dict(group.attrs, size_in_gbs=total))
        volume_files.grow_image(self.ctx.settings.volume_path(res.id), new_size * limits.GIB)
        attrs["size_in_gbs"] = new_size
        attrs["resized_since_backup"] = True

    def delete_volume(self, caller: Caller, volume_id: str, if_match: str | None) -> None:
        with self.ctx.db.write() as conn:
            res = get_for_delete(conn, caller, Kind.VOLUME, volume_id, if_match)
            if res is None:
                return
            if res.parent_id:
                raise Conflict(
                    f"Volume {volume_id} is a member of volume group {res.parent_id}; remove "
                    "it from the group before deleting it."
                )
            refuse_if_held(conn, res, IncorrectState, "delete it later")
            if res.lifecycle_state in (PROVISIONING, RESTORING):
                raise IncorrectState(
                    f"Volume {volume_id} is {res.lifecycle_state}; delete it once it is AVAILABLE."
                )
            transition(conn, res, TERMINATING)
            drop_assignments_of(conn, res.id)
            job_rows.enqueue(conn, "delete_volume", res.id)
        self.ctx.wake_jobs()

    def change_volume_compartment(
        self, caller: Caller, volume_id: str, compartment_id: str
    ) -> repo.Resource:
        return move_compartment(self.ctx, caller, Kind.VOLUME, volume_id, compartment_id)

    def _check_fits(self, size_gbs: int) -> None:
        """Refuse up front a size the volume directory's filesystem cannot hold in one image
        file (ext4: just under 16 TiB) rather than leave a FAULTY volume or fail a resize."""
        most = volume_files.max_image_bytes(
            self.ctx.settings.volumes_dir, limits.MAX_VOLUME_GBS * limits.GIB
        )
        if size_gbs * limits.GIB > most:
            raise LimitExceeded(
                f"sizeInGBs: {size_gbs} GB is more than this server can hold: the filesystem "
                f"of {self.ctx.settings.volumes_dir} limits one file to {most // limits.GIB} GB "
                "(use XFS or btrfs for volumes up to 32 TB)."
            )

    def check_ad(self, ad: str) -> None:
        if ad not in self.ctx.settings.availability_domains:
            names = ", ".join(self.ctx.settings.availability_domains)
            raise InvalidParameter(
                f"availabilityDomain: {ad!r} is not an availability domain here ({names})."
            )

    # --- jobs -----------------------------------------------------------------------------

    def run_create_volume(self, job: JobContext) -> None:
        """Write the image (empty, a sparse copy, or a restore), then AVAILABLE."""
        self.provision(job, job.job.resource_id)

    def provision(self, job: JobContext, volume_id: str) -> None:
        """Make a PROVISIONING or RESTORING volume's image from its source, then AVAILABLE
        (and its source free) in one transaction."""
        with self.ctx.db.read() as conn:
            res = repo.get(conn, volume_id, Kind.VOLUME)
        if res is None or res.lifecycle_state not in (PROVISIONING, RESTORING):
            return
        path = self.ctx.settings.volume_path(volume_id)
        source = res.attrs.get("source_details") or {}
        if source.get("type") == "volume":
            self._clone_image(job, source["id"], path, res.size_in_gbs * limits.GIB)
        elif source.get("type") == "volumeBackup":
            self.restorer.restore_image(job, volume_id, source["id"])
        else:
            volume_files.create_image(path, res.size_in_gbs * limits.GIB)
        job.step("image_written")
        with self.ctx.db.write() as conn:
            transition(conn, res, AVAILABLE, attrs=dict(res.attrs, is_hydrated=True))
            release(conn, volume_id)

    def _clone_image(self, job: JobContext, source_id: str, path: Path, size: int) -> None:
        src_path = self.ctx.settings.volume_path(source_id)
        total = volume_files.allocated_bytes(src_path)
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            job.progress(done, total)

        volume_files.copy_sparse(src_path, path, size=size, progress=progress)
        job.progress(total, total, force=True)

    def fail_create_volume(self, job: Job, _exc: BaseException) -> None:
        self.mark_faulty([job.resource_id])

    def mark_faulty(self, volume_ids: list[str]) -> None:
        """Volumes whose image could not be made: the partial image goes first (freeing its
        space, which a full disk needs to record anything), then FAULTY, sources released."""
        with self.ctx.db.read() as conn:
            unmade = [
                res.id
                for res in repo.get_many(conn, volume_ids).values()
                if res.lifecycle_state in (PROVISIONING, RESTORING)
            ]
        for volume_id in unmade:
            volume_files.remove_image(self.ctx.settings.volume_path(volume_id))
        with self.ctx.db.write() as conn:
            for res in repo.get_many(conn, unmade).values():
                transition(conn, res, FAULTY)
                release(conn, res.id)

    def run_delete_volume(self, job: JobContext) -> None:
        volume_id = job.job.resource_id
        volume_files.remove_image(self.ctx.settings.volume_path(volume_id))
        with self.ctx.db.write() as conn:
            res = repo.get(conn, volume_id, Kind.VOLUME)
            if res is not None:
                finish_deletion(self.ctx, conn, res)
