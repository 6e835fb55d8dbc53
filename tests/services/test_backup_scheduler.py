"""The backup scheduler in process: schedules fire at their instants, expiry keeps exactly
what retention says, the clock advances through every instant in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ocibv.domain.kinds import Kind
from ocibv.store import resources as repo
from ocibv.store import scheduled_runs
from tests.services.conftest import World

HOUR = 3600


def next_midnight(world: World, days_ahead: int = 1) -> datetime:
    """The ``days_ahead``-th midnight (UTC) after the service's now plus two hours. Tests set
    the clock to half an hour before it, which must not be in the past: after 23:30 UTC the
    next midnight is less than half an hour away (ten tests failed in a CI run at 23:30)."""
    now = world.services.clock.now() + timedelta(hours=2)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=days_ahead)


def backups(world: World, kind: Kind) -> list[repo.Resource]:
    with world.services.db.read() as conn:
        return repo.of_kind(conn, world.caller.tenancy_id, kind)


def live(rows: list[repo.Resource]) -> list[repo.Resource]:
    return [r for r in rows if r.lifecycle_state == "AVAILABLE"]


def one_schedule_policy(world: World, period: str, retention_seconds: int) -> str:
    """A policy of one INCREMENTAL schedule; returns its id."""
    policy = world.services.volume_backup_policies.create_volume_backup_policy(
        world.caller,
        {
            "compartment_id": world.compartment,
            "display_name": period.lower(),
            "schedules": [
                {
                    "backup_type": "INCREMENTAL",
                    "period": period,
                    "retention_seconds": retention_seconds,
                }
            ],
        },
        None,
    )
    return policy.id


def hourly_policy(world: World, retention_hours: int = 3) -> str:
    return one_schedule_policy(world, "ONE_HOUR", retention_hours * HOUR)


def assign_daily_kept_a_day(world: World, asset_id: str) -> None:
    """Midnight is 30 minutes away; a daily policy kept one day is assigned to the asset."""
    world.services.clock.set(next_midnight(world) - timedelta(minutes=30))
    world.services.volume_backup_policy_assignments.create_volume_backup_policy_assignment(
        world.caller,
        {"asset_id": asset_id, "policy_id": one_schedule_policy(world, "ONE_DAY", 86400)},
    )


def test_hourly_with_three_hour_retention_over_a_day(world: World) -> None:
    volume = world.volume("v")
    world.services.clock.set(next_midnight(world) - timedelta(minutes=30))
    policy_id = hourly_policy(world)
    world.services.volume_backup_policy_assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": volume.id, "policy_id": policy_id}
    )
    for hour in range(24):
        world.write(volume.id, hour * 65536, bytes([hour + 1]) * 4096)
        world.advance(HOUR)
    made = backups(world, Kind.VOLUME_BACKUP)
    assert len(made) == 24
    kept = live(made)
    assert len(kept) == 3
    assert all(b.attrs["source_type"] == "SCHEDULED" for b in made)
    for b in kept:
        assert b.attrs["expiration_us"] - b.created_us == 3 * HOUR * 1_000_000
    assert [b.backup_type.value for b in made[:2]] == ["FULL", "INCREMENTAL"]
    with world.services.db.read() as conn:
        assert len(scheduled_runs.last_instants(conn, volume.id)) == 1


def test_scheduled_backups_expire_on_each_database(world_on_each_database: World) -> None:
    """Expiry reads µs timestamps from the attributes: 64-bit on PostgreSQL too."""
    world = world_on_each_database
    volume = world.volume("v")
    world.services.clock.set(next_midnight(world) - timedelta(minutes=30))
    world.services.volume_backup_policy_assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": volume.id, "policy_id": hourly_policy(world, 1)}
    )
    world.advance(4 * HOUR)
    made = backups(world, Kind.VOLUME_BACKUP)
    assert len(made) == 4
    assert len(live(made)) == 1


# Oracle's gold: (period word, retention seconds) in precedence order (the longest period
# runs when several fall on one instant).
GOLD = {"yearly": 157_680_000, "monthly": 31_560_000, "weekly": 2_419_200, "daily": 604_800}
GOLD_ID = "ocid1.volumebackuppolicy.oc1..aaaaaaaagoldocibvoracledefinedpolicy"
BLOCK = 4096


def gold_kind(day: datetime) -> str:
    """Which gold schedule takes the backup at 00:00 UTC of ``day`` (written independently
    of the scheduler: Jan 1 yearly, the 1st monthly, Sunday weekly, else daily)."""
    if day.month == 1 and day.day == 1:
        return "yearly"
    if day.day == 1:
        return "monthly"
    if day.weekday() == 6:
        return "weekly"
    return "daily"


def test_a_simulated_year_of_gold_on_a_volume_group(world: World) -> None:
    world.use_memory_store()
    v1, v2 = world.volume("v1"), world.volume("v2")
    group = world.group("g", [v1.id, v2.id])
    # the next 1 January at least a day away: the clock is set 12 hours before it
    year = (world.services.clock.now() + timedelta(days=1)).year + 1
    first = datetime(year, 1, 1, tzinfo=UTC)
    world.services.clock.set(first - timedelta(hours=12))
    world.services.volume_backup_policy_assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": group.id, "policy_id": GOLD_ID}
    )
    days = 365
    for day in range(days):  # data changes every day, before that day's 00:00 instant
        for n, volume in enumerate((v1, v2)):
            world.write(volume.id, day * 65536, bytes([day % 251 + 1, n]) * (BLOCK // 2))
        world.advance(86400)
    now = first + timedelta(days=days, hours=-12)
    assert world.services.clock.now() >= now

    expected: dict[str, list[datetime]] = {k: [] for k in GOLD}
    for day in range(days):
        instant = first + timedelta(days=day)
        kind = gold_kind(instant)
        if instant + timedelta(seconds=GOLD[kind]) > now:
            expected[kind].append(instant)

    kept = live(backups(world, Kind.VOLUME_GROUP_BACKUP))
    by_kind: dict[str, list[repo.Resource]] = {k: [] for k in GOLD}
    for b in kept:
        by_kind[b.display_name.split()[1]].append(b)
    counts = {k: len(v) for k, v in by_kind.items()}
    assert counts == {k: len(v) for k, v in expected.items()}
    assert counts["yearly"] == 1 and counts["monthly"] == 11  # every retained month but Jan
    for kind, rows in by_kind.items():
        created = sorted(datetime.fromtimestamp(r.created_us / 1e6, tz=UTC) for r in rows)
        assert created == expected[kind]
        for r in rows:
            assert r.attrs["expiration_us"] == r.created_us + GOLD[kind] * 1_000_000
            assert r.attrs["source_type"] == "SCHEDULED"
    members = live(backups(world, Kind.VOLUME_BACKUP))
    assert len(members) == 2 * len(kept)
    assert all(m.attrs["source_type"] == "SCHEDULED" for m in members)

    yearly = by_kind["yearly"][0]
    newest_daily = max(by_kind["daily"], key=lambda r: r.created_us)
    restored_day = {yearly.id: 0, newest_daily.id: (newest_daily.created_us - yearly.created_us)
                    // (86400 * 1_000_000)}
    for backup in (yearly, newest_daily):
        for n, member_id in enumerate(backup.volume_backup_ids):
            image = restore(world, member_id)
            upto = restored_day[backup.id]
            with open(image, "rb") as handle:
                for day in range(days):
                    handle.seek(day * 65536)
                    want = bytes([day % 251 + 1, n]) * (BLOCK // 2) if day <= upto else bytes(BLOCK)
                    assert handle.read(BLOCK) == want, (backup.display_name, n, day)


def restore(world: World, member_id: str) -> str:
    from ocibv.engine import backup as engine

    tenancy = world.caller.tenancy_id
    catalog = world.services.catalog
    target = world.services.settings.data_dir / f"restore-{member_id[-8:]}.img"
    manifest = catalog.manifest(tenancy, member_id)
    engine.restore_volume(catalog.chunk_store(tenancy), manifest, target)
    return str(target)


def test_one_advance_of_a_day_takes_every_hourly_backup(world: World) -> None:
    volume = world.volume("v")
    world.services.clock.set(next_midnight(world) - timedelta(minutes=30))
    world.services.volume_backup_policy_assignments.create_volume_backup_policy_assignment(
        world.caller, {"asset_id": volume.id, "policy_id": hourly_policy(world)}
    )
    world.write(volume.id, 0, b"data" * 1024)
    report = world.services.scheduler.advance(86400, world.services.drain_jobs)
    assert (len(report.created), len(report.expired)) == (24, 21)
    made = backups(world, Kind.VOLUME_BACKUP)
    assert len(made) == 24 and len(live(made)) == 3


def test_advancing_collects_the_chunks_of_expired_backups(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocibv.services import container

    monkeypatch.setattr(container, "ADVANCE_GC_GRACE_SECONDS", 0.0)
    volume = world.volume("v")
    assign_daily_kept_a_day(world, volume.id)
    for day in range(9):  # a new chunk every day; each daily backup kept one day
        world.write(volume.id, 0, bytes([day + 1]) * 4096)  # the old chunk goes unused
        world.services.advance_clock(86400)
    # Store v1 collects in two phases (plan, then delete a grace later): two more simulated
    # weeks give the collections the advance runs weekly time to finish.
    world.services.advance_clock(14 * 86400)
    store = world.services.catalog.chunk_store(world.caller.tenancy_id)
    store.refresh()
    stored = set(store.iter_digests())
    kept = live(backups(world, Kind.VOLUME_BACKUP))
    assert len(kept) == 1  # (the 8 expired ones are purged tombstones by now)
    catalog = world.services.catalog
    referenced = {
        c.digest for b in kept for c in catalog.manifest(world.caller.tenancy_id, b.id).chunks
    }
    assert stored == referenced


def test_advance_collects_garbage_weekly_and_no_sooner_than_its_grace(world: World) -> None:
    """A collection runs once a simulated week has passed since the last one and backups
    expired meanwhile; never twice within the grace in real time (a sooner one could delete
    nothing the previous one condemned); the first advance of a process collects at its
    end."""
    volume = world.volume("v")
    assign_daily_kept_a_day(world, volume.id)
    runs: list[datetime] = []
    scheduler = world.services.scheduler

    def advance(days: int, grace: float) -> None:
        scheduler.advance(
            days * 86400,
            world.services.drain_jobs,
            lambda: runs.append(world.services.clock.now()),
            grace,
        )

    advance(3, grace=3600)  # two dailies expire; the first advance collects at its end
    assert len(runs) == 1
    advance(9, grace=3600)  # a week passes, but not the grace in real time: none
    assert len(runs) == 1
    advance(9, grace=0)  # with no grace: at its first step (over a week since the last),
    assert len(runs) == 4  # a week after that, and at its end (a daily expired since)
    week = timedelta(days=7, seconds=-1)  # now is the instant plus the real time a step took
    assert runs[1] - runs[0] >= week and runs[2] - runs[1] >= week
