"""Resources as OCI wire JSON (spec §2). Only this module builds response dictionaries.

Oracle's schemas have no nullable property: an optional field without a value is omitted,
never sent as ``null`` (``resource`` and ``tenancy`` drop them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ocibv.api.wire import timestamp
from ocibv.store.identity import Tenancy
from ocibv.store.resources import Resource


def _common(res: Resource) -> dict[str, Any]:
    return {
        "id": res.id,
        "compartmentId": res.compartment_id,
        "displayName": res.display_name,
        "lifecycleState": res.lifecycle_state,
        "timeCreated": timestamp(res.created_us),
        "freeformTags": res.attrs.get("freeform_tags") or {},
        "definedTags": res.attrs.get("defined_tags") or {},
    }


def _autotune(policy: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"autotuneType": policy["autotune_type"]}
    if policy.get("max_vpus_per_gb") is not None:
        out["maxVpusPerGB"] = policy["max_vpus_per_gb"]
    return out


def volume(res: Resource) -> dict[str, Any]:
    a = res.attrs
    size = int(a["size_in_gbs"])
    return {
        **_common(res),
        "availabilityDomain": res.availability_domain,
        "systemTags": a.get("system_tags") or {},
        "sizeInGBs": size,
        "sizeInMBs": size * 1024,
        "vpusPerGB": a.get("vpus_per_gb"),
        "isHydrated": bool(a.get("is_hydrated")),
        "kmsKeyId": a.get("kms_key_id"),
        "sourceDetails": a.get("source_details"),
        "volumeGroupId": res.parent_id,
        "clusterPlacementGroupId": a.get("cluster_placement_group_id"),
        "isAutoTuneEnabled": bool(a.get("is_auto_tune_enabled")),
        "autoTunedVpusPerGB": a.get("auto_tuned_vpus_per_gb"),
        "autotunePolicies": [_autotune(p) for p in a.get("autotune_policies") or []],
        "blockVolumeReplicas": a.get("block_volume_replicas"),
        "isReservationsEnabled": bool(a.get("is_reservations_enabled")),
    }


def volume_group(res: Resource) -> dict[str, Any]:
    a = res.attrs
    size = int(a.get("size_in_gbs", 0))
    return {
        **_common(res),
        "availabilityDomain": res.availability_domain,
        "sizeInGBs": size,
        "sizeInMBs": size * 1024,
        "volumeIds": list(a.get("volume_ids", [])),
        "sourceDetails": a.get("source_details"),
        "isHydrated": bool(a.get("is_hydrated")),
        "volumeGroupReplicas": a.get("volume_group_replicas"),
    }


def _retention(a: dict[str, Any]) -> dict[str, Any]:
    period = a.get("retention_period")
    return {
        "retentionPeriod": {
            "retentionTimeUnit": period["retention_time_unit"],
            "retentionTimeAmount": period["retention_time_amount"],
        }
        if period
        else None,
        "timeRetentionExpiresAt": timestamp(a.get("retention_expires_us")),
        "isPreventDeletionEnabled": a.get("is_prevent_deletion_enabled"),
        "isRetentionLockEnabled": a.get("is_retention_lock_enabled"),
        "isIndefiniteRetentionEnabled": a.get("is_indefinite_retention_enabled"),
    }


def _mb(n_bytes: int) -> int:
    return -(-n_bytes // (1024 * 1024))


def _gb(n_bytes: int) -> int:
    return -(-n_bytes // (1024 * 1024 * 1024))


def volume_backup(res: Resource) -> dict[str, Any]:
    a = res.attrs
    size = int(a["size_in_gbs"])
    unique = int(a.get("unique_bytes") or 0)
    return {
        **_common(res),
        "systemTags": a.get("system_tags") or {},
        "type": a["type"],
        "volumeId": a["volume_id"],
        "volumeGroupBackupId": a.get("volume_group_backup_id"),
        "sourceType": a.get("source_type", "MANUAL"),
        "sourceVolumeBackupId": res.source_id,
        "expirationTime": timestamp(a.get("expiration_us")),
        "timeRequestReceived": timestamp(a.get("time_request_received_us")),
        "kmsKeyId": a.get("kms_key_id"),
        "sizeInGBs": size,
        "sizeInMBs": size * 1024,
        "uniqueSizeInGBs": _gb(unique),
        "uniqueSizeInMbs": _mb(unique),
        **_retention(a),
    }


def volume_group_backup(res: Resource) -> dict[str, Any]:
    a = res.attrs
    size = int(a["size_in_gbs"])
    unique = int(a.get("unique_bytes") or 0)
    return {
        **_common(res),
        "type": a["type"],
        "volumeBackupIds": list(a.get("volume_backup_ids", [])),
        "volumeGroupId": res.parent_id,
        "sourceVolumeGroupBackupId": res.source_id,
        "sourceType": a.get("source_type", "MANUAL"),
        "expirationTime": timestamp(a.get("expiration_us")),
        "timeRequestReceived": timestamp(a.get("time_request_received_us")),
        "sizeInGBs": size,
        "sizeInMBs": size * 1024,
        "uniqueSizeInGbs": _gb(unique),
        "uniqueSizeInMbs": _mb(unique),
        **_retention(a),
    }


def compartment(res: Resource) -> dict[str, Any]:
    return {
        "id": res.id,
        "compartmentId": res.compartment_id,
        "name": res.display_name,
        "description": res.attrs.get("description", ""),
        "timeCreated": timestamp(res.created_us),
        "lifecycleState": res.lifecycle_state,
        "isAccessible": True,
        "freeformTags": res.attrs.get("freeform_tags") or {},
        "definedTags": res.attrs.get("defined_tags") or {},
    }


def tenancy(t: Tenancy, home_region_key: str) -> dict[str, Any]:
    return present({
        "id": t.id,
        "name": t.name,
        "description": t.description or t.name,
        "homeRegionKey": home_region_key,
        "freeformTags": {},
        "definedTags": {},
    })


RENDERERS: dict[str, Callable[[Resource], dict[str, Any]]] = {
    "volume": volume,
    "volumegroup": volume_group,
    "compartment": compartment,
    "volumebackup": volume_backup,
    "volumegroupbackup": volume_group_backup,
}


def present(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` without those that have no value (the contract has no nullable property)."""
    return {name: value for name, value in fields.items() if value is not None}


def resource(res: Resource) -> dict[str, Any]:
    """The wire JSON of ``res``, without the fields that have no value."""
    return present(RENDERERS[res.kind](res))
