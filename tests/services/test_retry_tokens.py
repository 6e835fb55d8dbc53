"""Retry tokens (spec §6): the same request with the same token creates one resource; another
body is a Conflict; a failed request spends nothing; a purged resource invalidates its token;
tokens are per tenancy and per operation."""

from __future__ import annotations

import pytest

from ocibv.domain.errors import Conflict, InvalidatedRetryToken, InvalidParameter
from tests.services.conftest import Cloud


def test_same_body_same_volume_one_job(cloud: Cloud) -> None:
    first = cloud.create_volume("token-one", display_name="rt")
    again = cloud.create_volume("token-one", display_name="rt")
    assert again.id == first.id
    assert cloud.settle() == 1  # the repeat queued nothing
    other = cloud.create_volume("token-two", display_name="rt")
    assert other.id != first.id
    with pytest.raises(Conflict, match="token-one"):
        cloud.create_volume("token-one", display_name="rt", size_in_gbs=60)
    assert sorted(cloud.list_volumes()) == sorted([first.id, other.id])
    # the repeat answers the volume as it is now, not as it was
    assert cloud.create_volume("token-one", display_name="rt").lifecycle_state == "AVAILABLE"


def test_failed_request_spends_no_token(cloud: Cloud) -> None:
    with pytest.raises(InvalidParameter):
        cloud.create_volume("after-failure", availability_domain="Uocm:PHX-AD-9")
    assert cloud.create_volume("after-failure").lifecycle_state == "PROVISIONING"


def test_purged_resource_invalidates_its_token(cloud: Cloud) -> None:
    cloud.services.settings.tombstone_seconds = 0
    vol = cloud.create_volume("short-lived")
    cloud.settle()
    cloud.services.volumes.delete_volume(cloud.caller, vol.id, None)
    cloud.settle()
    # while the tombstone lasts the token answers with the terminated volume
    assert cloud.create_volume("short-lived").lifecycle_state == "TERMINATED"
    cloud.services.housekeeping_once()
    assert cloud.list_volumes() == []
    with pytest.raises(InvalidatedRetryToken, match="short-lived"):
        cloud.create_volume("short-lived")
    assert cloud.list_volumes() == []


def test_tokens_are_per_tenancy(cloud: Cloud, other_cloud: Cloud) -> None:
    ours = cloud.create_volume("shared-token")
    theirs = other_cloud.create_volume("shared-token")
    assert ours.id != theirs.id
    assert (ours.tenancy_id, theirs.tenancy_id) == (cloud.tenancy, other_cloud.tenancy)


def test_groups_and_backups_honour_tokens(cloud: Cloud) -> None:
    a = cloud.volume()
    first = cloud.create_group([a], "group-token")
    assert cloud.create_group([a], "group-token").id == first.id
    with pytest.raises(Conflict, match="group-token"):
        cloud.create_group([a], "group-token", display_name="different")
    cloud.settle()

    b = cloud.volume()
    backup = cloud.create_backup(b, "backup-token")
    assert cloud.create_backup(b, "backup-token").id == backup.id  # not "already backing up"
    with pytest.raises(Conflict, match="backup-token"):
        cloud.create_backup(b, "backup-token", type="FULL")
    cloud.settle()
    group_backup = cloud.create_group_backup(first.id, "gb-token")
    assert cloud.create_group_backup(first.id, "gb-token").id == group_backup.id
    assert cloud.settle() == 1


def test_same_token_for_another_operation_is_another_request(cloud: Cloud) -> None:
    vol = cloud.volume()
    group = cloud.create_group([vol], "reused")
    assert cloud.create_volume("reused").id not in (vol, group.id)
