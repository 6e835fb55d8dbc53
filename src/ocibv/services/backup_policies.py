"""Volume backup policies: create, get, list, update, delete; Oracle's gold, silver and bronze.

A user-defined policy is a resource row (``lifecycle_state`` is always AVAILABLE: policies
have no lifecycle in OCI); delete removes the row. The Oracle-defined policies are not rows:
they exist, identical, in every tenancy, are listed only when no compartment is given, and
can be neither changed nor deleted.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa

from ocibv.domain import backup_schedules, retention
from ocibv.domain.backup_schedules import ORACLE_CREATED, ORACLE_POLICIES
from ocibv.domain.errors import Conflict, InvalidParameter, RelatedResourceNotAuthorizedOrNotFound
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE
from ocibv.domain.ocid import is_ocid, new_ocid
from ocibv.domain.retention import Retention
from ocibv.services.backup_rules import tags_of
from ocibv.services.common import (
    PageTokens,
    check_if_match,
    create_once,
    get_for_update,
    get_visible,
    require_compartment,
)
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.listing import ListRequest, list_resources
from ocibv.services.requests import (
    BackupSchedule,
    CreateVolumeBackupPolicyDetails,
    UpdateVolumeBackupPolicyDetails,
)
from ocibv.store import resources as repo
from ocibv.store.tables import resources

_ORACLE_CREATED_US = int(datetime.fromisoformat(ORACLE_CREATED).timestamp() * 1_000_000)


def oracle_policy(policy_id: str) -> repo.Resource | None:
    """An Oracle-defined policy as a (never stored) resource, or None."""
    found = ORACLE_POLICIES.get(policy_id)
    if found is None:
        return None
    name, schedules = found
    return repo.Resource(
        id=policy_id,
        kind=Kind.VOLUME_BACKUP_POLICY,
        tenancy_id="",
        compartment_id="",
        display_name=name,
        lifecycle_state=AVAILABLE,
        created_us=_ORACLE_CREATED_US,
        etag=hashlib.sha256(policy_id.encode()).hexdigest()[:32],
        attrs={
            "schedules": [dict(s) for s in schedules],
            "destination_region": None,
            "oracle_defined": True,
            "freeform_tags": {},
            "defined_tags": {},
        },
    )


def is_oracle_defined(res: repo.Resource) -> bool:
    return bool(res.attrs.get("oracle_defined"))


def clean_schedules(schedules: list[BackupSchedule] | None) -> list[dict[str, object]]:
    """Schedules as stored: the given fields, ``timeZone`` defaulted to UTC; validated."""
    cleaned: list[dict[str, object]] = []
    for i, schedule in enumerate(schedules or []):
        item: dict[str, object] = {k: v for k, v in schedule.items() if v is not None}
        item.setdefault("time_zone", "UTC")
        try:  # what the schedule's backups will carry must be valid on a backup
            retention.validate(Retention.from_attrs(item))
        except InvalidParameter as exc:
            raise InvalidParameter(f"schedules[{i}].{exc.message}") from None
        cleaned.append(item)
    backup_schedules.validate(cleaned)
    return cleaned


def check_destination(region: str | None) -> None:
    if region not in (None, "", "none"):
        raise InvalidParameter(
            f"destinationRegion: {region!r}: ocibv does not copy backups across regions yet; "
            "omit destinationRegion (or give none)."
        )


def policies_of(conn: sa.Connection, policy_ids: set[str]) -> dict[str, repo.Resource]:
    """Policies by id (Oracle-defined ones included) for the scheduler."""
    found = {pid: res for pid in policy_ids if (res := oracle_policy(pid)) is not None}
    found.update(repo.get_many(conn, [p for p in policy_ids if p not in found]))
    return found


class VolumeBackupPolicyService:
    def __init__(self, ctx: ServiceContext, tokens: PageTokens) -> None:
        self.ctx = ctx
        self.tokens = tokens

    def create_volume_backup_policy(
        self, caller: Caller, details: CreateVolumeBackupPolicyDetails, retry_token: str | None
    ) -> repo.Resource:
        return create_once(
            self.ctx, caller, "create_volume_backup_policy", retry_token, details, self._create
        )

    def _create(
        self, conn: sa.Connection, caller: Caller, details: CreateVolumeBackupPolicyDetails
    ) -> repo.Resource:
        require_compartment(conn, caller, details["compartment_id"])
        check_destination(details.get("destination_region"))
        schedules = clean_schedules(details.get("schedules"))
        now = self.ctx.clock.now()
        policy = repo.Resource(
            id=new_ocid(Kind.VOLUME_BACKUP_POLICY, self.ctx.settings.region_key),
            kind=Kind.VOLUME_BACKUP_POLICY,
            tenancy_id=caller.tenancy_id,
            compartment_id=details["compartment_id"],
            display_name=details.get("display_name")
            or f"volumebackuppolicy{now.strftime('%Y%m%d%H%M%S')}",
            lifecycle_state=AVAILABLE,
            created_us=self.ctx.clock.now_us(),
            attrs={
                "schedules": schedules,
                "destination_region": None,
                "freeform_tags": {},
                "defined_tags": {},
                **tags_of(details),
            },
        )
        return repo.insert(conn, policy)

    def get_volume_backup_policy(self, caller: Caller, policy_id: str) -> repo.Resource:
        oracle = oracle_policy(policy_id)
        if oracle is not None:
            return oracle
        with self.ctx.db.read() as conn:
            return get_visible(conn, caller, Kind.VOLUME_BACKUP_POLICY, policy_id)

    def list_volume_backup_policies(
        self, caller: Caller, compartment_id: str | None, limit: int, page: str | None
    ) -> tuple[list[repo.Resource], str | None]:
        """A compartment's policies; without a compartment, the Oracle-defined ones."""
        if compartment_id is None:
            return self._oracle_page(limit, page)
        request = ListRequest(filters={"compartment_id": compartment_id}, limit=limit, page=page)
        with self.ctx.db.read() as conn:
            require_compartment(conn, caller, compartment_id)
            return list_resources(conn, self.tokens, caller, Kind.VOLUME_BACKUP_POLICY, request)

    def _oracle_page(self, limit: int, page: str | None) -> tuple[list[repo.Resource], str | None]:
        scope = "oracle-defined volume backup policies"
        start = int(self.tokens.decode(page, scope)[0]) if page else 0
        every = [p for pid in ORACLE_POLICIES if (p := oracle_policy(pid)) is not None]
        items = every[start : start + limit]
        more = start + limit < len(every)
        return items, self.tokens.encode((start + limit,), scope) if more else None

    def update_volume_backup_policy(
        self,
        caller: Caller,
        policy_id: str,
        details: UpdateVolumeBackupPolicyDetails,
        if_match: str | None,
    ) -> repo.Resource:
        self._refuse_oracle(policy_id, "changed")
        with self.ctx.db.write() as conn:
            res = get_for_update(conn, caller, Kind.VOLUME_BACKUP_POLICY, policy_id, if_match)
            attrs = dict(res.attrs)
            attrs.update(tags_of(details))
            if "destination_region" in details:
                check_destination(details.get("destination_region"))
            if details.get("schedules") is not None:
                attrs["schedules"] = clean_schedules(details.get("schedules"))
                # a changed schedule starts now: its past instants are not "missed"
                attrs["schedules_since_us"] = self.ctx.clock.now_us()
            repo.update(
                conn, res, display_name=details.get("display_name") or res.display_name, attrs=attrs
            )
            return res

    def delete_volume_backup_policy(
        self, caller: Caller, policy_id: str, if_match: str | None
    ) -> None:
        self._refuse_oracle(policy_id, "deleted")
        with self.ctx.db.write() as conn:
            res = get_visible(conn, caller, Kind.VOLUME_BACKUP_POLICY, policy_id)
            check_if_match(res, if_match)
            assigned = conn.execute(
                sa.select(resources.c.parent_id).where(
                    resources.c.kind == Kind.VOLUME_BACKUP_POLICY_ASSIGNMENT,
                    resources.c.source_id == policy_id,
                )
            ).scalars().all()
            if assigned:
                raise Conflict(
                    f"Volume backup policy {policy_id} is assigned to {len(assigned)} asset(s) "
                    f"({', '.join(sorted(assigned)[:3])}); delete those assignments first."
                )
            repo.delete(conn, res.id)

    # --- for assignments --------------------------------------------------------------------

    def policy_for_assignment(
        self, conn: sa.Connection, caller: Caller, policy_id: str, field: str = "policyId"
    ) -> repo.Resource:
        """The policy an assignment names (Oracle-defined or the caller's); else 400."""
        oracle = oracle_policy(policy_id)
        if oracle is not None:
            return oracle
        res = repo.get(conn, policy_id, Kind.VOLUME_BACKUP_POLICY) if is_ocid(policy_id) else None
        if res is None or res.tenancy_id != caller.tenancy_id:
            raise RelatedResourceNotAuthorizedOrNotFound(
                f"{field}: volume backup policy {policy_id} not found or not authorized."
            )
        return res

    @staticmethod
    def _refuse_oracle(policy_id: str, verb: str) -> None:
        res = oracle_policy(policy_id)
        if res is not None:
            raise Conflict(
                f"Volume backup policy {policy_id} ({res.display_name}) is Oracle-defined; it "
                f"cannot be {verb}. Create a user-defined policy instead."
            )
