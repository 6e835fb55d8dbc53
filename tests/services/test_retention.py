"""Retention rules (spec §3.9): prevent-deletion, retention lock and legal hold refuse delete
and weakening with 409 Conflict (never IncorrectState, which clients retry); expiry lifts the
first two, never a legal hold. A retention day is 86400 s of the service clock, which the
tests move forward (``services.clock.advance``) instead of sleeping."""

from __future__ import annotations

from typing import Any

import pytest

from ocibv.domain.errors import Conflict, InvalidParameter
from tests.services.conftest import Cloud


def days(n: int) -> dict[str, Any]:
    return {"retention_time_unit": "DAYS", "retention_time_amount": n}


def delete(cloud: Cloud, backup_id: str) -> None:
    cloud.services.volume_backups.delete_volume_backup(cloud.caller, backup_id, None)


def update(cloud: Cloud, backup_id: str, **details: Any) -> Any:
    return cloud.services.volume_backups.update_volume_backup(
        cloud.caller, backup_id, details, None
    )


def expiry_us(cloud: Cloud, backup_id: str) -> int:
    res = cloud.get("volumebackup", backup_id)
    return int(res.attrs["retention_expires_us"]) - res.created_us


DAY = 86400.0
DAY_US = 86400 * 1_000_000


@pytest.fixture
def volume(cloud: Cloud) -> str:
    return cloud.volume()


def test_prevent_deletion_until_cleared(cloud: Cloud, volume: str) -> None:
    backup = cloud.backup(volume, retention_period=days(1), is_prevent_deletion_enabled=True)
    assert expiry_us(cloud, backup) == DAY_US
    with pytest.raises(Conflict, match=backup):
        delete(cloud, backup)
    update(cloud, backup, is_prevent_deletion_enabled=False)  # no lock: the owner may
    delete(cloud, backup)
    cloud.settle()
    assert cloud.state("volumebackup", backup) == "TERMINATED"


def test_prevent_deletion_without_a_period_holds_until_cleared(cloud: Cloud, volume: str) -> None:
    backup = cloud.backup(volume, is_prevent_deletion_enabled=True)
    assert cloud.get("volumebackup", backup).attrs["retention_expires_us"] is None
    with pytest.raises(Conflict, match=backup):
        delete(cloud, backup)


def test_lock_refuses_delete_and_weakening(cloud: Cloud, volume: str) -> None:
    backup = cloud.backup(volume, retention_period=days(1), is_retention_lock_enabled=True,
                          is_prevent_deletion_enabled=True)
    with pytest.raises(Conflict, match=backup):
        delete(cloud, backup)
    for weaker in ({"is_retention_lock_enabled": False}, {"is_prevent_deletion_enabled": False}):
        with pytest.raises(Conflict, match=backup):
            update(cloud, backup, **weaker)
    with pytest.raises((Conflict, InvalidParameter)):  # a lock without its period
        update(cloud, backup, retention_period=None)
    # lengthening is always allowed; a rename is not a weakening
    longer = update(cloud, backup, display_name="still locked", retention_period=days(2))
    assert longer.display_name == "still locked"
    assert expiry_us(cloud, backup) == 2 * DAY_US
    with pytest.raises(Conflict, match=backup):  # back to 1 day: shorter
        update(cloud, backup, retention_period=days(1))
    with pytest.raises(Conflict, match=backup):
        delete(cloud, backup)
    got = cloud.get("volumebackup", backup)
    assert got.attrs["is_retention_lock_enabled"] and got.attrs["is_prevent_deletion_enabled"]


def test_lock_needs_a_period(cloud: Cloud, volume: str) -> None:
    with pytest.raises(InvalidParameter, match="retentionPeriod"):
        cloud.create_backup(volume, is_retention_lock_enabled=True)
    backup = cloud.backup(volume)  # the refused request held nothing
    with pytest.raises(InvalidParameter, match="retentionPeriod"):
        update(cloud, backup, is_retention_lock_enabled=True)
    with pytest.raises(InvalidParameter, match="retentionTimeAmount"):
        cloud.create_backup(volume, retention_period=days(36501))


def test_legal_hold_refuses_delete_and_may_be_lifted_under_a_lock(
    cloud: Cloud, volume: str
) -> None:
    backup = cloud.backup(volume, retention_period=days(1), is_indefinite_retention_enabled=True,
                          is_retention_lock_enabled=True)
    with pytest.raises(Conflict, match="legal hold"):
        delete(cloud, backup)
    update(cloud, backup, is_indefinite_retention_enabled=False)
    with pytest.raises(Conflict, match=backup):  # the lock still holds it
        delete(cloud, backup)


def test_a_locked_group_backup_protects_its_members(cloud: Cloud, volume: str) -> None:
    group = cloud.group([volume])
    backup = cloud.group_backup(group, retention_period=days(1), is_retention_lock_enabled=True)
    (member,) = backup.attrs["volume_backup_ids"]
    assert cloud.get("volumebackup", member).attrs["is_retention_lock_enabled"] is True
    groups = cloud.services.volume_group_backups
    with pytest.raises(Conflict, match=backup.id):
        groups.delete_volume_group_backup(cloud.caller, backup.id, None)
    with pytest.raises(Conflict):
        delete(cloud, member)
    with pytest.raises(Conflict, match=backup.id):
        groups.update_volume_group_backup(
            cloud.caller, backup.id, {"is_retention_lock_enabled": False}, None
        )
    # lengthening the group backup's period lengthens its members'
    groups.update_volume_group_backup(
        cloud.caller, backup.id,
        {"retention_period": days(3), "is_retention_lock_enabled": True}, None,
    )
    assert expiry_us(cloud, member) == 3 * DAY_US


# --- time passing ---------------------------------------------------------------------------


def advance(cloud: Cloud, seconds: float) -> None:
    cloud.services.clock.advance(seconds)


def test_prevent_deletion_ends_with_its_window(cloud: Cloud, volume: str) -> None:
    backup = cloud.backup(volume, retention_period=days(1), is_prevent_deletion_enabled=True)
    advance(cloud, DAY - 60)
    with pytest.raises(Conflict, match=backup):
        delete(cloud, backup)
    advance(cloud, 120)
    delete(cloud, backup)
    cloud.settle()
    assert cloud.state("volumebackup", backup) == "TERMINATED"


def test_lock_lifts_at_the_end_of_the_lengthened_window(cloud: Cloud, volume: str) -> None:
    backup = cloud.backup(volume, retention_period=days(1), is_retention_lock_enabled=True,
                          is_prevent_deletion_enabled=True)
    update(cloud, backup, retention_period=days(2))
    advance(cloud, DAY + 60)
    with pytest.raises(Conflict, match=backup):  # the lengthened window still holds
        delete(cloud, backup)
    with pytest.raises(Conflict, match=backup):
        update(cloud, backup, is_retention_lock_enabled=False)
    advance(cloud, DAY)
    update(cloud, backup, is_prevent_deletion_enabled=False)  # past the window: no longer locked
    delete(cloud, backup)
    cloud.settle()
    assert cloud.state("volumebackup", backup) == "TERMINATED"


def test_legal_hold_ignores_expiry(cloud: Cloud, volume: str) -> None:
    backup = cloud.backup(volume, retention_period=days(1), is_indefinite_retention_enabled=True)
    advance(cloud, 2 * DAY)
    with pytest.raises(Conflict, match="legal hold"):
        delete(cloud, backup)
    update(cloud, backup, is_indefinite_retention_enabled=False)
    delete(cloud, backup)


def test_years_are_calendar_years(cloud: Cloud, volume: str) -> None:
    backup = cloud.backup(volume, retention_period={"retention_time_unit": "YEARS",
                                                    "retention_time_amount": 1},
                          is_prevent_deletion_enabled=True)
    advance(cloud, 364 * DAY)
    with pytest.raises(Conflict, match=backup):
        delete(cloud, backup)
    advance(cloud, 2 * DAY + 60)  # 366 days covers a leap year too
    delete(cloud, backup)


def test_a_locked_group_backup_and_its_members_go_together_after_expiry(
    cloud: Cloud, volume: str
) -> None:
    group = cloud.group([volume])
    backup = cloud.group_backup(group, retention_period=days(1), is_retention_lock_enabled=True)
    (member,) = backup.attrs["volume_backup_ids"]
    advance(cloud, DAY + 60)
    with pytest.raises(Conflict, match=backup.id):  # expired, but still its group's
        delete(cloud, member)
    cloud.services.volume_group_backups.delete_volume_group_backup(cloud.caller, backup.id, None)
    cloud.settle()
    assert cloud.state("volumebackup", member) == "TERMINATED"
    assert cloud.state("volumegroupbackup", backup.id) == "TERMINATED"
