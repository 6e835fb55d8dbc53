"""Volume group rules (spec §8): one group per volume, members AVAILABLE and in the group's
availability domain, at most 32 volumes; membership updates; clones; deletion keeps volumes."""

from __future__ import annotations

import pytest

from ocibv.domain.errors import (
    Conflict,
    IncorrectState,
    InvalidParameter,
    LimitExceeded,
    RelatedResourceNotAuthorizedOrNotFound,
)
from ocibv.services.listing import ListRequest
from tests.services.conftest import AD1, AD2, Cloud


def groups_listed(cloud: Cloud) -> list[str]:
    items, _ = cloud.services.volume_groups.list_volume_groups(
        cloud.caller, ListRequest({"compartment_id": cloud.compartment})
    )
    return [g.id for g in items]


def member_of(cloud: Cloud, volume_id: str) -> str | None:
    return cloud.get("volume", volume_id).parent_id


def test_create_lifecycle_and_membership(cloud: Cloud) -> None:
    a, b = cloud.volume(), cloud.volume(size_in_gbs=60)
    created = cloud.create_group([a, b], display_name="db")
    assert created.lifecycle_state == "PROVISIONING"
    assert created.attrs["volume_ids"] == [a, b]
    assert created.attrs["size_in_gbs"] == 110
    assert member_of(cloud, a) == member_of(cloud, b) == created.id  # at once, not after the job
    with pytest.raises(IncorrectState, match=created.id):  # not while PROVISIONING
        cloud.services.volume_groups.delete_volume_group(cloud.caller, created.id, None)
    cloud.settle()
    group = cloud.get("volumegroup", created.id)
    assert (group.lifecycle_state, group.attrs["is_hydrated"]) == ("AVAILABLE", True)
    assert sorted(cloud.list_volumes(parent_id=group.id)) == sorted([a, b])


def test_a_volume_is_in_one_group_only(cloud: Cloud) -> None:
    a, b = cloud.volume(), cloud.volume()
    first = cloud.group([a])
    with pytest.raises(Conflict, match=a):
        cloud.create_group([a, b])
    second = cloud.group([b])
    with pytest.raises(Conflict, match=a):
        cloud.services.volume_groups.update_volume_group(
            cloud.caller, second, {"volume_ids": [a, b]}, None
        )
    assert (member_of(cloud, a), member_of(cloud, b)) == (first, second)
    assert cloud.get("volumegroup", second).attrs["volume_ids"] == [b]
    assert sorted(groups_listed(cloud)) == sorted([first, second])  # nothing half-created


def test_members_must_be_available_and_in_the_ad(cloud: Cloud) -> None:
    here = cloud.volume()
    there = cloud.volume(availability_domain=AD2)
    with pytest.raises(InvalidParameter, match=there):
        cloud.create_group([here, there])
    provisioning = cloud.create_volume()
    with pytest.raises(IncorrectState, match=provisioning.id):
        cloud.create_group([here, provisioning.id])
    cloud.settle()
    cloud.services.volumes.delete_volume(cloud.caller, provisioning.id, None)
    cloud.settle()
    with pytest.raises(RelatedResourceNotAuthorizedOrNotFound, match=provisioning.id):
        cloud.create_group([here, provisioning.id])  # terminated
    with pytest.raises(RelatedResourceNotAuthorizedOrNotFound):
        cloud.create_group(["ocid1.volume.oc1.phx.aaaaaaaanotthereatall"])
    with pytest.raises(InvalidParameter, match="volumeIds"):
        cloud.create_group([here, here])
    with pytest.raises(InvalidParameter, match="volumeIds"):
        cloud.create_group([])
    with pytest.raises(InvalidParameter, match="availabilityDomain"):
        cloud.create_group([here], availability_domain="Uocm:PHX-AD-7")
    assert groups_listed(cloud) == []
    assert member_of(cloud, here) is None


def test_at_most_32_volumes(cloud: Cloud) -> None:
    vols = [cloud.create_volume().id for _ in range(33)]
    cloud.settle()
    with pytest.raises(LimitExceeded, match="32"):
        cloud.create_group(vols)
    group = cloud.group(vols[:32])
    assert cloud.get("volumegroup", group).attrs["size_in_gbs"] == 32 * 50
    with pytest.raises(LimitExceeded, match="32"):
        cloud.services.volume_groups.update_volume_group(
            cloud.caller, group, {"volume_ids": vols}, None
        )
    assert member_of(cloud, vols[32]) is None


def test_update_replaces_membership(cloud: Cloud) -> None:
    a, b, c = cloud.volume(), cloud.volume(), cloud.volume()
    group = cloud.group([a, b])
    before = cloud.get("volumegroup", group).etag
    updated = cloud.services.volume_groups.update_volume_group(
        cloud.caller, group, {"display_name": "renamed", "volume_ids": [b, c]}, None
    )
    assert updated.etag != before
    assert updated.attrs["volume_ids"] == [b, c] and updated.display_name == "renamed"
    assert (member_of(cloud, a), member_of(cloud, b), member_of(cloud, c)) == (None, group, group)
    cloud.services.volumes.delete_volume(cloud.caller, a, None)  # free again
    same = cloud.services.volume_groups.update_volume_group(
        cloud.caller, group, {"display_name": "n2"}, None
    )
    assert same.attrs["volume_ids"] == [b, c]


def test_membership_changes_only_when_available(cloud: Cloud) -> None:
    a, b = cloud.volume(), cloud.volume()
    created = cloud.create_group([a])
    with pytest.raises(IncorrectState, match=created.id):
        cloud.services.volume_groups.update_volume_group(
            cloud.caller, created.id, {"volume_ids": [a, b]}, None
        )
    cloud.settle()
    cloud.services.volume_groups.delete_volume_group(cloud.caller, created.id, None)
    with pytest.raises(Conflict, match=created.id):  # TERMINATING
        cloud.services.volume_groups.update_volume_group(
            cloud.caller, created.id, {"display_name": "x"}, None
        )


def test_delete_keeps_and_frees_the_volumes(cloud: Cloud) -> None:
    a, b = cloud.volume(), cloud.volume()
    group = cloud.group([a, b])
    cloud.services.volume_groups.delete_volume_group(cloud.caller, group, None)
    assert (member_of(cloud, a), member_of(cloud, b)) == (None, None)  # at once
    assert cloud.state("volumegroup", group) == "TERMINATING"
    cloud.settle()
    assert cloud.state("volumegroup", group) == "TERMINATED"
    assert {cloud.state("volume", v) for v in (a, b)} == {"AVAILABLE"}
    cloud.group([a])
    cloud.services.volumes.delete_volume(cloud.caller, b, None)


def test_clone_group(cloud: Cloud) -> None:
    a, b = cloud.volume(), cloud.volume(size_in_gbs=60)
    source = cloud.group([a, b])
    with open(cloud.services.settings.volume_path(b), "r+b") as handle:
        handle.seek(55 * 1024**3)
        handle.write(b"volume B, deep inside")
    clone = cloud.create_group([], source_details={"type": "volumeGroupId",
                                                   "volumeGroupId": source})
    new_a, new_b = clone.attrs["volume_ids"]
    assert not {new_a, new_b} & {a, b}
    assert clone.attrs["size_in_gbs"] == 110
    assert cloud.state("volume", new_a) == "PROVISIONING"
    # a source volume being copied cannot go away, even once out of its group
    cloud.services.volume_groups.delete_volume_group(cloud.caller, source, None)
    with pytest.raises(IncorrectState, match=b):
        cloud.services.volumes.delete_volume(cloud.caller, b, None)
    cloud.settle()
    assert cloud.state("volumegroup", clone.id) == "AVAILABLE"
    assert {member_of(cloud, v) for v in (new_a, new_b)} == {clone.id}
    assert cloud.get("volume", new_b).attrs["size_in_gbs"] == 60
    with open(cloud.services.settings.volume_path(new_b), "rb") as handle:
        handle.seek(55 * 1024**3)
        assert handle.read(21) == b"volume B, deep inside"
    with pytest.raises(InvalidParameter, match="availabilityDomain"):
        cloud.create_group([], availability_domain=AD2,
                           source_details={"type": "volumeGroupId", "volumeGroupId": clone.id})


def test_clone_needs_an_available_source(cloud: Cloud) -> None:
    source = cloud.create_group([cloud.volume()])
    with pytest.raises(IncorrectState, match=source.id):
        cloud.create_group([], source_details={"type": "volumeGroupId",
                                               "volumeGroupId": source.id})
    cloud.settle()
    assert [g for g in groups_listed(cloud) if g != source.id] == []
    assert cloud.get("volumegroup", source.id).availability_domain == AD1
