"""Backup policy rules in process: validation names the field, retention locks hold expiry
back, assignments follow their assets, assigned and Oracle-defined policies stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ocibv.domain import backup_schedules as sched
from ocibv.domain.errors import Conflict, InvalidParameter
from ocibv.domain.kinds import Kind
from ocibv.store import resources as repo
from tests.services.conftest import World
from tests.services.test_backup_scheduler import GOLD_ID, backups, hourly_policy, next_midnight

HOUR = 3600


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"period": "ONE_DAY", "offset_type": "STRUCTURED", "day_of_week": "MONDAY"},
         "schedules[0].dayOfWeek"),
        ({"period": "ONE_HOUR", "offset_seconds": 3600}, "schedules[0].offsetSeconds"),
        ({"period": "ONE_DAY", "offset_seconds": 86400}, "schedules[0].offsetSeconds"),
        ({"period": "ONE_WEEK", "retention_seconds": 86400}, "schedules[0].retentionSeconds"),
        ({"period": "ONE_DAY", "retention_seconds": 5000}, "schedules[0].retentionSeconds"),
        ({"period": "ONE_MONTH", "hour_of_day": 3}, "schedules[0].hourOfDay"),
    ],
)
def test_a_contradictory_schedule_is_refused_naming_the_field(
    schedule: dict[str, Any], field: str
) -> None:
    full = {"backup_type": "INCREMENTAL", "retention_seconds": 30 * 86400, **schedule}
    with pytest.raises(InvalidParameter) as info:
        sched.validate([full])
    assert info.value.message.startswith(field)


def test_a_schedule_lock_needs_a_retention_period(world: World) -> None:
    with pytest.raises(InvalidParameter, match=r"schedules\[0\]\.isRetentionLockEnabled"):
        world.services.volume_backup_policies.create_volume_backup_policy(
            world.caller,
            {
                "compartment_id": world.compartment,
                "schedules": [
                    {"backup_type": "FULL", "period": "ONE_DAY", "retention_seconds": 86400,
                     "is_retention_lock_enabled": True}
                ],
            },
            None,
        )


def test_structured_and_numeric_instants() -> None:
    from datetime import UTC, datetime

    def at(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000

    weekly = {"period": "ONE_WEEK", "offset_type": "STRUCTURED", "day_of_week": "WEDNESDAY",
              "hour_of_day": 5}
    assert sched.next_after(weekly, UTC, at("2027-03-01T00:00:00")) == at("2027-03-03T05:00:00")
    monthly = {"period": "ONE_MONTH", "offset_type": "STRUCTURED", "day_of_month": 31}
    assert sched.next_after(monthly, UTC, at("2027-02-01T00:00:00")) == at("2027-02-28T00:00:00")
    numeric = {"period": "ONE_DAY", "offset_seconds": 7200}
    assert sched.latest_at_or_before(numeric, UTC, at("2027-03-01T01:00:00")) == at(
        "2027-02-28T02:00:00"
    )
    yearly = {"period": "ONE_YEAR", "offset_type": "STRUCTURED", "month": "FEBRUARY",
              "day_of_month": 29}
    assert sched.next_after(yearly, UTC, at("2027-01-01T00:00:00")) == at("2027-02-28T00:00:00")
    assert sched.next_after(yearly, UTC, at("2028-01-01T00:00:00")) == at("2028-02-29T00:00:00")


def test_expiry_waits_for_a_retention_lock_and_says_so(world: World) -> None:
    volume = world.volume("v")
    world.services.clock.set(next_midnight(world) - timedelta(minutes=30))
    assignments = world.services.volume_backup_policy_assignments
    assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": volume.id, "policy_id": hourly_policy(world, 1)}
    )
    world.advance(HOUR)  # one backup, at midnight
    (first,) = backups(world, Kind.VOLUME_BACKUP)
    world.services.volume_backups.update_volume_backup(
        world.caller,
        first.id,
        {
            "retention_period": {"retention_time_unit": "DAYS", "retention_time_amount": 1},
            "is_retention_lock_enabled": True,
        },
        None,
    )
    world.advance(3 * HOUR)  # expired an hour after midnight, but locked for a day
    kept = world.services.volume_backups.get_volume_backup(world.caller, first.id)
    assert kept.lifecycle_state == "AVAILABLE"
    assert "retention-locked" in kept.attrs["system_tags"]["ocibv"]["expiry"]
    world.advance(21 * HOUR)  # the lock ends at midnight + 1 day: the next pass deletes it
    gone = world.services.volume_backups.get_volume_backup(world.caller, first.id)
    assert gone.lifecycle_state == "TERMINATED"


def test_assignments_follow_their_assets(world: World) -> None:
    volume = world.volume("v")
    other = world.volume("w")
    policies = world.services.volume_backup_policies
    assignments = world.services.volume_backup_policy_assignments
    policy_id = hourly_policy(world)
    assignment = assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": volume.id, "policy_id": policy_id}
    )
    with pytest.raises(Conflict, match="already has"):
        assignments.create_volume_backup_policy_assignment(
            world.caller, {"asset_id": volume.id, "policy_id": GOLD_ID}
        )
    with pytest.raises(Conflict, match="assigned"):
        policies.delete_volume_backup_policy(world.caller, policy_id, None)
    with pytest.raises(Conflict, match="Oracle-defined"):
        policies.delete_volume_backup_policy(world.caller, GOLD_ID, None)
    group = world.group("g", [other.id])
    assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": group.id, "policy_id": GOLD_ID}
    )
    with pytest.raises(Conflict, match="has a backup policy"):
        assignments.create_volume_backup_policy_assignment(
            world.caller, {"asset_id": other.id, "policy_id": policy_id}
        )
    with pytest.raises(Conflict, match="its own backup policy"):
        world.services.volume_groups.update_volume_group(
            world.caller, group.id, {"volume_ids": [other.id, volume.id]}, None
        )
    world.services.volumes.delete_volume(world.caller, volume.id, None)
    assert assignments.get_volume_backup_policy_asset_assignment(world.caller, volume.id) == []
    with world.services.db.read() as conn:
        assert repo.get(conn, assignment.id) is None
    policies.delete_volume_backup_policy(world.caller, policy_id, None)


def test_two_schedules_on_one_instant_take_one_backup(world: World) -> None:
    volume = world.volume("v")
    world.services.clock.set(next_midnight(world) - timedelta(minutes=30))
    policy = world.services.volume_backup_policies.create_volume_backup_policy(
        world.caller,
        {
            "compartment_id": world.compartment,
            "schedules": [
                {"backup_type": "INCREMENTAL", "period": "ONE_HOUR", "retention_seconds": 7200},
                {"backup_type": "FULL", "period": "ONE_DAY", "retention_seconds": 86400},
            ],
        },
        None,
    )
    world.services.volume_backup_policy_assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": volume.id, "policy_id": policy.id}
    )
    world.advance(90 * 60)  # midnight (both schedules) and 01:00 (hourly)
    made = backups(world, Kind.VOLUME_BACKUP)
    assert [b.display_name.split()[1] for b in made] == ["daily", "hourly"]
    assert made[0].attrs["expiration_us"] - made[0].created_us == 86400 * 1_000_000


def test_missed_instants_collapse_into_one_catch_up(world: World) -> None:
    volume = world.volume("v")
    world.services.clock.set(next_midnight(world) - timedelta(minutes=30))
    world.services.volume_backup_policy_assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": volume.id, "policy_id": hourly_policy(world, 24)}
    )
    world.services.clock.advance(10 * HOUR)  # a jump, as after downtime: nothing ran
    report = world.services.scheduler.tick()
    world.services.drain_jobs()
    assert len(report.created) == 1
    (backup,) = backups(world, Kind.VOLUME_BACKUP)
    assert abs(backup.created_us - world.services.clock.now_us()) < 60 * 1_000_000
    assert world.services.scheduler.tick().created == []


def test_a_changed_schedule_starts_from_the_change(world: World) -> None:
    volume = world.volume("v")
    world.services.clock.set(next_midnight(world) - timedelta(minutes=30))
    policy_id = hourly_policy(world)
    world.services.volume_backup_policy_assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": volume.id, "policy_id": policy_id}
    )
    world.services.clock.advance(HOUR)  # 00:30: one hourly instant (00:00) is due
    world.services.volume_backup_policies.update_volume_backup_policy(
        world.caller,
        policy_id,
        {"schedules": [{"backup_type": "FULL", "period": "ONE_DAY", "retention_seconds": 86400}]},
        None,
    )
    assert world.services.scheduler.tick().created == []  # the new daily's 00:00 is past
    world.advance(24 * HOUR)
    assert [b.display_name.split()[1] for b in backups(world, Kind.VOLUME_BACKUP)] == ["daily"]
