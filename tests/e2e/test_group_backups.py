"""The seed scenario: FULL and INCREMENTAL group backups of real data, restored as groups and
as single volumes with the SDK and the CLI, exact to the byte; deleting the FULL keeps the
INCREMENTAL restorable and moves the unique sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import oci
import pytest

from tests.e2e.helpers import (
    assert_volume_holds,
    import_image,
    make_image,
    new_volume,
    scatter_writes,
    store_bytes,
    wait,
    wait_until,
)
from tests.e2e.server import InProcessServer, Server

M = oci.core.models
STORE_KINDS = ("local", "s3")  # every test runs with the store on disk and on S3
DATABASE_KINDS = ("sqlite", "postgresql")  # and with the catalog on SQLite and PostgreSQL


@pytest.fixture(scope="module")
def server(own_server: InProcessServer) -> Server:
    """This module's own server: the store growth it measures is only its backups'."""
    return own_server


@pytest.fixture(scope="module")
def scenario(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two volumes with known data in one group; a FULL backup; changes; an INCREMENTAL."""
    tmp = tmp_path_factory.mktemp("images")
    bs = server.blockstorage()
    tenancy = server.config()["tenancy"]
    identity = server.identity()
    ad = identity.list_availability_domains(tenancy).data[0].name
    compartment = identity.create_compartment(
        oci.identity.models.CreateCompartmentDetails(
            compartment_id=tenancy, name="backups", description="seed scenario"
        )
    ).data.id
    volumes = [new_volume(bs, compartment, ad, f"data{n}") for n in range(2)]
    full_images = [make_image(tmp / f"full{n}.img", seed=n) for n in range(2)]
    for volume_id, image in zip(volumes, full_images, strict=True):
        import_image(server, volume_id, image)
    group = bs.create_volume_group(
        M.CreateVolumeGroupDetails(
            compartment_id=compartment, availability_domain=ad, display_name="seed",
            source_details=M.VolumeGroupSourceFromVolumesDetails(volume_ids=volumes),
        )
    ).data
    wait(bs, bs.get_volume_group(group.id), "AVAILABLE")

    # The request at the heart of the product, byte for byte as the issue gives it.
    body = {"volumeGroupId": group.id, "compartmentId": compartment,
            "displayName": "laboris pariatur", "definedTags": {}, "freeformTags": {},
            "type": "FULL"}
    store_before_full = store_bytes(server)
    created = bs.base_client.call_api(
        resource_path="/volumeGroupBackups", method="POST",
        header_params={"accept": "application/json", "content-type": "application/json"},
        body=body, response_type="VolumeGroupBackup",
    ).data
    full = wait(bs, bs.get_volume_group_backup(created.id), "AVAILABLE")
    # The unique size is worked out just after the backup turns AVAILABLE.
    wait_until(lambda: bs.get_volume_group_backup(created.id).data.unique_size_in_mbs > 0,
               "the FULL's unique size")
    full = bs.get_volume_group_backup(created.id).data
    store_after_full = store_bytes(server)

    inc_images = []
    for n, image in enumerate(full_images):
        changed = tmp / f"inc{n}.img"
        changed.write_bytes(image.read_bytes())
        scatter_writes(changed, seed=100 + n)
        inc_images.append(changed)
    for volume_id, image in zip(volumes, inc_images, strict=True):
        import_image(server, volume_id, image)
    inc_cli = server.cli(
        "bv", "volume-group-backup", "create", "--volume-group-id", group.id,
        "--display-name", "after changes", "--type", "INCREMENTAL",
        "--wait-for-state", "AVAILABLE", "--wait-interval-seconds", "1",
    ).json["data"]
    growth = {"full": store_after_full - store_before_full,
              "inc": store_bytes(server) - store_after_full}
    return {"growth": growth,
        "bs": bs, "ad": ad, "compartment": compartment, "volumes": volumes, "group": group.id,
        "created": created, "full": full, "inc_id": inc_cli["id"], "tmp": tmp,
        "full_images": full_images, "inc_images": inc_images,
    }


def test_full_backup_shape(scenario: dict[str, Any]) -> None:
    created, full = scenario["created"], scenario["full"]
    assert created.lifecycle_state == "REQUEST_RECEIVED"
    assert full.type == "FULL"
    assert full.display_name == "laboris pariatur"
    assert full.volume_group_id == scenario["group"]
    assert full.compartment_id == scenario["compartment"]
    assert len(full.volume_backup_ids) == 2
    assert full.size_in_gbs == 100 and full.size_in_mbs == 100 * 1024
    assert full.unique_size_in_mbs > 0
    assert full.time_created is not None and full.time_request_received is not None
    bs = scenario["bs"]
    members = [bs.get_volume_backup(m).data for m in full.volume_backup_ids]
    assert sorted(m.volume_id for m in members) == sorted(scenario["volumes"])
    for member in members:
        assert member.volume_group_backup_id == full.id
        assert member.lifecycle_state == "AVAILABLE"
        assert member.type == "FULL"
        assert member.time_created == full.time_created  # one point in time
        assert member.size_in_gbs == 50


def test_incremental_costs_only_the_change(scenario: dict[str, Any]) -> None:
    bs = scenario["bs"]
    inc = bs.get_volume_group_backup(scenario["inc_id"]).data
    full = bs.get_volume_group_backup(scenario["full"].id).data
    assert inc.type == "INCREMENTAL"
    # 16 scattered 64 KiB writes (1 MiB): the store grows by a few MiB, against the ~10 MiB
    # the FULL stored; each backup uniquely holds only its version of the changed chunks
    growth = scenario["growth"]
    assert growth["inc"] < growth["full"] / 2, growth
    assert growth["inc"] < 8 * 1024 * 1024, growth
    assert 0 < inc.unique_size_in_mbs <= 8
    assert 0 < full.unique_size_in_mbs <= 8
    for member_id in inc.volume_backup_ids:
        assert bs.get_volume_backup(member_id).data.type == "INCREMENTAL"


def _restore_group(server: Server, scenario: dict[str, Any], backup_id: str) -> list[str]:
    source = json.dumps({"type": "volumeGroupBackupId", "volumeGroupBackupId": backup_id})
    group = server.cli(
        "bv", "volume-group", "create", "--compartment-id", scenario["compartment"],
        "--availability-domain", scenario["ad"], "--source-details", source,
        "--wait-for-state", "AVAILABLE", "--wait-interval-seconds", "1",
    ).json["data"]
    assert group["source-details"]["volume-group-backup-id"] == backup_id
    return list(group["volume-ids"])


def _volume_for(bs: oci.core.BlockstorageClient, restored: list[str], backup_id: str,
                volumes: list[str]) -> dict[str, str]:
    """original volume id -> restored volume id (via the member backups)."""
    out = {}
    for volume_id in restored:
        volume = bs.get_volume(volume_id).data
        assert volume.lifecycle_state == "AVAILABLE" and volume.is_hydrated
        member = bs.get_volume_backup(volume.source_details.id).data
        assert member.volume_group_backup_id == backup_id
        out[member.volume_id] = volume_id
    assert sorted(out) == sorted(volumes)
    return out


def test_full_restores_as_group_exactly(server: Server, scenario: dict[str, Any]) -> None:
    full_id = scenario["full"].id
    restored = _volume_for(scenario["bs"], _restore_group(server, scenario, full_id), full_id,
                           scenario["volumes"])
    for original, image in zip(scenario["volumes"], scenario["full_images"], strict=True):
        assert_volume_holds(server, restored[original], image, scenario["tmp"])


def test_incremental_restores_as_single_volumes(server: Server, scenario: dict[str, Any]) -> None:
    bs = scenario["bs"]
    inc = bs.get_volume_group_backup(scenario["inc_id"]).data
    by_volume = {bs.get_volume_backup(m).data.volume_id: m for m in inc.volume_backup_ids}
    first, second = scenario["volumes"]
    via_cli = server.cli(
        "bv", "volume", "create", "--volume-backup-id", by_volume[first],
        "--availability-domain", scenario["ad"], "--wait-for-state", "AVAILABLE",
        "--wait-interval-seconds", "1",
    ).json["data"]
    assert via_cli["source-details"] == {"id": by_volume[first], "type": "volumeBackup"}
    via_sdk = bs.create_volume(M.CreateVolumeDetails(
        compartment_id=scenario["compartment"], availability_domain=scenario["ad"],
        source_details=M.VolumeSourceFromVolumeBackupDetails(id=by_volume[second]),
    )).data
    assert via_sdk.lifecycle_state == "RESTORING"
    wait(bs, bs.get_volume(via_sdk.id), "AVAILABLE")
    assert_volume_holds(server, via_cli["id"], scenario["inc_images"][0], scenario["tmp"])
    assert_volume_holds(server, via_sdk.id, scenario["inc_images"][1], scenario["tmp"])


def test_deleting_full_keeps_incremental(server: Server, scenario: dict[str, Any]) -> None:
    bs = scenario["bs"]
    before = bs.get_volume_group_backup(scenario["inc_id"]).data.unique_size_in_mbs
    full = bs.get_volume_group_backup(scenario["full"].id).data
    bs.delete_volume_group_backup(full.id)
    gone = wait(bs, bs.get_volume_group_backup(full.id), "TERMINATED")
    assert gone.lifecycle_state == "TERMINATED"
    for member_id in full.volume_backup_ids:
        assert bs.get_volume_backup(member_id).data.lifecycle_state == "TERMINATED"
    # the survivor now uniquely holds what the FULL shared with it (unique sizes are
    # worked out just after the deletion turns TERMINATED)
    wait_until(lambda: bs.get_volume_group_backup(scenario["inc_id"]).data.unique_size_in_mbs
               > before, "the INCREMENTAL's unique size to grow")
    restored = _volume_for(bs, _restore_group(server, scenario, scenario["inc_id"]),
                           scenario["inc_id"], scenario["volumes"])
    for original, image in zip(scenario["volumes"], scenario["inc_images"], strict=True):
        assert_volume_holds(server, restored[original], image, scenario["tmp"])


def test_group_backup_lists_and_filters(server: Server, scenario: dict[str, Any]) -> None:
    bs = scenario["bs"]
    listed = oci.pagination.list_call_get_all_results(
        bs.list_volume_group_backups, compartment_id=scenario["compartment"],
        volume_group_id=scenario["group"], limit=1,
    ).data
    assert scenario["inc_id"] in [b.id for b in listed]
    members = oci.pagination.list_call_get_all_results(
        bs.list_volume_backups, compartment_id=scenario["compartment"],
        volume_id=scenario["volumes"][0],
    ).data
    assert len(members) >= 2


def test_precondition_errors(server: Server, scenario: dict[str, Any], tmp_path: Path) -> None:
    bs = scenario["bs"]
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.create_volume_group_backup(M.CreateVolumeGroupBackupDetails(
            volume_group_id="ocid1.volumegroup.oc1.phx.aaaaaaaanotthere"))
    assert (err.value.status, err.value.code) == (400, "RelatedResourceNotAuthorizedOrNotFound")
    with pytest.raises(oci.exceptions.ServiceError) as err:  # the SDK checks enums itself
        bs.base_client.call_api(
            resource_path="/volumeGroupBackups", method="POST",
            header_params={"content-type": "application/json"},
            body={"volumeGroupId": scenario["group"], "type": "PARTIAL"},
        )
    assert (err.value.status, err.value.code) == (400, "InvalidParameter")
    assert "type" in err.value.message
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.get_volume_group_backup("ocid1.volumegroupbackup.oc1.phx.aaaaaaaanotthere")
    assert (err.value.status, err.value.code) == (404, "NotAuthorizedOrNotFound")
