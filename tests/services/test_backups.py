"""Backup rules: a backup holds its volumes until it has read them (409 IncorrectState for
what would change them), types follow each volume's history, members go with their group
backup, restores need an AVAILABLE backup and room for its data."""

from __future__ import annotations

import pytest

from ocibv.domain.errors import (
    Conflict,
    IncorrectState,
    InvalidParameter,
    RelatedResourceNotAuthorizedOrNotFound,
)
from tests.services.conftest import AD1, Cloud


def test_a_backup_in_progress_holds_its_volume(cloud: Cloud) -> None:
    vol = cloud.volume()
    backup = cloud.create_backup(vol)
    assert backup.lifecycle_state == "REQUEST_RECEIVED"
    with pytest.raises(IncorrectState, match=vol):
        cloud.services.volumes.delete_volume(cloud.caller, vol, None)
    with pytest.raises(IncorrectState, match=vol):
        cloud.create_backup(vol)
    with pytest.raises(IncorrectState, match=backup.id):
        cloud.services.volume_backups.delete_volume_backup(cloud.caller, backup.id, None)
    cloud.settle()
    assert cloud.state("volumebackup", backup.id) == "AVAILABLE"
    cloud.services.volumes.delete_volume(cloud.caller, vol, None)
    cloud.settle()
    assert cloud.state("volume", vol) == "TERMINATED"
    assert cloud.state("volumebackup", backup.id) == "AVAILABLE"  # outlives its volume


def test_types_follow_the_volume_history(cloud: Cloud) -> None:
    vol = cloud.volume()
    first = cloud.get("volumebackup", cloud.backup(vol))
    assert first.attrs["type"] == "FULL"  # INCREMENTAL asked, but nothing to build on
    assert (first.compartment_id, first.attrs["volume_id"]) == (cloud.compartment, vol)
    assert cloud.get("volumebackup", cloud.backup(vol)).attrs["type"] == "INCREMENTAL"
    cloud.services.volumes.update_volume(cloud.caller, vol, {"size_in_gbs": 60}, None)
    third = cloud.get("volumebackup", cloud.backup(vol))
    assert (third.attrs["type"], third.attrs["size_in_gbs"]) == ("FULL", 60)  # after a resize
    assert cloud.get("volumebackup", cloud.backup(vol)).attrs["type"] == "INCREMENTAL"
    assert cloud.get("volumebackup", cloud.backup(vol, type="FULL")).attrs["type"] == "FULL"


def test_group_backup_holds_every_member_and_owns_its_member_backups(cloud: Cloud) -> None:
    a, b = cloud.volume(), cloud.volume()
    group = cloud.group([a, b])
    created = cloud.create_group_backup(group)
    for vol in (a, b):
        with pytest.raises(IncorrectState, match=vol):
            cloud.create_backup(vol)
    with pytest.raises(IncorrectState, match=created.id):
        cloud.services.volume_group_backups.delete_volume_group_backup(
            cloud.caller, created.id, None
        )
    cloud.settle()
    backup = cloud.get("volumegroupbackup", created.id)
    members = backup.attrs["volume_backup_ids"]
    assert len(members) == 2
    assert {cloud.get("volumebackup", m).attrs["volume_id"] for m in members} == {a, b}
    assert {cloud.get("volumebackup", m).created_us for m in members} == {backup.created_us}
    with pytest.raises(Conflict, match=backup.id):
        cloud.services.volume_backups.delete_volume_backup(cloud.caller, members[0], None)
    cloud.services.volume_group_backups.delete_volume_group_backup(cloud.caller, backup.id, None)
    assert {cloud.state("volumebackup", m) for m in members} == {"TERMINATING"}
    cloud.settle()
    assert {cloud.state("volumebackup", m) for m in members} == {"TERMINATED"}
    assert cloud.state("volumegroupbackup", backup.id) == "TERMINATED"


def test_group_backup_needs_an_available_group(cloud: Cloud) -> None:
    group = cloud.create_group([cloud.volume()])
    with pytest.raises(IncorrectState, match=group.id):
        cloud.create_group_backup(group.id)
    with pytest.raises(RelatedResourceNotAuthorizedOrNotFound, match="volumeGroupId"):
        cloud.create_group_backup("ocid1.volumegroup.oc1.phx.aaaaaaaanotthere")


def test_restore_rules(cloud: Cloud) -> None:
    vol = cloud.volume()
    pending = cloud.create_backup(vol)
    with pytest.raises(IncorrectState, match=pending.id):
        cloud.create_volume(size_in_gbs=None,
                            source_details={"type": "volumeBackup", "id": pending.id})
    cloud.settle()
    with pytest.raises(RelatedResourceNotAuthorizedOrNotFound, match="sourceDetails"):
        cloud.create_volume(source_details={"type": "volumeBackup",
                                            "id": "ocid1.volumebackup.oc1.phx.aaaaaaaanothere"})
    cloud.services.volumes.update_volume(cloud.caller, vol, {"size_in_gbs": 70}, None)
    bigger = cloud.backup(vol)
    with pytest.raises(InvalidParameter, match="sizeInGBs"):
        cloud.create_volume(size_in_gbs=60, source_details={"type": "volumeBackup", "id": bigger})
    restored = cloud.create_volume(size_in_gbs=None, volume_backup_id=pending.id)
    assert (restored.lifecycle_state, restored.attrs["size_in_gbs"]) == ("RESTORING", 50)
    # a backup being restored cannot be deleted
    with pytest.raises(IncorrectState, match=restored.id):
        cloud.services.volume_backups.delete_volume_backup(cloud.caller, pending.id, None)
    cloud.settle()
    got = cloud.get("volume", restored.id)
    assert (got.lifecycle_state, got.attrs["is_hydrated"], got.availability_domain) == (
        "AVAILABLE", True, AD1,
    )
    cloud.services.volume_backups.delete_volume_backup(cloud.caller, pending.id, None)


def test_restore_group_from_group_backup(cloud: Cloud) -> None:
    a, b = cloud.volume(), cloud.volume(size_in_gbs=60)
    backup = cloud.group_backup(cloud.group([a, b]))
    restored = cloud.create_group([], source_details={
        "type": "volumeGroupBackupId", "volumeGroupBackupId": backup.id})
    volumes = restored.attrs["volume_ids"]
    assert {cloud.state("volume", v) for v in volumes} == {"RESTORING"}
    with pytest.raises(IncorrectState):
        cloud.services.volume_group_backups.delete_volume_group_backup(
            cloud.caller, backup.id, None
        )
    cloud.settle()
    assert cloud.state("volumegroup", restored.id) == "AVAILABLE"
    sizes = sorted(cloud.get("volume", v).attrs["size_in_gbs"] for v in volumes)
    assert sizes == [50, 60]
    sources = {cloud.get("volume", v).attrs["source_details"]["id"] for v in volumes}
    assert sources == set(backup.attrs["volume_backup_ids"])


def test_update_and_move(cloud: Cloud) -> None:
    backup = cloud.backup(cloud.volume())
    before = cloud.get("volumebackup", backup).etag
    renamed = cloud.services.volume_backups.update_volume_backup(
        cloud.caller, backup, {"display_name": "renamed", "freeform_tags": {"k": "v"}}, None
    )
    assert (renamed.display_name, renamed.attrs["freeform_tags"]) == ("renamed", {"k": "v"})
    assert renamed.etag != before
    other = cloud.new_compartment()
    cloud.services.volume_backups.change_volume_backup_compartment(cloud.caller, backup, other)
    assert cloud.get("volumebackup", backup).compartment_id == other
    cloud.services.volume_backups.delete_volume_backup(cloud.caller, backup, None)
    with pytest.raises(Conflict, match=backup):
        cloud.services.volume_backups.update_volume_backup(
            cloud.caller, backup, {"display_name": "zombie"}, None
        )


def test_the_store_describes_backups_in_its_own_schema(cloud: Cloud) -> None:
    """Catalog records and identity.json carry the documented fields, never a database row,
    and what recover reads back from them is the backup as the API shows it."""
    from ocibv.services.backup_catalog import (
        RECORD_ATTRIBUTES,
        compartment_from_record,
        row_from_record,
    )

    a, b = cloud.volume(), cloud.volume()
    cloud.services.volume_group_backups.create_volume_group_backup(
        cloud.caller,
        {"volume_group_id": cloud.group([a, b]), "freeform_tags": {"k": "v"}},
        None,
    )
    cloud.settle()
    records = {r["id"]: r for r in cloud.services.catalog.entries(cloud.tenancy)}
    assert len(records) == 3  # the group backup and its two members
    for record in records.values():
        assert (record["schema"], record["version"]) == ("ocibv-catalog-record", 1)
        kind = row_from_record(record).kind
        assert set(record["attributes"]) <= set(RECORD_ATTRIBUTES[kind])
        row = cloud.get(kind, record["id"])
        back = row_from_record(record)
        assert (back.compartment_id, back.parent_id, back.created_us) == (
            row.compartment_id, row.parent_id, row.created_us,
        )
        for key in ("type", "source_type", "size_in_gbs", "freeform_tags",
                    "is_retention_lock_enabled", "retention_expires_us"):
            assert back.attrs.get(key) == row.attrs.get(key), key
    identity = cloud.services.catalog.load_identity(cloud.tenancy)
    assert identity is not None
    [entry] = [c for c in identity["compartments"] if c["id"] == cloud.compartment]
    assert set(entry) == {"id", "parent_id", "name", "description", "lifecycle_state",
                          "created_at_us", "freeform_tags", "defined_tags"}
    comp = compartment_from_record(cloud.tenancy, entry)
    assert (comp.compartment_id, comp.display_name) == (
        cloud.tenancy, cloud.get("compartment", cloud.compartment).display_name,
    )
