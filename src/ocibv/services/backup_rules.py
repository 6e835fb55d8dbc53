"""Rules shared by volume backups and volume group backups: new rows, retention, deletion."""

from __future__ import annotations

import sqlalchemy as sa

from ocibv.domain import retention
from ocibv.domain.errors import IncorrectState
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import COMMITTED, CREATING, REQUEST_RECEIVED
from ocibv.domain.ocid import new_ocid
from ocibv.domain.retention import RETENTION_FIELDS, Retention, expires_us, point_in_time
from ocibv.engine.manifest import BackupType
from ocibv.services.context import ServiceContext
from ocibv.services.requests import RetentionDetails, Tags, UpdateBackupDetails
from ocibv.services.reservations import refuse_if_held
from ocibv.store import resources as repo

IN_PROGRESS = (REQUEST_RECEIVED, CREATING, COMMITTED)
TAGS = ("freeform_tags", "defined_tags")
# What a scheduled group backup passes on to its member backups.
SCHEDULE_ATTRS = ("source_type", "expiration_us")


def retention_attrs(details: RetentionDetails) -> dict[str, object]:
    """The retention fields of a create request, validated."""
    attrs = {key: details.get(key) for key in RETENTION_FIELDS}
    retention.validate(Retention.from_attrs(attrs))
    return attrs


def with_expiry(attrs: repo.Attrs, created_us: int) -> repo.Attrs:
    return dict(attrs, retention_expires_us=expires_us(attrs, created_us))


def tags_of(details: Tags) -> dict[str, object]:
    """The tags a request sets (absent ones left out)."""
    return {k: v for k in TAGS if (v := details.get(k)) is not None}


def new_volume_backup(
    ctx: ServiceContext,
    volume: repo.Resource,
    *,
    display_name: str | None,
    requested_type: BackupType,
    base_backup_id: str | None,
    created_us: int,
    state: str,
    retention_values: dict[str, object],
    group_backup_id: str | None = None,
    tags: dict[str, object] | None = None,
) -> repo.Resource:
    """An unsaved VolumeBackup row for ``volume`` (in the volume's compartment)."""
    backup_id = new_ocid(Kind.VOLUME_BACKUP, ctx.settings.region_key)
    full = requested_type == BackupType.FULL or base_backup_id is None
    attrs: repo.Attrs = {
        "volume_id": volume.id,
        "volume_group_backup_id": group_backup_id,
        "requested_type": requested_type.value,
        "type": (BackupType.FULL if full else BackupType.INCREMENTAL).value,
        "base_backup_id": base_backup_id,
        "source_type": "MANUAL",
        "size_in_gbs": volume.size_in_gbs,
        "unique_bytes": 0,
        "time_request_received_us": created_us,
        "kms_key_id": None,
        "freeform_tags": dict(volume.attrs.get("freeform_tags") or {}),
        "defined_tags": dict(volume.attrs.get("defined_tags") or {}),
        "system_tags": {},
        **retention_values,
        **(tags or {}),
    }
    return repo.Resource(
        id=backup_id,
        kind=Kind.VOLUME_BACKUP,
        tenancy_id=volume.tenancy_id,
        compartment_id=volume.compartment_id,
        display_name=display_name or f"{volume.display_name} backup",
        lifecycle_state=state,
        created_us=created_us,
        parent_id=volume.id,
        attrs=with_expiry(attrs, created_us),
    )


def updated_attrs(
    ctx: ServiceContext, res: repo.Resource, details: UpdateBackupDetails, what: str
) -> repo.Attrs:
    """New attrs for an update of tags and retention; a lock refuses weakening (409)."""
    attrs = dict(res.attrs)
    attrs.update(tags_of(details))
    for key in RETENTION_FIELDS:
        if key in details:
            attrs[key] = details.get(key)
    old, new = Retention.from_attrs(res.attrs), Retention.from_attrs(attrs)
    retention.validate(new)  # before any date is computed from it
    moment = point_in_time(res.created_us)
    retention.check_update(
        old, new, old.expires_at(moment), new.expires_at(moment), ctx.clock.now(), what
    )
    return with_expiry(attrs, res.created_us)


def check_deletable(
    ctx: ServiceContext, conn: sa.Connection, res: repo.Resource, what: str
) -> None:
    """409 unless ``res`` may be deleted now (not mid-creation, not in use, not protected)."""
    if res.lifecycle_state in IN_PROGRESS:
        raise IncorrectState(f"{what} is {res.lifecycle_state}; delete it once it is AVAILABLE.")
    refuse_if_held(conn, res, IncorrectState, "delete it later")
    rules = Retention.from_attrs(res.attrs)
    expires = rules.expires_at(point_in_time(res.created_us))
    retention.check_delete(rules, expires, ctx.clock.now(), what)
