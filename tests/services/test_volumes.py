"""Volume rules: lifecycle, clones, resizing, deletion, compartments (no HTTP)."""

from __future__ import annotations

import pytest

from ocibv.domain import limits
from ocibv.domain.errors import (
    Conflict,
    IncorrectState,
    InvalidParameter,
    NoEtagMatch,
    NotAuthorizedOrNotFound,
    RelatedResourceNotAuthorizedOrNotFound,
)
from tests.services.conftest import AD1, AD2, Cloud

UNKNOWN_VOLUME = "ocid1.volume.oc1.phx.aaaaaaaanotthereatall"


def test_lifecycle_provisioning_available_terminating_terminated(cloud: Cloud) -> None:
    created = cloud.create_volume(display_name="life")
    assert created.lifecycle_state == "PROVISIONING"
    assert created.attrs["is_hydrated"] is False
    image = cloud.services.settings.volume_path(created.id)
    assert not image.exists()  # never AVAILABLE ahead of its image
    assert cloud.settle() == 1
    vol = cloud.get("volume", created.id)
    assert (vol.lifecycle_state, vol.attrs["is_hydrated"]) == ("AVAILABLE", True)
    assert image.stat().st_size == 50 * limits.GIB

    cloud.services.volumes.delete_volume(cloud.caller, vol.id, None)
    assert cloud.state("volume", vol.id) == "TERMINATING"
    cloud.services.volumes.delete_volume(cloud.caller, vol.id, None)  # again: harmless
    cloud.settle()
    assert cloud.state("volume", vol.id) == "TERMINATED"
    assert not image.exists()
    cloud.services.volumes.delete_volume(cloud.caller, vol.id, None)  # a tombstone too
    assert cloud.state("volume", vol.id) == "TERMINATED"


def test_provisioning_volume_cannot_be_deleted(cloud: Cloud) -> None:
    created = cloud.create_volume()
    with pytest.raises(IncorrectState, match=created.id):
        cloud.services.volumes.delete_volume(cloud.caller, created.id, None)
    cloud.settle()
    cloud.services.volumes.delete_volume(cloud.caller, created.id, None)


def test_terminated_volume_cannot_change(cloud: Cloud) -> None:
    vol = cloud.volume()
    cloud.services.volumes.delete_volume(cloud.caller, vol, None)
    with pytest.raises(Conflict):  # TERMINATING
        cloud.services.volumes.update_volume(cloud.caller, vol, {"display_name": "z"}, None)
    cloud.settle()
    with pytest.raises(Conflict):  # TERMINATED
        cloud.services.volumes.update_volume(cloud.caller, vol, {"display_name": "z"}, None)
    with pytest.raises(RelatedResourceNotAuthorizedOrNotFound, match="sourceDetails"):
        cloud.clone(vol)
    other = cloud.new_compartment()
    with pytest.raises(Conflict):
        cloud.services.volumes.change_volume_compartment(cloud.caller, vol, other)


def test_size_defaults_and_bounds(cloud: Cloud) -> None:
    assert cloud.create_volume(size_in_gbs=None).attrs["size_in_gbs"] == 1024
    assert cloud.create_volume(size_in_gbs=None, size_in_mbs=60 * 1024).attrs["size_in_gbs"] == 60
    with pytest.raises(InvalidParameter, match="availabilityDomain"):
        cloud.create_volume(availability_domain="Uocm:PHX-AD-9")
    with pytest.raises(InvalidParameter, match="availabilityDomain"):
        cloud.create_volume(availability_domain=None)


def test_unknown_or_deleted_compartment_refused(cloud: Cloud) -> None:
    with pytest.raises(NotAuthorizedOrNotFound):
        cloud.create_volume(compartment_id="ocid1.compartment.oc1..aaaaaaaanosuch")
    gone = cloud.new_compartment()
    cloud.services.identity.delete_compartment(cloud.caller, gone, None)
    cloud.settle()
    assert cloud.state("compartment", gone) == "DELETED"
    with pytest.raises(NotAuthorizedOrNotFound, match=gone):
        cloud.create_volume(compartment_id=gone)
    assert cloud.list_volumes() == []


def test_clone_rules(cloud: Cloud) -> None:
    src = cloud.create_volume(size_in_gbs=60)
    with pytest.raises(IncorrectState, match=src.id):  # not AVAILABLE yet
        cloud.clone(src.id)
    cloud.settle()
    with pytest.raises(InvalidParameter, match="sizeInGBs"):
        cloud.clone(src.id, size_in_gbs=50)
    with pytest.raises(InvalidParameter, match="availabilityDomain"):
        cloud.clone(src.id, availability_domain=AD2)
    with pytest.raises(RelatedResourceNotAuthorizedOrNotFound, match="sourceDetails"):
        cloud.clone(UNKNOWN_VOLUME)
    clone = cloud.clone(src.id)
    assert (clone.availability_domain, clone.attrs["size_in_gbs"]) == (AD1, 60)
    assert clone.attrs["source_details"] == {"type": "volume", "id": src.id}
    bigger = cloud.clone(src.id, size_in_gbs=70)
    assert bigger.attrs["size_in_gbs"] == 70
    assert cloud.list_volumes() == [bigger.id, clone.id, src.id]


def test_source_cannot_be_deleted_while_cloned(cloud: Cloud) -> None:
    src = cloud.volume()
    with open(cloud.services.settings.volume_path(src), "r+b") as handle:
        handle.seek(12345)
        handle.write(b"must survive")
    clone = cloud.clone(src)
    with pytest.raises(IncorrectState) as refused:
        cloud.services.volumes.delete_volume(cloud.caller, src, None)
    assert src in refused.value.message and clone.id in refused.value.message
    assert cloud.state("volume", src) == "AVAILABLE"
    cloud.settle()
    with open(cloud.services.settings.volume_path(clone.id), "rb") as handle:
        handle.seek(12345)
        assert handle.read(12) == b"must survive"
    cloud.services.volumes.delete_volume(cloud.caller, src, None)  # free once the copy is done


def test_update_replaces_fields_and_grows(cloud: Cloud) -> None:
    vol = cloud.volume(display_name="before", freeform_tags={"a": "1"})
    before = cloud.get("volume", vol)
    updated = cloud.services.volumes.update_volume(
        cloud.caller, vol, {"display_name": "after", "freeform_tags": {"b": "2"},
                            "vpus_per_gb": 30, "size_in_gbs": 80}, None,
    )
    assert updated.etag != before.etag
    got = cloud.get("volume", vol)
    assert (got.display_name, got.attrs["freeform_tags"]) == ("after", {"b": "2"})
    assert (got.attrs["vpus_per_gb"], got.attrs["size_in_gbs"]) == (30, 80)
    assert cloud.services.settings.volume_path(vol).stat().st_size == 80 * limits.GIB
    # omitted fields stay; shrinking is refused and changes nothing
    cloud.services.volumes.update_volume(cloud.caller, vol, {"vpus_per_gb": 10}, None)
    with pytest.raises(InvalidParameter, match="sizeInGBs"):
        cloud.services.volumes.update_volume(cloud.caller, vol, {"size_in_gbs": 60}, None)
    got = cloud.get("volume", vol)
    assert (got.display_name, got.attrs["vpus_per_gb"], got.attrs["size_in_gbs"]) == (
        "after", 10, 80,
    )


def test_resize_only_when_available(cloud: Cloud) -> None:
    created = cloud.create_volume()
    with pytest.raises(IncorrectState, match=created.id):
        cloud.services.volumes.update_volume(cloud.caller, created.id, {"size_in_gbs": 60}, None)
    cloud.settle()
    cloud.create_backup(created.id)  # holds the volume until the backup has read it
    with pytest.raises(IncorrectState, match=created.id):
        cloud.services.volumes.update_volume(cloud.caller, created.id, {"size_in_gbs": 60}, None)
    cloud.settle()
    cloud.services.volumes.update_volume(cloud.caller, created.id, {"size_in_gbs": 60}, None)


def test_growing_a_member_grows_its_group(cloud: Cloud) -> None:
    a, b = cloud.volume(), cloud.volume(size_in_gbs=60)
    group = cloud.group([a, b])
    before = cloud.get("volumegroup", group)
    assert before.attrs["size_in_gbs"] == 110
    cloud.services.volumes.update_volume(cloud.caller, a, {"size_in_gbs": 90}, None)
    after = cloud.get("volumegroup", group)
    assert after.attrs["size_in_gbs"] == 150
    assert after.etag != before.etag


def test_if_match(cloud: Cloud) -> None:
    vol = cloud.volume()
    etag = cloud.get("volume", vol).etag
    with pytest.raises(NoEtagMatch, match=vol):
        cloud.services.volumes.update_volume(cloud.caller, vol, {"display_name": "x"}, "stale")
    with pytest.raises(NoEtagMatch):
        cloud.services.volumes.delete_volume(cloud.caller, vol, "stale")
    updated = cloud.services.volumes.update_volume(
        cloud.caller, vol, {"display_name": "x"}, f'"{etag}"'
    )
    with pytest.raises(NoEtagMatch):  # the old etag is stale now
        cloud.services.volumes.delete_volume(cloud.caller, vol, etag)
    cloud.services.volumes.delete_volume(cloud.caller, vol, updated.etag)
    assert cloud.state("volume", vol) == "TERMINATING"


def test_change_compartment(cloud: Cloud) -> None:
    vol = cloud.volume()
    other = cloud.new_compartment()
    before = cloud.get("volume", vol).etag
    moved = cloud.services.volumes.change_volume_compartment(cloud.caller, vol, other)
    assert moved.compartment_id == other and moved.etag != before
    assert cloud.list_volumes() == []
    assert cloud.list_volumes(compartment_id=other) == [vol]
    with pytest.raises(NotAuthorizedOrNotFound):
        cloud.services.volumes.change_volume_compartment(
            cloud.caller, vol, "ocid1.compartment.oc1..aaaaaaaanosuch"
        )
    # a PROVISIONING volume may move too
    fresh = cloud.create_volume()
    cloud.services.volumes.change_volume_compartment(cloud.caller, fresh.id, other)
    assert cloud.get("volume", fresh.id).compartment_id == other


def test_member_cannot_be_deleted(cloud: Cloud) -> None:
    vol = cloud.volume()
    group = cloud.group([vol])
    with pytest.raises(Conflict) as refused:
        cloud.services.volumes.delete_volume(cloud.caller, vol, None)
    assert group in refused.value.message
    assert cloud.state("volume", vol) == "AVAILABLE"


def test_unknown_volume(cloud: Cloud) -> None:
    volumes = cloud.services.volumes
    for call in (
        lambda: volumes.get_volume(cloud.caller, UNKNOWN_VOLUME),
        lambda: volumes.update_volume(cloud.caller, UNKNOWN_VOLUME, {"display_name": "x"}, None),
        lambda: volumes.delete_volume(cloud.caller, UNKNOWN_VOLUME, None),
        lambda: volumes.get_volume(cloud.caller, "../../etc/passwd"),
        lambda: volumes.get_volume(cloud.caller, cloud.compartment),  # another kind's OCID
    ):
        with pytest.raises(NotAuthorizedOrNotFound):
            call()
