"""Rules shared by volume backups and volume group backups: new rows, retention, deletion."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ocibv.domain import retention
from ocibv.domain.errors import IncorrectState
from ocibv.domain.lifecycle import COMMITTED, CREATING, REQUEST_RECEIVED
from ocibv.domain.ocid import new_ocid
from ocibv.domain.retention import Retention
from ocibv.services.backup_runs import RETENTION_FIELDS, point_in_time
from ocibv.services.context import ServiceContext
from ocibv.store import resources as repo

IN_PROGRESS = (REQUEST_RECEIVED, CREATING, COMMITTED)


def _expiry_us(ctx: ServiceContext, attrs: dict[str, Any], created_us: int) -> int | None:
    moment = datetime.fromtimestamp(created_us / 1e6, tz=UTC)
    expires = Retention.from_attrs(attrs).expires_at(moment, ctx.settings.retention_day_seconds)
    return int(expires.timestamp() * 1_000_000) if expires else None


def retention_attrs(details: dict[str, Any]) -> dict[str, Any]:
    """The retention fields of a create request, validated."""
    attrs = {key: details.get(key) for key in RETENTION_FIELDS}
    retention.validate(Retention.from_attrs(attrs))
    return attrs


def with_expiry(ctx: ServiceContext, attrs: dict[str, Any], created_us: int) -> dict[str, Any]:
    return dict(attrs, retention_expires_us=_expiry_us(ctx, attrs, created_us))


def new_volume_backup(
    ctx: ServiceContext,
    volume: repo.Resource,
    *,
    display_name: str | None,
    requested_type: str,
    base_backup_id: str | None,
    created_us: int,
    state: str,
    retention_values: dict[str, Any],
    group_backup_id: str | None = None,
    tags: dict[str, Any] | None = None,
) -> repo.Resource:
    """An unsaved VolumeBackup row for ``volume`` (in the volume's compartment)."""
    backup_id = new_ocid("volumebackup", ctx.settings.region_key)
    attrs: dict[str, Any] = {
        "volume_id": volume.id,
        "volume_group_backup_id": group_backup_id,
        "requested_type": requested_type,
        "type": "FULL" if requested_type == "FULL" or base_backup_id is None else "INCREMENTAL",
        "base_backup_id": base_backup_id,
        "source_type": "MANUAL",
        "size_in_gbs": int(volume.attrs["size_in_gbs"]),
        "unique_bytes": 0,
        "time_request_received_us": created_us,
        "kms_key_id": None,
        "freeform_tags": dict(volume.attrs.get("freeform_tags") or {}),
        "defined_tags": dict(volume.attrs.get("defined_tags") or {}),
        "system_tags": {},
        **retention_values,
    }
    if tags:
        attrs.update({k: v for k, v in tags.items() if v is not None})
    return repo.Resource(
        id=backup_id,
        kind="volumebackup",
        tenancy_id=volume.tenancy_id,
        compartment_id=volume.compartment_id,
        display_name=display_name or f"{volume.display_name} backup",
        lifecycle_state=state,
        created_us=created_us,
        parent_id=volume.id,
        attrs=with_expiry(ctx, attrs, created_us),
    )


def updated_attrs(
    ctx: ServiceContext, res: repo.Resource, details: dict[str, Any], what: str
) -> dict[str, Any]:
    """New attrs for an update of tags and retention; a lock refuses weakening (409)."""
    attrs = dict(res.attrs)
    for key in ("freeform_tags", "defined_tags", *RETENTION_FIELDS):
        if key in details and (details[key] is not None or key in RETENTION_FIELDS):
            attrs[key] = details[key]
    old, new = Retention.from_attrs(res.attrs), Retention.from_attrs(attrs)
    now = datetime.now(UTC)
    moment = point_in_time(res)
    day = ctx.settings.retention_day_seconds
    retention.check_update(
        old, new, old.expires_at(moment, day), new.expires_at(moment, day), now, what
    )
    return with_expiry(ctx, attrs, res.created_us)


def check_deletable(ctx: ServiceContext, conn: Any, res: repo.Resource, what: str) -> None:
    """409 unless ``res`` may be deleted now (not mid-creation, not protected)."""
    if res.lifecycle_state in IN_PROGRESS:
        raise IncorrectState(f"{what} is {res.lifecycle_state}; delete it once it is AVAILABLE.")
    copies = repo.being_copied_from(conn, res.id)
    if copies:
        raise IncorrectState(f"{what} is being restored into {copies[0].id}; delete it later.")
    rules = Retention.from_attrs(res.attrs)
    expires = rules.expires_at(point_in_time(res), ctx.settings.retention_day_seconds)
    retention.check_delete(rules, expires, datetime.now(UTC), what)
