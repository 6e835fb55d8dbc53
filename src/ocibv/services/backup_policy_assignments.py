"""Volume backup policy assignments: which policy backs up which asset (a volume or a volume
group; a group's schedules take volume group backups).

One policy per asset: assigning a second one is a 409 ``Conflict`` (delete the assignment
first). A volume in a group and the group cannot both have one. An assignment is a resource
row (``parent_id`` the asset, ``source_id`` the policy); deleting it, or deleting the asset,
removes the row.
"""

from __future__ import annotations

import sqlalchemy as sa

from ocibv.domain.errors import (
    Conflict,
    IncorrectState,
    InvalidParameter,
    RelatedResourceNotAuthorizedOrNotFound,
)
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE, TERMINATING
from ocibv.domain.ocid import new_ocid, ocid_type
from ocibv.services.backup_policies import VolumeBackupPolicyService
from ocibv.services.common import check_if_match, get_related, get_visible
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.requests import CreateVolumeBackupPolicyAssignmentDetails
from ocibv.store import resources as repo
from ocibv.store import scheduled_runs
from ocibv.store.tables import resources

ASSET_KINDS = (Kind.VOLUME, Kind.VOLUME_GROUP)


def assignments_of(conn: sa.Connection, asset_id: str) -> list[repo.Resource]:
    return repo.children(conn, Kind.VOLUME_BACKUP_POLICY_ASSIGNMENT, asset_id)


_EVERY = sa.select(resources.c.id).where(
    resources.c.kind == Kind.VOLUME_BACKUP_POLICY_ASSIGNMENT
)


def every_assignment(conn: sa.Connection) -> list[repo.Resource]:
    """Every assignment of every tenancy (the scheduler's work list)."""
    return list(repo.get_many(conn, list(conn.execute(_EVERY).scalars())).values())


def drop_assignments_of(conn: sa.Connection, asset_id: str) -> None:
    """An asset is being deleted: its assignment goes with it (as in OCI)."""
    for assignment in assignments_of(conn, asset_id):
        repo.delete(conn, assignment.id)
    scheduled_runs.forget_assets(conn, [asset_id])


def refuse_member_policies(
    conn: sa.Connection, group: repo.Resource, volume_ids: list[str]
) -> None:
    """409 when a group with a backup policy would get a member volume that has its own."""
    if not assignments_of(conn, group.id):
        return
    for volume_id in volume_ids:
        if assignments_of(conn, volume_id):
            raise Conflict(
                f"Volume {volume_id} has its own backup policy and volume group {group.id} has "
                "one; delete the volume's assignment before adding it to the group."
            )


class VolumeBackupPolicyAssignmentService:
    def __init__(self, ctx: ServiceContext, policies: VolumeBackupPolicyService) -> None:
        self.ctx = ctx
        self.policies = policies

    def create_volume_backup_policy_assignment(
        self, caller: Caller, details: CreateVolumeBackupPolicyAssignmentDetails
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            return self.assign(conn, caller, details["asset_id"], details["policy_id"])

    def assign(
        self,
        conn: sa.Connection,
        caller: Caller,
        asset_id: str,
        policy_id: str,
        policy_field: str = "policyId",
    ) -> repo.Resource:
        """Assign in the caller's transaction (CreateVolume's ``backupPolicyId`` uses it too,
        for a volume row inserted in that transaction); errors name ``assetId`` or
        ``policy_field``."""
        asset = self._asset(conn, caller, asset_id, "assetId")
        policy = self.policies.policy_for_assignment(conn, caller, policy_id, policy_field)
        existing = assignments_of(conn, asset.id)
        if existing:
            raise Conflict(
                f"{Kind(asset.kind).label} {asset.id} already has volume backup policy "
                f"{existing[0].source_id} assigned ({existing[0].id}); an asset has one policy: "
                "delete that assignment first."
            )
        self._check_group_rules(conn, asset)
        assignment = repo.Resource(
            id=new_ocid(Kind.VOLUME_BACKUP_POLICY_ASSIGNMENT, self.ctx.settings.region_key),
            kind=Kind.VOLUME_BACKUP_POLICY_ASSIGNMENT,
            tenancy_id=caller.tenancy_id,
            compartment_id=asset.compartment_id,
            display_name=policy.display_name,
            lifecycle_state=AVAILABLE,
            created_us=self.ctx.clock.now_us(),
            parent_id=asset.id,
            source_id=policy.id,
            attrs={"xrc_kms_key_id": None},
        )
        return repo.insert(conn, assignment)

    def _asset(
        self, conn: sa.Connection, caller: Caller, asset_id: str, field: str
    ) -> repo.Resource:
        kind = ocid_type(asset_id)
        if kind in ("bootvolume",):
            raise InvalidParameter(f"{field}: ocibv has no boot volumes; assign volumes or groups.")
        if kind not in ASSET_KINDS:
            raise RelatedResourceNotAuthorizedOrNotFound(
                f"{field}: {asset_id} is not a volume or volume group that exists or that you "
                "may use."
            )
        asset = get_related(conn, caller, Kind(kind), asset_id, field)
        if asset.lifecycle_state == TERMINATING:
            raise IncorrectState(f"{Kind(kind).label} {asset_id} is TERMINATING.")
        return asset

    def _check_group_rules(self, conn: sa.Connection, asset: repo.Resource) -> None:
        """A group with a policy and a member volume with its own may not coexist (OCI)."""
        if asset.kind == Kind.VOLUME and asset.parent_id and assignments_of(conn, asset.parent_id):
            raise Conflict(
                f"Volume {asset.id} is in volume group {asset.parent_id}, which has a backup "
                "policy; a member volume cannot have its own."
            )
        if asset.kind == Kind.VOLUME_GROUP:
            for volume_id in asset.volume_ids:
                if assignments_of(conn, volume_id):
                    raise Conflict(
                        f"Member volume {volume_id} of volume group {asset.id} has its own backup "
                        "policy; delete that assignment before assigning one to the group."
                    )

    def get_volume_backup_policy_assignment(
        self, caller: Caller, assignment_id: str
    ) -> repo.Resource:
        with self.ctx.db.read() as conn:
            return get_visible(conn, caller, Kind.VOLUME_BACKUP_POLICY_ASSIGNMENT, assignment_id)

    def get_volume_backup_policy_asset_assignment(
        self, caller: Caller, asset_id: str
    ) -> list[repo.Resource]:
        """The asset's assignment, as a list of zero or one."""
        with self.ctx.db.read() as conn:
            return [a for a in assignments_of(conn, asset_id) if a.tenancy_id == caller.tenancy_id]

    def delete_volume_backup_policy_assignment(
        self, caller: Caller, assignment_id: str, if_match: str | None
    ) -> None:
        with self.ctx.db.write() as conn:
            res = get_visible(conn, caller, Kind.VOLUME_BACKUP_POLICY_ASSIGNMENT, assignment_id)
            check_if_match(res, if_match)
            repo.delete(conn, res.id)
