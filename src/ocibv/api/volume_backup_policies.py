"""Volume backup policy and policy assignment operations (spec §1.5, §1.6)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from starlette.responses import Response
from starlette.routing import Route

from ocibv.api.call import Call
from ocibv.api.endpoint import ApiContext, deleted_response
from ocibv.api.models import refuse_unbuilt
from ocibv.api.policy_models import (
    CreateVolumeBackupPolicyAssignmentDetails,
    CreateVolumeBackupPolicyDetails,
    UpdateVolumeBackupPolicyDetails,
)
from ocibv.api.render import present
from ocibv.api.wire import json_response, timestamp
from ocibv.domain import limits
from ocibv.domain.errors import OciError
from ocibv.services.backup_policies import VolumeBackupPolicyService
from ocibv.services.backup_policy_assignments import VolumeBackupPolicyAssignmentService
from ocibv.store.resources import Resource

T = TypeVar("T")

_SCHEDULE_FIELDS = {
    "backup_type": "backupType",
    "offset_seconds": "offsetSeconds",
    "period": "period",
    "offset_type": "offsetType",
    "hour_of_day": "hourOfDay",
    "day_of_week": "dayOfWeek",
    "day_of_month": "dayOfMonth",
    "month": "month",
    "retention_seconds": "retentionSeconds",
    "time_zone": "timeZone",
    "is_prevent_deletion_enabled": "isPreventDeletionEnabled",
    "is_retention_lock_enabled": "isRetentionLockEnabled",
}


def render_schedule(schedule: dict[str, Any]) -> dict[str, Any]:
    out = {wire: schedule[key] for key, wire in _SCHEDULE_FIELDS.items() if key in schedule}
    period = schedule.get("retention_period")
    if period:
        out["retentionPeriod"] = {
            "retentionTimeUnit": period["retention_time_unit"],
            "retentionTimeAmount": period["retention_time_amount"],
        }
    return out


def render_policy(res: Resource) -> dict[str, Any]:
    a = res.attrs
    return {
        "id": res.id,
        "displayName": res.display_name,
        "schedules": [render_schedule(s) for s in a.get("schedules") or []],
        "destinationRegion": a.get("destination_region"),
        "timeCreated": timestamp(res.created_us),
        "compartmentId": res.compartment_id or None,
        "definedTags": a.get("defined_tags") or {},
        "freeformTags": a.get("freeform_tags") or {},
    }


def render_assignment(res: Resource) -> dict[str, Any]:
    return {
        "id": res.id,
        "assetId": res.parent_id,
        "policyId": res.source_id,
        "timeCreated": timestamp(res.created_us),
        "xrcKmsKeyId": res.attrs.get("xrc_kms_key_id"),
    }


def _one(call: Call, res: Resource, render: Callable[[Resource], dict[str, Any]]) -> Response:
    body = present(render(res))
    return json_response(body, request_id=call.request_id, headers={"etag": res.etag})


def _many(
    call: Call,
    items: list[Resource],
    next_page: str | None,
    render: Callable[[Resource], dict[str, Any]],
) -> Response:
    headers = {"opc-next-page": next_page} if next_page else None
    bodies = [present(render(r)) for r in items]
    return json_response(bodies, request_id=call.request_id, headers=headers)


@contextmanager
def _indexed_fields() -> Iterator[None]:
    """Error messages name list items as ``schedules[0].period`` (not ``schedules.0.period``)."""
    try:
        yield
    except OciError as error:
        error.message = re.sub(r"\.(\d+)(?=[.:])", r"[\1]", error.message)
        raise


def routes(
    api: ApiContext,
    policies: VolumeBackupPolicyService,
    assignments: VolumeBackupPolicyAssignmentService,
) -> list[Route]:
    def create_volume_backup_policy(call: Call) -> Response:
        with _indexed_fields():
            details, _ = call.model(CreateVolumeBackupPolicyDetails)
        res = policies.create_volume_backup_policy(call.caller, details.fields(), call.retry_token)
        return _one(call, res, render_policy)

    def get_volume_backup_policy(call: Call) -> Response:
        res = policies.get_volume_backup_policy(call.caller, call.path("policyId"))
        return _one(call, res, render_policy)

    def list_volume_backup_policies(call: Call) -> Response:
        items, next_page = policies.list_volume_backup_policies(
            call.caller,
            call.query("compartmentId"),
            call.query_int("limit", 1, limits.MAX_LIMIT) or limits.DEFAULT_LIMIT,
            call.query("page"),
        )
        return _many(call, items, next_page, render_policy)

    def update_volume_backup_policy(call: Call) -> Response:
        with _indexed_fields():
            details, _ = call.model(UpdateVolumeBackupPolicyDetails)
        res = policies.update_volume_backup_policy(
            call.caller, call.path("policyId"), details.fields(), call.if_match
        )
        return _one(call, res, render_policy)

    def delete_volume_backup_policy(call: Call) -> Response:
        policies.delete_volume_backup_policy(call.caller, call.path("policyId"), call.if_match)
        return deleted_response(call)

    def create_volume_backup_policy_assignment(call: Call) -> Response:
        details, raw = call.model(CreateVolumeBackupPolicyAssignmentDetails)
        refuse_unbuilt(raw, "xrcKmsKeyId")
        res = assignments.create_volume_backup_policy_assignment(call.caller, details.fields())
        return _one(call, res, render_assignment)

    def get_volume_backup_policy_asset_assignment(call: Call) -> Response:
        asset_id = call.query("assetId", required=True) or ""
        call.query_int("limit", 1, limits.MAX_LIMIT)
        items = assignments.get_volume_backup_policy_asset_assignment(call.caller, asset_id)
        return _many(call, items, None, render_assignment)

    def get_volume_backup_policy_assignment(call: Call) -> Response:
        res = assignments.get_volume_backup_policy_assignment(
            call.caller, call.path("policyAssignmentId")
        )
        return _one(call, res, render_assignment)

    def delete_volume_backup_policy_assignment(call: Call) -> Response:
        assignments.delete_volume_backup_policy_assignment(
            call.caller, call.path("policyAssignmentId"), call.if_match
        )
        return deleted_response(call)

    policy = "/volumeBackupPolicies/{policyId}"
    assignment = "/volumeBackupPolicyAssignments/{policyAssignmentId}"
    return [
        Route("/volumeBackupPolicies", api.endpoint(create_volume_backup_policy), methods=["POST"]),
        Route(
            "/volumeBackupPolicies",
            api.endpoint(list_volume_backup_policies),
            methods=["GET"],
        ),
        Route(policy, api.endpoint(get_volume_backup_policy), methods=["GET"]),
        Route(policy, api.endpoint(update_volume_backup_policy), methods=["PUT"]),
        Route(policy, api.endpoint(delete_volume_backup_policy), methods=["DELETE"]),
        Route(
            "/volumeBackupPolicyAssignments",
            api.endpoint(create_volume_backup_policy_assignment),
            methods=["POST"],
        ),
        Route(
            "/volumeBackupPolicyAssignments",
            api.endpoint(get_volume_backup_policy_asset_assignment),
            methods=["GET"],
        ),
        Route(
            assignment,
            api.endpoint(get_volume_backup_policy_assignment),
            methods=["GET"],
        ),
        Route(assignment, api.endpoint(delete_volume_backup_policy_assignment), methods=["DELETE"]),
    ]
