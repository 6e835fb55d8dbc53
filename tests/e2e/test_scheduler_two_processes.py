"""Exactly once across processes: two ``ocibv serve`` processes on one database, both running
the backup scheduler many times a second, make each scheduled backup once — on PostgreSQL
(the scale-out setup) and on SQLite (two processes on one data dir) — and so does a third
process, ``ocibv clock advance``, racing them; expiry deletes each expired backup once."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import oci
import psycopg
import pytest

from tests.e2e.helpers import M, create_group, create_volume, first_ad, wait_until
from tests.e2e.server import Server
from tests.postgres import PostgresServer

HOUR = timedelta(hours=1)


@pytest.fixture(params=["postgresql", "sqlite"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two servers on one catalog and one data dir (volumes, store), each running its
    scheduler every 20 ms."""
    env = {"OCIBV_SCHEDULER_INTERVAL_SECONDS": "0.02", "OCIBV_LOG_LEVEL": "info"}
    if request.param == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        env["OCIBV_DATABASE_URL"] = postgres.new_database(template=postgres.migrated_template())
    data = tmp_path / "data"
    first = Server(data, env=dict(env)).start()
    second = Server(data, env=dict(env)).start()
    yield first, second
    first.stop()
    second.stop()


def test_two_serve_processes_make_each_scheduled_backup_once(
    pair: tuple[Server, Server],
) -> None:
    first, second = pair
    bs = first.blockstorage()
    tenancy = first.config()["tenancy"]
    ad = first_ad(first)
    volume = create_volume(bs, tenancy, ad).id
    members = [create_volume(bs, tenancy, ad).id for _ in range(2)]
    group = create_group(bs, tenancy, ad, members).id
    policy = bs.create_volume_backup_policy(
        M.CreateVolumeBackupPolicyDetails(
            compartment_id=tenancy,
            schedules=[
                M.VolumeBackupSchedule(  # kept 2 hours: expiry races too
                    backup_type="INCREMENTAL", period="ONE_HOUR", retention_seconds=7200
                )
            ],
        )
    ).data
    for asset in (volume, group):  # one assignment through each process
        client = (first, second)[asset == group].blockstorage()
        client.create_volume_backup_policy_assignment(
            M.CreateVolumeBackupPolicyAssignmentDetails(asset_id=asset, policy_id=policy.id)
        )
    now = datetime.fromisoformat(first.ocibv("clock", "show").stdout.split()[0])
    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + HOUR
    instants = [start + n * HOUR for n in range(3)]
    for instant in instants:  # a jump just past each instant: both schedulers race for it
        first.ocibv("clock", "set", (instant + timedelta(seconds=1)).isoformat())
        wait_until(lambda i=instant: _settled_at(bs, tenancy, volume, group, i),
                   f"the backups of {instant}")
    # a third process moves the clock through two more instants while both servers run
    second.ocibv("clock", "advance", "2h", spawn=True)
    instants += [instants[-1] + HOUR, instants[-1] + 2 * HOUR]
    wait_until(lambda: _settled_at(bs, tenancy, volume, group, instants[-1]),
               "the backups of the last instant")

    owners = _scheduled_owners(first)
    made = Counter((asset, created) for asset, created, _state in owners)
    expected = {(asset, int(i.timestamp() * 1e6)) for asset in (volume, group) for i in instants}
    assert set(made) == expected, sorted(made)
    assert all(count == 1 for count in made.values()), made
    # retention 2 h: at the last instant, the one before it and its own are kept
    live = {(a, c) for a, c, state in owners if state == "AVAILABLE"}
    kept = {(a, int(i.timestamp() * 1e6)) for a in (volume, group) for i in instants[-2:]}
    assert live == kept
    with _connect(first) as db:
        runs = db.execute(
            "SELECT asset_id, instant_us, outcome FROM scheduled_runs ORDER BY 1, 2"
        ).fetchall()
    assert sorted((a, int(i), o) for a, i, o in runs) == sorted(
        (a, c, "backed_up") for a, c in expected
    )
    log = (first.data_dir.parent / f"{first.data_dir.name}-serve.log").read_text()
    assert "Traceback" not in log and "pass failed" not in log, log[-4000:]


def _settled_at(
    bs: oci.core.BlockstorageClient, tenancy: str, volume: str, group: str, instant: datetime
) -> bool:
    """Both assets have an AVAILABLE backup of ``instant``."""
    backups = bs.list_volume_backups(compartment_id=tenancy, volume_id=volume).data
    groups = bs.list_volume_group_backups(compartment_id=tenancy, volume_group_id=group).data
    return all(
        any(b.time_created == instant and b.lifecycle_state == "AVAILABLE" for b in made)
        for made in (backups, groups)
    )


def _scheduled_owners(server: Server) -> list[tuple[str, int, str]]:
    """(asset, timeCreated in µs, state) of every scheduled volume backup that is not a group
    member and every scheduled volume group backup, deleted ones included."""
    with _connect(server) as db:
        rows = db.execute(
            "SELECT kind, parent_id, created_us, lifecycle_state, attrs FROM resources "
            "WHERE kind IN ('volumebackup', 'volumegroupbackup')"
        ).fetchall()
    out = []
    for kind, parent, created, state, attrs in rows:
        values: dict[str, Any] = json.loads(attrs) if isinstance(attrs, str) else attrs
        if values.get("source_type") != "SCHEDULED":
            continue
        if kind == "volumebackup" and values.get("volume_group_backup_id"):
            continue
        out.append((str(parent), int(created), str(state)))
    return out


def _connect(server: Server) -> Any:
    url = server.env.get("OCIBV_DATABASE_URL")
    if url:
        return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    return sqlite3.connect(server.data_dir / "ocibv.db")
