"""Retention (spec §3.9): prevent-deletion, retention lock and legal hold refuse delete and
weakening with 409 Conflict; expiry lifts them. Expiry is observed by advancing the service
clock, never by sleeping: once with ``ocibv clock advance`` (the running server sees the
offset the command stores), otherwise in process. Every rule is also tested in process in
tests/services/test_retention.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import oci
import pytest

from tests.e2e.helpers import new_volume, wait
from tests.e2e.server import InProcessServer

M = oci.core.models
DAY = 86400.0


@pytest.fixture(scope="module")
def env(own_server: InProcessServer) -> dict[str, Any]:
    """A server of this module's own: moving its clock days ahead moves everyone's *now*."""
    server = own_server
    bs = server.blockstorage()
    tenancy = server.config()["tenancy"]
    ad = server.identity().list_availability_domains(tenancy).data[0].name
    volume = new_volume(bs, tenancy, ad, "kept")
    return {"server": server, "bs": bs, "volume": volume, "tenancy": tenancy, "ad": ad}


def _advance(env: dict[str, Any], seconds: float) -> None:
    """What ``ocibv clock advance`` does, in process."""
    assert env["server"].services is not None
    env["server"].services.clock.advance(seconds)


def _one_day() -> M.RetentionDuration:
    return M.RetentionDuration(retention_time_unit="DAYS", retention_time_amount=1)


def _backup(env: dict[str, Any], **retention: Any) -> M.VolumeBackup:
    bs = env["bs"]
    created = bs.create_volume_backup(
        M.CreateVolumeBackupDetails(volume_id=env["volume"], **retention)
    ).data
    return wait(bs, bs.get_volume_backup(created.id), "AVAILABLE")


def _refused(call: Any, *args: Any) -> oci.exceptions.ServiceError:
    with pytest.raises(oci.exceptions.ServiceError) as err:
        call(*args)
    assert (err.value.status, err.value.code) == (409, "Conflict"), err.value.message
    return err.value


def test_prevent_deletion_until_cleared(env: dict[str, Any]) -> None:
    bs = env["bs"]
    backup = _backup(env, retention_period=_one_day(), is_prevent_deletion_enabled=True)
    assert backup.time_retention_expires_at - backup.time_created == timedelta(seconds=DAY)
    _refused(bs.delete_volume_backup, backup.id)
    # without a lock the protection may be switched off by its owner
    bs.update_volume_backup(backup.id, M.UpdateVolumeBackupDetails(
        is_prevent_deletion_enabled=False))
    bs.delete_volume_backup(backup.id)
    assert wait(bs, bs.get_volume_backup(backup.id), "TERMINATED").lifecycle_state == "TERMINATED"


def test_lock_refuses_delete_and_weakening_until_expiry(env: dict[str, Any]) -> None:
    bs = env["bs"]
    backup = _backup(env, retention_period=_one_day(), is_retention_lock_enabled=True,
                     is_prevent_deletion_enabled=True)
    _refused(bs.delete_volume_backup, backup.id)
    _refused(bs.update_volume_backup, backup.id,
             M.UpdateVolumeBackupDetails(is_retention_lock_enabled=False))
    _refused(bs.update_volume_backup, backup.id,
             M.UpdateVolumeBackupDetails(is_prevent_deletion_enabled=False))
    # lengthening is always allowed; a rename is not a weakening
    longer = bs.update_volume_backup(backup.id, M.UpdateVolumeBackupDetails(
        display_name="still locked",
        retention_period=M.RetentionDuration(retention_time_unit="DAYS",
                                             retention_time_amount=2))).data
    assert longer.time_retention_expires_at - longer.time_created == timedelta(seconds=2 * DAY)
    _refused(bs.update_volume_backup, backup.id, M.UpdateVolumeBackupDetails(
        retention_period=_one_day()))
    _refused(bs.delete_volume_backup, backup.id)
    env["server"].ocibv("clock", "advance", "1d", spawn=True)  # another process moves it
    _refused(bs.delete_volume_backup, backup.id)  # the lengthened window still holds
    _advance(env, DAY + 60)
    bs.delete_volume_backup(backup.id)
    assert wait(bs, bs.get_volume_backup(backup.id), "TERMINATED").lifecycle_state == "TERMINATED"


def test_lock_needs_a_period(env: dict[str, Any]) -> None:
    with pytest.raises(oci.exceptions.ServiceError) as err:
        env["bs"].create_volume_backup(M.CreateVolumeBackupDetails(
            volume_id=env["volume"], is_retention_lock_enabled=True))
    assert (err.value.status, err.value.code) == (400, "InvalidParameter")
    assert "retentionPeriod" in err.value.message


def test_legal_hold_ignores_expiry(env: dict[str, Any]) -> None:
    bs = env["bs"]
    backup = _backup(env, retention_period=_one_day(), is_indefinite_retention_enabled=True)
    _advance(env, 2 * DAY)
    _refused(bs.delete_volume_backup, backup.id)
    bs.update_volume_backup(backup.id, M.UpdateVolumeBackupDetails(
        is_indefinite_retention_enabled=False))
    bs.delete_volume_backup(backup.id)


def test_locked_member_protects_the_group_backup(env: dict[str, Any]) -> None:
    bs, server = env["bs"], env["server"]
    volume = new_volume(bs, env["tenancy"], env["ad"], "grouped")
    group = bs.create_volume_group(M.CreateVolumeGroupDetails(
        compartment_id=env["tenancy"], availability_domain=env["ad"],
        source_details=M.VolumeGroupSourceFromVolumesDetails(volume_ids=[volume]),
    )).data
    wait(bs, bs.get_volume_group(group.id), "AVAILABLE")
    created = server.cli(
        "bv", "volume-group-backup", "create", "--volume-group-id", group.id,
        "--retention-period", '{"retentionTimeUnit":"DAYS","retentionTimeAmount":1}',
        "--is-retention-lock-enabled", "true",
        "--wait-for-state", "AVAILABLE", "--wait-interval-seconds", "1",
    ).json["data"]
    assert created["is-retention-lock-enabled"] is True
    refused = server.cli("bv", "volume-group-backup", "delete", "--force",
                         "--volume-group-backup-id", created["id"], check=False)
    assert refused.returncode != 0 and refused.error["code"] == "Conflict"
    member = created["volume-backup-ids"][0]
    _refused(bs.delete_volume_backup, member)  # members go with their group backup
    _advance(env, 2 * DAY)
    server.cli("bv", "volume-group-backup", "delete", "--force", "--volume-group-backup-id",
               created["id"], "--wait-for-state", "TERMINATED", "--wait-interval-seconds", "1")
    assert bs.get_volume_backup(member).data.lifecycle_state == "TERMINATED"
