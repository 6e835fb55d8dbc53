"""Volumes end to end (spec §1.1, §2.5, §3.1, §3.8): the official SDK (and the CLI for a
representative subset) against the shared server with two availability domains."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import oci
import pytest

from tests.e2e.helpers import (
    AD1,
    AD2,
    GIB,
    M,
    create_group,
    create_volume,
    image_path,
    read_image,
    service_error,
    wait_volume,
    write_image,
)
from tests.e2e.raw import RawClient
from tests.e2e.server import Server


def ids(items: list[oci.core.models.Volume]) -> list[str]:
    return [v.id for v in items]


# --- create / get ---------------------------------------------------------------------------


def test_lifecycle_states_with_slow_jobs(make_inprocess_server: Callable[..., Server]) -> None:
    """With every job held back for 1 s, each intermediate state is observable."""
    srv = make_inprocess_server(env={"OCIBV_JOB_DELAY_SECONDS": "1"}).start()
    bs = srv.blockstorage()
    tenancy = srv.config()["tenancy"]
    ad = srv.identity().list_availability_domains(tenancy).data[0].name
    created = bs.create_volume(
        M.CreateVolumeDetails(compartment_id=tenancy, availability_domain=ad, size_in_gbs=50)
    )
    assert created.status == 200
    assert created.data.lifecycle_state == "PROVISIONING"
    assert created.data.is_hydrated is False
    assert bs.get_volume(created.data.id).data.lifecycle_state == "PROVISIONING"
    done = wait_volume(bs, created.data.id)
    assert done.is_hydrated is True

    deleted = bs.delete_volume(done.id)
    assert deleted.status == 204
    assert bs.get_volume(done.id).data.lifecycle_state == "TERMINATING"
    gone = wait_volume(bs, done.id, "TERMINATED")
    assert gone.id == done.id
    assert not image_path(srv, done.id).exists()

    # A source cannot disappear under a clone that is still copying it: either the delete is
    # refused, or the clone still gets every byte.
    src = wait_volume(
        bs,
        bs.create_volume(
            M.CreateVolumeDetails(compartment_id=tenancy, availability_domain=ad, size_in_gbs=50)
        ).data.id,
    )
    write_image(srv, src.id, 12345, b"must survive")
    clone = bs.create_volume(
        M.CreateVolumeDetails(
            compartment_id=tenancy, source_details=M.VolumeSourceFromVolumeDetails(id=src.id)
        )
    ).data
    assert clone.lifecycle_state == "PROVISIONING"
    try:
        bs.delete_volume(src.id)
    except oci.exceptions.ServiceError as err:
        assert err.status == 409, err.message
    assert wait_volume(bs, clone.id, "AVAILABLE", "FAULTY").lifecycle_state == "AVAILABLE"
    assert read_image(srv, clone.id, 12345, 12) == b"must survive"


def test_create_get_and_image(
    server: Server, bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    resp = bs.create_volume(
        M.CreateVolumeDetails(
            compartment_id=compartment,
            availability_domain=AD1,
            display_name="data-1",
            size_in_gbs=60,
            vpus_per_gb=20,
            freeform_tags={"team": "storage"},
        )
    )
    assert resp.status == 200
    assert resp.headers["etag"]
    created = resp.data
    assert created.id.startswith("ocid1.volume.oc1.phx.")
    assert created.lifecycle_state == "PROVISIONING"
    assert (created.compartment_id, created.availability_domain) == (compartment, AD1)
    assert (created.display_name, created.size_in_gbs, created.size_in_mbs) == ("data-1", 60, 61440)
    assert created.vpus_per_gb == 20
    assert created.freeform_tags == {"team": "storage"}
    assert created.volume_group_id is None
    assert created.time_created is not None

    vol = wait_volume(bs, created.id)
    assert vol.is_hydrated is True
    got = bs.get_volume(created.id)
    assert got.headers["etag"]
    assert got.data.display_name == "data-1"
    # The data is a real (sparse) image of the full size.
    path = image_path(server, created.id)
    assert path.stat().st_size == 60 * GIB
    assert path.stat().st_blocks * 512 < GIB


def test_get_unknown_volume(bs: oci.core.BlockstorageClient) -> None:
    with service_error(404, "NotAuthorizedOrNotFound"):
        bs.get_volume("ocid1.volume.oc1.phx.aaaaaaaanotthereatall")


def test_default_size_is_one_terabyte(
    server: Server, bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    vol = create_volume(bs, compartment, AD1, size_in_gbs=None)
    assert (vol.size_in_gbs, vol.size_in_mbs) == (1024, 1024 * 1024)
    assert image_path(server, vol.id).stat().st_size == 1024 * GIB


def test_size_in_mbs(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    vol = create_volume(bs, compartment, AD1, size_in_gbs=None, size_in_mbs=51200)
    assert (vol.size_in_gbs, vol.size_in_mbs) == (50, 51200)
    with service_error(400, "InvalidParameter", "sizeInMBs"):
        create_volume(bs, compartment, AD1, size_in_gbs=None, size_in_mbs=51201)


@pytest.mark.parametrize("size", [0, 49, 32769, 10**6])
def test_size_out_of_range(bs: oci.core.BlockstorageClient, compartment: str, size: int) -> None:
    with service_error(400, "InvalidParameter", "sizeInGBs"):
        create_volume(bs, compartment, AD1, size_in_gbs=size)


def largest_file_gbs(directory: Path) -> int:
    """Whole GB of the largest (sparse) file this filesystem allows, up to 32768."""
    with tempfile.TemporaryFile(dir=directory) as handle:

        def fits(gbs: int) -> bool:
            try:
                os.ftruncate(handle.fileno(), gbs * GIB)
            except OSError as exc:
                assert exc.errno in (errno.EFBIG, errno.EINVAL), exc
                return False
            return True

        if fits(32768):
            return 32768
        low, high = 0, 32768
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low


def test_size_limits(server: Server, bs: oci.core.BlockstorageClient, compartment: str) -> None:
    """50 GB and 32 TB are the API's bounds. On a filesystem that cannot hold a 32 TB file
    (ext4: 16 TiB) the server refuses what it cannot store with 400 LimitExceeded up front,
    never with a FAULTY volume or a 500."""
    assert create_volume(bs, compartment, AD1, size_in_gbs=50).size_in_gbs == 50
    most = largest_file_gbs(server.data_dir / "volumes")
    top = create_volume(bs, compartment, AD1, size_in_gbs=most)
    assert top.lifecycle_state == "AVAILABLE"
    assert image_path(server, top.id).stat().st_size == most * GIB
    if most == 32768:
        return
    with service_error(400, "LimitExceeded", "sizeInGBs"):
        create_volume(bs, compartment, AD1, size_in_gbs=most + 1)
    with service_error(400, "LimitExceeded", "sizeInGBs"):
        create_volume(bs, compartment, AD1, size_in_gbs=32768)
    with service_error(400, "LimitExceeded", "sizeInGBs"):
        create_volume(
            bs,
            compartment,
            AD1,
            size_in_gbs=32768,
            source_details=M.VolumeSourceFromVolumeDetails(id=top.id),
        )
    small = create_volume(bs, compartment, AD1)
    with service_error(400, "LimitExceeded", "sizeInGBs"):
        bs.update_volume(small.id, M.UpdateVolumeDetails(size_in_gbs=most + 1))
    after = bs.get_volume(small.id).data
    assert (after.size_in_gbs, after.lifecycle_state) == (50, "AVAILABLE")
    assert image_path(server, small.id).stat().st_size == 50 * GIB
    assert bs.update_volume(small.id, M.UpdateVolumeDetails(size_in_gbs=most)).status == 200


def test_unknown_availability_domain(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    with service_error(400, "InvalidParameter", "availabilityDomain"):
        create_volume(bs, compartment, "Uocm:PHX-AD-9")


def test_unknown_compartment(bs: oci.core.BlockstorageClient) -> None:
    with service_error(404, "NotAuthorizedOrNotFound"):
        create_volume(bs, "ocid1.compartment.oc1..aaaaaaaanosuchcompartment", AD1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kms_key_id", "ocid1.key.oc1.phx.aaaaaaaakey"),
        ("cluster_placement_group_id", "ocid1.clusterplacementgroup.oc1.phx.aaaaaaaacpg"),
        ("xrc_kms_key_id", "ocid1.key.oc1.iad.aaaaaaaakey"),
        ("block_volume_replicas", [M.BlockVolumeReplicaDetails(availability_domain=AD2)]),
    ],
)
def test_unbuilt_features_refused(
    bs: oci.core.BlockstorageClient, compartment: str, field: str, value: object
) -> None:
    wire_name = M.CreateVolumeDetails().attribute_map[field]
    with service_error(400, "InvalidParameter", wire_name):
        create_volume(bs, compartment, AD1, **{field: value})
    listed = bs.list_volumes(compartment_id=compartment).data
    assert listed == []


def test_update_refuses_replicas(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    vol = create_volume(bs, compartment, AD1)
    details = M.UpdateVolumeDetails(
        block_volume_replicas=[M.BlockVolumeReplicaDetails(availability_domain=AD2)]
    )
    with service_error(400, "InvalidParameter", "blockVolumeReplicas"):
        bs.update_volume(vol.id, details)


# --- list -----------------------------------------------------------------------------------


def test_list_filters(server: Server, bs: oci.core.BlockstorageClient, compartment: str) -> None:
    a = create_volume(bs, compartment, AD1, display_name="alpha")
    b = create_volume(bs, compartment, AD1, display_name="alpha-2")
    c = create_volume(bs, compartment, AD2, display_name="gamma")
    group = create_group(bs, compartment, AD1, [b.id])

    def listed(**kwargs: str) -> set[str]:
        return {v.id for v in bs.list_volumes(compartment_id=compartment, **kwargs).data}

    assert listed() == {a.id, b.id, c.id}
    assert listed(display_name="alpha") == {a.id}  # exact, not a prefix
    assert listed(display_name="alph") == set()
    assert listed(availability_domain=AD2) == {c.id}
    assert listed(availability_domain=AD1) == {a.id, b.id}
    assert listed(volume_group_id=group.id) == {b.id}
    assert listed(lifecycle_state="AVAILABLE") == {a.id, b.id, c.id}
    assert listed(lifecycle_state="TERMINATED") == set()

    # lifecycleState is case-insensitive on the wire (the SDK would refuse lowercase itself).
    raw = RawClient(server)
    for state in ("available", "Available"):
        resp = raw.get(f"/volumes?compartmentId={compartment}&lifecycleState={state}")
        assert resp.status == 200, resp.body
        assert {v["id"] for v in resp.json} == {a.id, b.id, c.id}
    bad = raw.get(f"/volumes?compartmentId={compartment}&lifecycleState=RUNNING")
    assert (bad.status, bad.code) == (400, "InvalidParameter")
    assert "lifecycleState" in bad.message

    # Another compartment sees none of them.
    assert bs.list_volumes(compartment_id=server.config()["tenancy"]).data is not None
    with service_error(404, "NotAuthorizedOrNotFound"):
        bs.list_volumes(compartment_id="ocid1.compartment.oc1..aaaaaaaanosuchcompartment")


def test_list_requires_compartment(server: Server) -> None:
    resp = RawClient(server).get("/volumes")
    assert (resp.status, resp.code) == (400, "MissingParameter")
    assert "compartmentId" in resp.message


def test_sorting(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    b = create_volume(bs, compartment, AD1, display_name="b", wait=False)
    c = create_volume(bs, compartment, AD1, display_name="c", wait=False)
    a = create_volume(bs, compartment, AD1, display_name="a", wait=False)
    upper = create_volume(bs, compartment, AD1, display_name="Z", wait=False)
    created = [b, c, a, upper]

    def order(**kwargs: str) -> list[str]:
        return ids(bs.list_volumes(compartment_id=compartment, **kwargs).data)

    assert order(sort_by="TIMECREATED", sort_order="ASC") == ids(created)
    assert order(sort_by="TIMECREATED", sort_order="DESC") == ids(created[::-1])
    # Case-sensitive: "Z" sorts before lowercase names.
    assert order(sort_by="DISPLAYNAME", sort_order="ASC") == ids([upper, a, b, c])
    assert order(sort_by="DISPLAYNAME", sort_order="DESC") == ids([c, b, a, upper])
    # Defaults: TIMECREATED DESC; DISPLAYNAME ASC.
    assert order() == ids(created[::-1])
    assert order(sort_by="DISPLAYNAME") == ids([upper, a, b, c])
    assert order(sort_order="ASC") == ids(created)


def test_paging_across_ads_and_equal_names(
    bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    """Without an AD filter results are grouped by AD, then sorted; ties (equal names) are
    still paged without loss or repeats."""
    made = [
        create_volume(bs, compartment, ad, display_name="same", wait=False).id
        for ad in (AD1, AD2, AD1, AD2, AD1)
    ]
    for sort_by in ("TIMECREATED", "DISPLAYNAME"):
        for sort_order in ("ASC", "DESC"):
            everything = oci.pagination.list_call_get_all_results(
                bs.list_volumes,
                compartment_id=compartment,
                limit=2,
                sort_by=sort_by,
                sort_order=sort_order,
            ).data
            assert sorted(ids(everything)) == sorted(made)
            ads = [v.availability_domain for v in everything]
            assert ads in ([AD1] * 3 + [AD2] * 2, [AD2] * 2 + [AD1] * 3), ads
            unpaged = bs.list_volumes(
                compartment_id=compartment, sort_by=sort_by, sort_order=sort_order
            ).data
            assert ids(everything) == ids(unpaged)
    per_ad = bs.list_volumes(
        compartment_id=compartment, availability_domain=AD1, sort_by="TIMECREATED", sort_order="ASC"
    ).data
    assert ids(per_ad) == [made[0], made[2], made[4]]


# --- update ---------------------------------------------------------------------------------


def test_update_fields(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    vol = create_volume(bs, compartment, AD1, display_name="before", freeform_tags={"a": "1"})
    etag = bs.get_volume(vol.id).headers["etag"]
    resp = bs.update_volume(
        vol.id,
        M.UpdateVolumeDetails(
            display_name="after",
            freeform_tags={"b": "2"},
            defined_tags={"ops": {"owner": "me"}},
            vpus_per_gb=30,
        ),
    )
    assert resp.status == 200
    assert resp.headers["etag"] != etag
    updated = resp.data
    assert updated.display_name == "after"
    assert updated.freeform_tags == {"b": "2"}  # replaced, not merged
    assert updated.defined_tags == {"ops": {"owner": "me"}}
    assert updated.vpus_per_gb == 30
    assert updated.size_in_gbs == 50
    again = bs.get_volume(vol.id)
    assert again.data.display_name == "after"
    assert again.data.vpus_per_gb == 30
    assert again.headers["etag"] == resp.headers["etag"]

    # Omitted fields stay as they are.
    same = bs.update_volume(vol.id, M.UpdateVolumeDetails(vpus_per_gb=10)).data
    assert (same.display_name, same.freeform_tags, same.vpus_per_gb) == ("after", {"b": "2"}, 10)


@pytest.mark.parametrize("vpus", [5, 25, 130, -10])
def test_update_bad_vpus(bs: oci.core.BlockstorageClient, compartment: str, vpus: int) -> None:
    vol = create_volume(bs, compartment, AD1, wait=False)
    with service_error(400, "InvalidParameter", "vpusPerGB"):
        bs.update_volume(vol.id, M.UpdateVolumeDetails(vpus_per_gb=vpus))


def test_empty_display_name_refused(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    vol = create_volume(bs, compartment, AD1, wait=False)
    with service_error(400, "InvalidParameter", "displayName"):
        bs.update_volume(vol.id, M.UpdateVolumeDetails(display_name=""))
    with service_error(400, "InvalidParameter", "displayName"):
        create_volume(bs, compartment, AD1, display_name="x" * 256)


def test_grow_and_shrink(server: Server, bs: oci.core.BlockstorageClient, compartment: str) -> None:
    vol = create_volume(bs, compartment, AD1)
    write_image(server, vol.id, 49 * GIB, b"tail of the old size")
    grown = bs.update_volume(vol.id, M.UpdateVolumeDetails(size_in_gbs=80)).data
    assert (grown.size_in_gbs, grown.size_in_mbs) == (80, 80 * 1024)
    assert image_path(server, vol.id).stat().st_size == 80 * GIB
    assert read_image(server, vol.id, 49 * GIB, 20) == b"tail of the old size"
    assert read_image(server, vol.id, 79 * GIB, 16) == bytes(16)
    assert bs.get_volume(vol.id).data.size_in_gbs == 80

    with service_error(400, "InvalidParameter", "sizeInGBs"):
        bs.update_volume(vol.id, M.UpdateVolumeDetails(size_in_gbs=60))
    assert bs.get_volume(vol.id).data.size_in_gbs == 80
    assert image_path(server, vol.id).stat().st_size == 80 * GIB
    with service_error(400, "InvalidParameter", "sizeInGBs"):
        bs.update_volume(vol.id, M.UpdateVolumeDetails(size_in_gbs=32769))


def test_grow_group_member(
    server: Server, bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    a = create_volume(bs, compartment, AD1)
    b = create_volume(bs, compartment, AD1, size_in_gbs=60)
    group = create_group(bs, compartment, AD1, [a.id, b.id])
    assert group.size_in_gbs == 110
    before = bs.get_volume_group(group.id).headers["etag"]
    bs.update_volume(a.id, M.UpdateVolumeDetails(size_in_gbs=90))
    after = bs.get_volume_group(group.id)
    assert (after.data.size_in_gbs, after.data.size_in_mbs) == (150, 150 * 1024)
    assert after.headers["etag"] != before
    assert image_path(server, a.id).stat().st_size == 90 * GIB


def test_update_unknown_volume(bs: oci.core.BlockstorageClient) -> None:
    with service_error(404, "NotAuthorizedOrNotFound"):
        bs.update_volume(
            "ocid1.volume.oc1.phx.aaaaaaaanotthereatall", M.UpdateVolumeDetails(display_name="x")
        )


# --- clone ----------------------------------------------------------------------------------


def test_clone_copies_data(
    server: Server, bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    src = create_volume(bs, compartment, AD1, display_name="source", vpus_per_gb=20)
    chunks = {0: b"boot sector " * 40, 7 * GIB + 123: os.urandom(4096), 50 * GIB - 5: b"last!"}
    for offset, data in chunks.items():
        write_image(server, src.id, offset, data)

    resp = bs.create_volume(
        M.CreateVolumeDetails(
            compartment_id=compartment,
            display_name="clone",
            source_details=M.VolumeSourceFromVolumeDetails(id=src.id),
        )
    )
    clone = resp.data
    assert clone.id != src.id
    assert clone.lifecycle_state == "PROVISIONING"
    assert clone.availability_domain == AD1  # inherited from the source
    assert clone.size_in_gbs == 50
    assert isinstance(clone.source_details, M.VolumeSourceFromVolumeDetails)
    assert clone.source_details.id == src.id
    assert clone.volume_group_id is None

    done = wait_volume(bs, clone.id)
    assert done.is_hydrated is True
    for offset, data in chunks.items():
        assert read_image(server, clone.id, offset, len(data)) == data
    # The clone is independent of its source.
    write_image(server, clone.id, 0, b"changed")
    assert read_image(server, src.id, 0, 7) == b"boot se"


def test_clone_larger(server: Server, bs: oci.core.BlockstorageClient, compartment: str) -> None:
    src = create_volume(bs, compartment, AD1)
    write_image(server, src.id, 1000, b"payload")
    clone = create_volume(
        bs,
        compartment,
        AD1,
        size_in_gbs=70,
        source_details=M.VolumeSourceFromVolumeDetails(id=src.id),
    )
    assert clone.size_in_gbs == 70
    assert image_path(server, clone.id).stat().st_size == 70 * GIB
    assert read_image(server, clone.id, 1000, 7) == b"payload"


def test_clone_errors(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    src = create_volume(bs, compartment, AD1, size_in_gbs=60)
    with service_error(400, "InvalidParameter", "sizeInGBs"):
        create_volume(
            bs,
            compartment,
            AD1,
            size_in_gbs=50,
            source_details=M.VolumeSourceFromVolumeDetails(id=src.id),
        )
    with service_error(400, "InvalidParameter", "availabilityDomain"):
        create_volume(
            bs,
            compartment,
            AD2,
            size_in_gbs=None,
            source_details=M.VolumeSourceFromVolumeDetails(id=src.id),
        )
    with service_error(400, "RelatedResourceNotAuthorizedOrNotFound", "sourceDetails"):
        create_volume(
            bs,
            compartment,
            AD1,
            size_in_gbs=None,
            source_details=M.VolumeSourceFromVolumeDetails(
                id="ocid1.volume.oc1.phx.aaaaaaaanotthereatall"
            ),
        )


# --- delete ---------------------------------------------------------------------------------


def test_delete_keeps_tombstone(
    server: Server, bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    vol = create_volume(bs, compartment, AD1)
    path = image_path(server, vol.id)
    assert path.exists()
    resp = bs.delete_volume(vol.id)
    assert resp.status == 204
    assert resp.data is None
    assert resp.request_id
    gone = wait_volume(bs, vol.id, "TERMINATED")
    assert gone.display_name == vol.display_name
    assert not path.exists()
    # Still answers; listed unless filtered; a second delete is harmless.
    assert bs.get_volume(vol.id).data.lifecycle_state == "TERMINATED"
    assert [v.lifecycle_state for v in bs.list_volumes(compartment_id=compartment).data] == [
        "TERMINATED"
    ]
    assert bs.list_volumes(compartment_id=compartment, lifecycle_state="AVAILABLE").data == []
    assert bs.delete_volume(vol.id).status == 204
    # A terminated volume cannot be changed or cloned.
    with service_error(409, "Conflict"):
        bs.update_volume(vol.id, M.UpdateVolumeDetails(display_name="zombie"))
    with service_error(400, "RelatedResourceNotAuthorizedOrNotFound"):
        create_volume(
            bs,
            compartment,
            AD1,
            size_in_gbs=None,
            source_details=M.VolumeSourceFromVolumeDetails(id=vol.id),
        )


def test_delete_unknown_volume(bs: oci.core.BlockstorageClient) -> None:
    with service_error(404, "NotAuthorizedOrNotFound"):
        bs.delete_volume("ocid1.volume.oc1.phx.aaaaaaaanotthereatall")


# --- change compartment ---------------------------------------------------------------------


def test_change_compartment(
    server: Server,
    bs: oci.core.BlockstorageClient,
    identity: oci.identity.IdentityClient,
    compartment: str,
) -> None:
    vol = create_volume(bs, compartment, AD1)
    other = identity.create_compartment(
        oci.identity.models.CreateCompartmentDetails(
            compartment_id=server.config()["tenancy"],
            name=f"dest-{vol.id[-6:]}",
            description="destination",
        )
    ).data.id
    before = bs.get_volume(vol.id).headers["etag"]
    resp = bs.change_volume_compartment(
        vol.id, M.ChangeVolumeCompartmentDetails(compartment_id=other)
    )
    assert resp.status == 204
    assert resp.data is None
    assert resp.headers["etag"] and resp.headers["etag"] != before
    got = bs.get_volume(vol.id)
    assert got.data.compartment_id == other
    assert got.headers["etag"] == resp.headers["etag"]
    assert ids(bs.list_volumes(compartment_id=other).data) == [vol.id]
    assert bs.list_volumes(compartment_id=compartment).data == []
    with service_error(404, "NotAuthorizedOrNotFound"):
        bs.change_volume_compartment(
            vol.id,
            M.ChangeVolumeCompartmentDetails(
                compartment_id="ocid1.compartment.oc1..aaaaaaaanosuchcompartment"
            ),
        )


# --- CLI ------------------------------------------------------------------------------------


def test_cli_lifecycle(server: Server, compartment: str) -> None:
    vol = server.cli(
        "bv",
        "volume",
        "create",
        "--compartment-id",
        compartment,
        "--availability-domain",
        AD2,
        "--display-name",
        "cli-vol",
        "--size-in-gbs",
        "55",
        "--vpus-per-gb",
        "0",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json
    data = vol["data"]
    assert data["lifecycle-state"] == "AVAILABLE"
    assert (data["size-in-gbs"], data["size-in-mbs"], data["vpus-per-gb"]) == (55, 56320, 0)
    assert data["is-hydrated"] is True
    assert vol["etag"]

    got = server.cli("bv", "volume", "get", "--volume-id", data["id"]).json
    assert got["data"]["display-name"] == "cli-vol"
    assert got["etag"]

    updated = server.cli(
        "bv",
        "volume",
        "update",
        "--volume-id",
        data["id"],
        "--size-in-gbs",
        "60",
        "--display-name",
        "cli-vol-2",
        "--force",
    ).json["data"]
    assert (updated["size-in-gbs"], updated["display-name"]) == (60, "cli-vol-2")
    assert image_path(server, data["id"]).stat().st_size == 60 * GIB

    deleted = server.cli(
        "bv",
        "volume",
        "delete",
        "--volume-id",
        data["id"],
        "--force",
        "--wait-for-state",
        "TERMINATED",
        "--wait-interval-seconds",
        "1",
    )
    assert deleted.returncode == 0
    got = server.cli("bv", "volume", "get", "--volume-id", data["id"]).json
    assert got["data"]["lifecycle-state"] == "TERMINATED"
    assert not image_path(server, data["id"]).exists()


def test_cli_errors(server: Server, compartment: str) -> None:
    missing = server.cli(
        "bv",
        "volume",
        "get",
        "--volume-id",
        "ocid1.volume.oc1.phx.aaaaaaaanotthereatall",
        check=False,
    )
    assert missing.returncode != 0
    assert (missing.error["status"], missing.error["code"]) == (404, "NotAuthorizedOrNotFound")
    too_small = server.cli(
        "bv",
        "volume",
        "create",
        "--compartment-id",
        compartment,
        "--availability-domain",
        AD1,
        "--size-in-gbs",
        "49",
        check=False,
    )
    assert (too_small.error["status"], too_small.error["code"]) == (400, "InvalidParameter")
    assert "sizeInGBs" in too_small.error["message"]


