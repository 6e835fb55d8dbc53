"""Volume groups end to end (spec §1.2, §2.6, §3.4, §8): membership rules, clone, CLI."""

from __future__ import annotations

import json

import oci
import pytest

from tests.e2e.helpers import (
    AD1,
    AD2,
    M,
    create_group,
    create_volume,
    read_image,
    service_error,
    wait_group,
    wait_volume,
    write_image,
)
from tests.e2e.server import Server


def volumes(bs: oci.core.BlockstorageClient, compartment: str, n: int, ad: str = AD1) -> list[str]:
    return [create_volume(bs, compartment, ad, display_name=f"v{i}").id for i in range(n)]


def test_create_get_list(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    vols = volumes(bs, compartment, 2)
    resp = bs.create_volume_group(
        M.CreateVolumeGroupDetails(
            compartment_id=compartment,
            availability_domain=AD1,
            display_name="db",
            freeform_tags={"app": "db"},
            source_details=M.VolumeGroupSourceFromVolumesDetails(volume_ids=vols),
        )
    )
    assert resp.status == 200
    assert resp.headers["etag"]
    group = resp.data
    assert group.id.startswith("ocid1.volumegroup.oc1.phx.")
    assert group.lifecycle_state == "PROVISIONING"
    assert group.volume_ids == vols
    assert (group.size_in_gbs, group.size_in_mbs) == (100, 100 * 1024)
    assert isinstance(group.source_details, M.VolumeGroupSourceFromVolumesDetails)
    assert group.source_details.volume_ids == vols
    assert group.freeform_tags == {"app": "db"}

    done = wait_group(bs, group.id)
    assert done.display_name == "db"
    assert done.is_hydrated is True
    for vol_id in vols:
        assert bs.get_volume(vol_id).data.volume_group_id == group.id

    assert [g.id for g in bs.list_volume_groups(compartment_id=compartment).data] == [group.id]
    assert [
        g.id for g in bs.list_volume_groups(compartment_id=compartment, display_name="db").data
    ] == [group.id]
    assert bs.list_volume_groups(compartment_id=compartment, display_name="d").data == []
    assert bs.list_volume_groups(compartment_id=compartment, availability_domain=AD2).data == []
    assert (
        len(bs.list_volume_groups(compartment_id=compartment, lifecycle_state="AVAILABLE").data)
        == 1
    )
    with service_error(404, "NotAuthorizedOrNotFound"):
        bs.get_volume_group("ocid1.volumegroup.oc1.phx.aaaaaaaanotthereatall")


def test_update_replaces_membership(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    a, b, c = volumes(bs, compartment, 3)
    group = create_group(bs, compartment, AD1, [a, b])
    etag = bs.get_volume_group(group.id).headers["etag"]
    resp = bs.update_volume_group(
        group.id,
        M.UpdateVolumeGroupDetails(display_name="renamed", volume_ids=[b, c]),
    )
    assert resp.status == 200
    assert resp.headers["etag"] != etag
    assert resp.data.volume_ids == [b, c]
    assert resp.data.display_name == "renamed"
    got = wait_group(bs, group.id)
    assert got.volume_ids == [b, c]
    assert got.size_in_gbs == 100
    assert bs.get_volume(a).data.volume_group_id is None
    assert bs.get_volume(b).data.volume_group_id == group.id
    assert bs.get_volume(c).data.volume_group_id == group.id
    ids_in_group = {
        v.id for v in bs.list_volumes(compartment_id=compartment, volume_group_id=group.id).data
    }
    assert ids_in_group == {b, c}

    # The removed volume is free again: it can be deleted.
    assert bs.delete_volume(a).status == 204
    wait_volume(bs, a, "TERMINATED")

    # Updating only the name keeps the members.
    same = bs.update_volume_group(group.id, M.UpdateVolumeGroupDetails(display_name="n2")).data
    assert same.volume_ids == [b, c]


def test_member_cannot_be_deleted(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    (vol,) = volumes(bs, compartment, 1)
    group = create_group(bs, compartment, AD1, [vol])
    with service_error(409, "Conflict", group.id):
        bs.delete_volume(vol)
    assert bs.get_volume(vol).data.lifecycle_state == "AVAILABLE"


def test_volume_in_one_group_only(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    a, b = volumes(bs, compartment, 2)
    first = create_group(bs, compartment, AD1, [a])
    with service_error(409, "Conflict", a):
        create_group(bs, compartment, AD1, [a, b])
    second = create_group(bs, compartment, AD1, [b])
    with service_error(409, "Conflict", a):
        bs.update_volume_group(second.id, M.UpdateVolumeGroupDetails(volume_ids=[a, b]))
    assert bs.get_volume(a).data.volume_group_id == first.id
    assert bs.get_volume(b).data.volume_group_id == second.id
    assert bs.get_volume_group(second.id).data.volume_ids == [b]
    # Nothing was half-created by the refused request.
    assert len(bs.list_volume_groups(compartment_id=compartment).data) == 2


def test_members_must_be_available_and_in_the_ad(
    bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    (here,) = volumes(bs, compartment, 1)
    (there,) = volumes(bs, compartment, 1, ad=AD2)
    with service_error(400, "InvalidParameter", there):
        create_group(bs, compartment, AD1, [here, there])

    gone = create_volume(bs, compartment, AD1)
    bs.delete_volume(gone.id)
    wait_volume(bs, gone.id, "TERMINATED")
    with pytest.raises(oci.exceptions.ServiceError) as info:
        create_group(bs, compartment, AD1, [here, gone.id])
    assert info.value.status in (400, 409)
    assert gone.id in info.value.message

    with service_error(400, "RelatedResourceNotAuthorizedOrNotFound"):
        create_group(bs, compartment, AD1, ["ocid1.volume.oc1.phx.aaaaaaaanotthereatall"])
    with service_error(400, "InvalidParameter", "volumeIds"):
        create_group(bs, compartment, AD1, [here, here])
    with service_error(400, "InvalidParameter", "availabilityDomain"):
        create_group(bs, compartment, "Uocm:PHX-AD-7", [here])
    assert bs.list_volume_groups(compartment_id=compartment).data == []
    assert bs.get_volume(here).data.volume_group_id is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cluster_placement_group_id", "ocid1.clusterplacementgroup.oc1.phx.aaaaaaaacpg"),
        ("xrc_kms_key_id", "ocid1.key.oc1.iad.aaaaaaaakey"),
        ("volume_group_replicas", [M.VolumeGroupReplicaDetails(availability_domain=AD2)]),
    ],
)
def test_unbuilt_features_refused(
    bs: oci.core.BlockstorageClient, compartment: str, field: str, value: object
) -> None:
    (vol,) = volumes(bs, compartment, 1)
    wire_name = M.CreateVolumeGroupDetails().attribute_map[field]
    with service_error(400, "InvalidParameter", wire_name):
        create_group(bs, compartment, AD1, [vol], **{field: value})
    assert bs.list_volume_groups(compartment_id=compartment).data == []
    assert bs.get_volume(vol).data.volume_group_id is None
    if field == "volume_group_replicas":
        group = create_group(bs, compartment, AD1, [vol])
        with service_error(400, "InvalidParameter", wire_name):
            bs.update_volume_group(
                group.id, M.UpdateVolumeGroupDetails(volume_group_replicas=value)
            )


def test_delete_keeps_volumes(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    a, b = volumes(bs, compartment, 2)
    group = create_group(bs, compartment, AD1, [a, b])
    resp = bs.delete_volume_group(group.id)
    assert resp.status == 204
    gone = wait_group(bs, group.id, "TERMINATED")
    assert gone.id == group.id
    for vol_id in (a, b):
        vol = bs.get_volume(vol_id).data
        assert vol.lifecycle_state == "AVAILABLE"
        assert vol.volume_group_id is None
    # The volumes are free: they can join another group and be deleted.
    create_group(bs, compartment, AD1, [a])
    assert bs.delete_volume(b).status == 204
    with service_error(404, "NotAuthorizedOrNotFound"):
        bs.delete_volume_group("ocid1.volumegroup.oc1.phx.aaaaaaaanotthereatall")


def test_clone_group_copies_data(
    server: Server, bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    a = create_volume(bs, compartment, AD1, display_name="data-a").id
    b = create_volume(bs, compartment, AD1, display_name="data-b", size_in_gbs=60).id
    write_image(server, a, 4096, b"volume A says hi")
    write_image(server, b, 55 * 1024**3, b"volume B, deep inside")
    source = create_group(bs, compartment, AD1, [a, b], display_name="src")

    resp = bs.create_volume_group(
        M.CreateVolumeGroupDetails(
            compartment_id=compartment,
            availability_domain=AD1,
            display_name="copy",
            source_details=M.VolumeGroupSourceFromVolumeGroupDetails(volume_group_id=source.id),
        )
    )
    clone = resp.data
    assert clone.id != source.id
    assert isinstance(clone.source_details, M.VolumeGroupSourceFromVolumeGroupDetails)
    assert clone.source_details.volume_group_id == source.id
    assert len(clone.volume_ids) == 2
    assert not set(clone.volume_ids) & {a, b}
    done = wait_group(bs, clone.id)
    assert done.is_hydrated is True
    assert done.size_in_gbs == 110

    new_a, new_b = (bs.get_volume(v).data for v in done.volume_ids)
    assert (new_a.lifecycle_state, new_b.lifecycle_state) == ("AVAILABLE", "AVAILABLE")
    assert (new_a.volume_group_id, new_b.volume_group_id) == (clone.id, clone.id)
    assert (new_a.size_in_gbs, new_b.size_in_gbs) == (50, 60)
    assert read_image(server, new_a.id, 4096, 16) == b"volume A says hi"
    assert read_image(server, new_b.id, 55 * 1024**3, 21) == b"volume B, deep inside"
    # The source group is untouched.
    assert bs.get_volume_group(source.id).data.volume_ids == [a, b]
    assert bs.get_volume(a).data.volume_group_id == source.id


def test_change_compartment(
    server: Server,
    bs: oci.core.BlockstorageClient,
    identity: oci.identity.IdentityClient,
    compartment: str,
) -> None:
    (vol,) = volumes(bs, compartment, 1)
    group = create_group(bs, compartment, AD1, [vol])
    other = identity.create_compartment(
        oci.identity.models.CreateCompartmentDetails(
            compartment_id=server.config()["tenancy"],
            name=f"dest-{group.id[-6:]}",
            description="destination",
        )
    ).data.id
    resp = bs.change_volume_group_compartment(
        group.id, M.ChangeVolumeGroupCompartmentDetails(compartment_id=other)
    )
    assert resp.status == 204
    assert resp.headers["etag"]
    got = bs.get_volume_group(group.id)
    assert got.data.compartment_id == other
    assert got.headers["etag"] == resp.headers["etag"]
    assert [g.id for g in bs.list_volume_groups(compartment_id=other).data] == [group.id]


def test_cli(server: Server, compartment: str, bs: oci.core.BlockstorageClient) -> None:
    a, b = volumes(bs, compartment, 2)
    source = json.dumps({"type": "volumeIds", "volumeIds": [a, b]})
    out = server.cli(
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        compartment,
        "--availability-domain",
        AD1,
        "--display-name",
        "cli-group",
        "--source-details",
        source,
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json
    data = out["data"]
    assert data["lifecycle-state"] == "AVAILABLE"
    assert data["volume-ids"] == [a, b]
    assert data["source-details"] == {"type": "volumeIds", "volume-ids": [a, b]}
    assert out["etag"]

    listed = server.cli(
        "bv", "volume-group", "list", "--compartment-id", compartment, "--all"
    ).json["data"]
    assert [g["id"] for g in listed] == [data["id"]]

    updated = server.cli(
        "bv",
        "volume-group",
        "update",
        "--volume-group-id",
        data["id"],
        "--volume-ids",
        json.dumps([b]),
        "--force",
    ).json["data"]
    assert updated["volume-ids"] == [b]
    assert bs.get_volume(a).data.volume_group_id is None

    refused = server.cli("bv", "volume", "delete", "--volume-id", b, "--force", check=False)
    assert (refused.error["status"], refused.error["code"]) == (409, "Conflict")

    deleted = server.cli(
        "bv",
        "volume-group",
        "delete",
        "--volume-group-id",
        data["id"],
        "--force",
        "--wait-for-state",
        "TERMINATED",
        "--wait-interval-seconds",
        "1",
    )
    assert deleted.returncode == 0
    assert bs.get_volume_group(data["id"]).data.lifecycle_state == "TERMINATED"
    assert bs.get_volume(b).data.volume_group_id is None
