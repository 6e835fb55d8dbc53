"""Compartments and tenancies: a compartment holding a live resource is not deleted; names are
unique among live siblings; another tenancy sees nothing of ours, as if it did not exist."""

from __future__ import annotations

import pytest

from ocibv.domain.errors import (
    Conflict,
    NotAuthorizedOrNotFound,
    RelatedResourceNotAuthorizedOrNotFound,
)
from ocibv.services.listing import ListRequest
from tests.services.conftest import Cloud


def test_compartment_holding_a_live_volume_is_not_deleted(cloud: Cloud) -> None:
    identity = cloud.services.identity
    live = cloud.volume(display_name="still here")
    for _ in range(101):  # however many terminated volumes it also holds (more than a page)
        gone = cloud.create_volume()
        cloud.settle()
        cloud.services.volumes.delete_volume(cloud.caller, gone.id, None)
    cloud.settle()
    with pytest.raises(Conflict, match=live):
        identity.delete_compartment(cloud.caller, cloud.compartment, None)
    assert cloud.state("compartment", cloud.compartment) == "ACTIVE"
    cloud.services.volumes.delete_volume(cloud.caller, live, None)
    with pytest.raises(Conflict, match=live):  # TERMINATING still holds it
        identity.delete_compartment(cloud.caller, cloud.compartment, None)
    cloud.settle()
    identity.delete_compartment(cloud.caller, cloud.compartment, None)
    assert cloud.state("compartment", cloud.compartment) == "DELETING"
    cloud.settle()
    assert cloud.state("compartment", cloud.compartment) == "DELETED"


def test_groups_and_backups_hold_a_compartment_too(cloud: Cloud) -> None:
    vol = cloud.volume()
    backup = cloud.backup(vol)
    moved = cloud.new_compartment()
    cloud.services.volume_backups.change_volume_backup_compartment(cloud.caller, backup, moved)
    with pytest.raises(Conflict, match=backup):
        cloud.services.identity.delete_compartment(cloud.caller, moved, None)


def test_names_are_unique_among_live_siblings(cloud: Cloud) -> None:
    cloud.new_compartment("dup")
    with pytest.raises(Conflict, match="dup"):
        cloud.new_compartment("dup")
    cloud.new_compartment("dup", parent=cloud.compartment)  # another parent: fine


def test_other_tenancy_sees_nothing(cloud: Cloud, other_cloud: Cloud) -> None:
    vol = cloud.volume()
    group = cloud.group([cloud.volume()])
    theirs = other_cloud.caller
    volumes, groups = cloud.services.volumes, cloud.services.volume_groups
    for call in (
        lambda: volumes.get_volume(theirs, vol),
        lambda: volumes.update_volume(theirs, vol, {"display_name": "mine now"}, None),
        lambda: volumes.delete_volume(theirs, vol, None),
        lambda: volumes.change_volume_compartment(theirs, vol, other_cloud.compartment),
        lambda: groups.get_volume_group(theirs, group),
        lambda: groups.delete_volume_group(theirs, group, None),
        lambda: volumes.list_volumes(theirs, ListRequest({"compartment_id": cloud.compartment})),
        lambda: other_cloud.create_volume(compartment_id=cloud.compartment),
        lambda: cloud.services.identity.get_compartment(theirs, cloud.compartment),
        lambda: cloud.services.identity.list_availability_domains(theirs, cloud.tenancy),
    ):
        with pytest.raises(NotAuthorizedOrNotFound):
            call()
    # named in a body, our resources are "related resources" they cannot see
    with pytest.raises(RelatedResourceNotAuthorizedOrNotFound):
        other_cloud.clone(vol)
    with pytest.raises(RelatedResourceNotAuthorizedOrNotFound):
        other_cloud.create_group([vol])
    with pytest.raises(RelatedResourceNotAuthorizedOrNotFound):
        other_cloud.create_backup(vol)
    # ours cannot move into their tenancy either
    with pytest.raises(NotAuthorizedOrNotFound):
        volumes.change_volume_compartment(cloud.caller, vol, other_cloud.compartment)
    assert cloud.get("volume", vol).display_name != "mine now"
    assert other_cloud.list_volumes() == []


def test_the_same_message_for_foreign_and_missing(cloud: Cloud, other_cloud: Cloud) -> None:
    vol = cloud.volume()
    missing = "ocid1.volume.oc1.phx.aaaaaaaanotthereatall"
    with pytest.raises(NotAuthorizedOrNotFound) as foreign:
        cloud.services.volumes.get_volume(other_cloud.caller, vol)
    with pytest.raises(NotAuthorizedOrNotFound) as absent:
        cloud.services.volumes.get_volume(other_cloud.caller, missing)
    assert foreign.value.message.replace(vol, "ID") == absent.value.message.replace(missing, "ID")
