"""Volumes: create (empty or clone), get, list, update (grow), delete, change compartment.

A volume's data is a sparse image file; its lifecycle never runs ahead of that file:
AVAILABLE only once the image exists with every byte of its source.
"""

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
from ocibv.engine import volume_files
from ocibv.jobs.runner import JobContext
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
from ocibv.store import jobs as job_rows
from ocibv.store import resources as repo

UPDATABLE = (
    "vpus_per_gb",
    "is_auto_tune_enabled",
    "autotune_policies",
    "is_reservations_enabled",
    "freeform_tags",
    "defined_tags",
)


def new_volume(
    caller: Caller,
    *,
    compartment_id: str,
    availability_domain: str,
    size_in_gbs: int,
    display_name: str | None,
    state: str,
    source_details: dict[str, Any] | None,
    attrs: dict[str, Any] | None = None,
) -> repo.Resource:
    """An unsaved volume row with every response field defaulted."""
    volume_id = new_ocid("volume", "phx")
    base: dict[str, Any] = {
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
        kind="volume",
        tenancy_id=caller.tenancy_id,
        compartment_id=compartment_id,
        availability_domain=availability_domain,
        display_name=display_name or f"volume{volume_id[-8:]}",
        lifecycle_state=state,
        attrs=base,
    )


def _at_least(size_gbs: int | None, source_gbs: int, what: str) -> int:
    if size_gbs is not None and size_gbs < source_gbs:
        raise InvalidParameter(f"sizeInGBs: {size_gbs} is smaller than {what} ({source_gbs} GB).")
    return size_gbs or source_gbs


class VolumeService:
    def __init__(self, ctx: ServiceContext, tokens: PageTokens) -> None:
        self.ctx = ctx
        self.tokens = tokens
        # Restores plug in here: ``restore_source(conn, caller, backup_id, field) -> GB`` and
        # ``restore_image(job, volume_id, backup_id)`` (set by the container).
        self.backups: Any = None

    # --- operations -------------------------------------------------------------------------

    def create_volume(
        self, caller: Caller, details: dict[str, Any], retry_token: str | None
    ) -> repo.Resource:
        return create_once(
            self.ctx,
            caller,
            "create_volume",
            retry_token,
            details,
            lambda conn: self._create_volume(conn, caller, details),
        )

    def _create_volume(self, conn: Any, caller: Caller, details: dict[str, Any]) -> repo.Resource:
        require_compartment(conn, caller, details["compartment_id"])
        source = details.get("source_details")
        ad = details.get("availability_domain")
        size_gbs = details.get("size_in_gbs")
        if size_gbs is None and details.get("size_in_mbs") is not None:
            size_gbs = details["size_in_mbs"] // 1024
        job_payload: dict[str, Any] = {}
        state = PROVISIONING
        if source is None and details.get("volume_backup_id"):
            source = {"type": "volumeBackup", "id": details["volume_backup_id"]}
        if source is not None and source["type"] == "volume":
            src = get_related(conn, caller, "volume", source["id"], "sourceDetails.id")
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
            ad = src.availability_domain
            size_gbs = _at_least(size_gbs, int(src.attrs["size_in_gbs"]), "the source volume")
            job_payload = {"clone_from": src.id}
        elif source is not None and source["type"] == "volumeBackup" and self.backups:
            backup_gbs = self.backups.restore_source(conn, caller, source["id"], "sourceDetails.id")
            size_gbs = _at_least(size_gbs, backup_gbs, "the backed-up volume")
            job_payload = {"restore_from": source["id"]}
            state = RESTORING
        elif source is not None:
            raise InvalidParameter(
                f"sourceDetails.type: {source['type']!r} is not supported here "
                "(volume, volumeBackup)."
            )
        if ad is None:
            raise InvalidParameter("availabilityDomain: required unless cloning a volume.")
        self._check_ad(ad)
        size_gbs = size_gbs or limits.DEFAULT_VOLUME_GBS
        self._check_fits(size_gbs)
        res = new_volume(
            caller,
            compartment_id=details["compartment_id"],
            availability_domain=ad,
            size_in_gbs=size_gbs,
            display_name=details.get("display_name"),
            state=state,
            source_details=source,
            attrs={k: details.get(k) for k in UPDATABLE},
        )
        res.source_id = job_payload.get("clone_from") or job_payload.get("restore_from")
        repo.insert(conn, res)
        job_rows.enqueue(conn, "create_volume", res.id, job_payload)
        return res

    def get_volume(self, caller: Caller, volume_id: str) -> repo.Resource:
        return get_one(self.ctx, caller, "volume", volume_id)

    def list_volumes(
        self, caller: Caller, request: ListRequest
    ) -> tuple[list[repo.Resource], str | None]:
        return list_in_compartment(self.ctx, self.tokens, caller, "volume", request, ad_scoped=True)

    def update_volume(
        self, caller: Caller, volume_id: str, details: dict[str, Any], if_match: str | None
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            res = get_for_update(conn, caller, "volume", volume_id, if_match)
            attrs = dict(res.attrs)
            for key in UPDATABLE:
                if details.get(key) is not None:
                    attrs[key] = details[key]
            new_size = details.get("size_in_gbs")
            if new_size is not None and new_size != attrs["size_in_gbs"]:
                self._grow(conn, res, attrs, int(new_size))
            repo.update(
                conn, res, display_name=details.get("display_name") or res.display_name, attrs=attrs
            )
            return res

    def _grow(self, conn: Any, res: repo.Resource, attrs: dict[str, Any], new_size: int) -> None:
        current = int(attrs["size_in_gbs"])
        if new_size < current:
            raise InvalidParameter(
                f"sizeInGBs: a volume can only grow; {new_size} is smaller than {current}."
            )
        if res.lifecycle_state != AVAILABLE or res.busy:
            raise IncorrectState(
                f"Volume {res.id} is {res.busy or res.lifecycle_state}; resize it when AVAILABLE."
            )
        self._check_fits(new_size)
        group_id = res.parent_id
        if group_id:
            group = repo.get(conn, group_id, "volumegroup")
            if group is not None:
                total = int(group.attrs.get("size_in_gbs", 0)) - current + new_size
                if total > limits.MAX_GROUP_GBS:
                    raise InvalidParameter(
                        f"sizeInGBs: volume group {group_id} would exceed "
                        f"{limits.MAX_GROUP_GBS} GB."
                    )
                group_attrs = dict(group.attrs, size_in_gbs=total)
                repo.update(conn, group, attrs=group_attrs)
        volume_files.grow_image(self.ctx.settings.volume_path(res.id), new_size * limits.GIB)
        attrs["size_in_gbs"] = new_size
        attrs["resized_since_backup"] = True

    def delete_volume(self, caller: Caller, volume_id: str, if_match: str | None) -> None:
        with self.ctx.db.write() as conn:
            res = get_for_delete(conn, caller, "volume", volume_id, if_match)
            if res is None:
                return
            if res.parent_id:
                raise Conflict(
                    f"Volume {volume_id} is a member of volume group {res.parent_id}; remove "
                    "it from the group before deleting it."
                )
            if res.busy:
                raise IncorrectState(f"Volume {volume_id} is busy ({res.busy}); delete it later.")
            copies = repo.being_copied_from(conn, volume_id)
            if copies:
                raise IncorrectState(
                    f"Volume {volume_id} is being cloned into {copies[0].id}; delete it later."
                )
            if res.lifecycle_state in (PROVISIONING, RESTORING):
                raise IncorrectState(
                    f"Volume {volume_id} is {res.lifecycle_state}; delete it once it is AVAILABLE."
                )
            transition(conn, res, TERMINATING)
            job_rows.enqueue(conn, "delete_volume", res.id, {})
        self.ctx.wake_jobs()

    def change_volume_compartment(
        self, caller: Caller, volume_id: str, compartment_id: str
    ) -> repo.Resource:
        return move_compartment(self.ctx, caller, "volume", volume_id, compartment_id)

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

    def _check_ad(self, ad: str) -> None:
        if ad not in self.ctx.settings.availability_domains:
            names = ", ".join(self.ctx.settings.availability_domains)
            raise InvalidParameter(
                f"availabilityDomain: {ad!r} is not an availability domain here ({names})."
            )

    # --- jobs -----------------------------------------------------------------------------

    def run_create_volume(self, job: JobContext) -> None:
        """Write the image (empty, a sparse copy, or a restore), then AVAILABLE."""
        payload = job.job.payload
        self.provision(
            job,
            job.job.resource_id,
            clone_from=payload.get("clone_from"),
            restore_from=payload.get("restore_from"),
        )

    def provision(
        self,
        job: JobContext,
        volume_id: str,
        *,
        clone_from: str | None = None,
        restore_from: str | None = None,
    ) -> None:
        with self.ctx.db.read() as conn:
            res = repo.get(conn, volume_id, "volume")
        if res is None or res.lifecycle_state not in (PROVISIONING, RESTORING):
            return
        path = self.ctx.settings.volume_path(volume_id)
        size = int(res.attrs["size_in_gbs"]) * limits.GIB
        if clone_from:
            self._clone_image(job, clone_from, path, size)
        elif restore_from:
            self.backups.restore_image(job, volume_id, restore_from)
        else:
            volume_files.create_image(path, size)
        self.finish_provisioning(volume_id)

    def _clone_image(self, job: JobContext, source_id: str, path: Any, size: int) -> None:
        src_path = self.ctx.settings.volume_path(source_id)
        total = volume_files.allocated_bytes(src_path)
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            job.progress(done, total)

        volume_files.copy_sparse(src_path, path, size=size, progress=progress)
        job.progress(total, total, force=True)

    def finish_provisioning(self, volume_id: str) -> bool:
        with self.ctx.db.write() as conn:
            res = repo.get(conn, volume_id, "volume")
            if res is None:
                return False
            attrs = dict(res.attrs, is_hydrated=True)
            return transition(
                conn,
                res,
                AVAILABLE,
                attrs=attrs,
            )

    def run_delete_volume(self, job: JobContext) -> None:
        volume_id = job.job.resource_id
        volume_files.remove_image(self.ctx.settings.volume_path(volume_id))
        with self.ctx.db.write() as conn:
            res = repo.get(conn, volume_id, "volume")
            if res is not None:
                transition(
                    conn,
                    res,
                    TERMINATED,
                    purge_after_us=tombstone_until(self.ctx.settings.tombstone_seconds),
                )

    def mark_faulty(self, volume_id: str) -> None:
        with self.ctx.db.write() as conn:
            res = repo.get(conn, volume_id, "volume")
            if res is not None:
                transition(conn, res, FAULTY)
