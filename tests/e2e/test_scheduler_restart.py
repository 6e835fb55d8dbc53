"""Exactly once: a server killed (SIGKILL) while the backup of a scheduled instant is being
taken, and started again after that instant, makes that backup once."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, timedelta

from tests.e2e.helpers import M, create_volume, wait_state
from tests.e2e.server import Server
from tests.e2e.test_crash_points import pause_and_kill


def test_a_server_killed_across_a_scheduled_instant_backs_up_once(
    make_server: type[Server],
) -> None:
    server = make_server(
        env={"OCIBV_TEST_HOOKS": "1", "OCIBV_SCHEDULER_INTERVAL_SECONDS": "0.2"}
    ).start()
    bs = server.blockstorage()
    tenancy = server.config()["tenancy"]
    ad = server.identity().list_availability_domains(tenancy).data[0].name
    volume = create_volume(bs, tenancy, ad)
    policy = bs.create_volume_backup_policy(
        M.CreateVolumeBackupPolicyDetails(
            compartment_id=tenancy,
            schedules=[
                M.VolumeBackupSchedule(
                    backup_type="INCREMENTAL", period="ONE_DAY", retention_seconds=7 * 86400
                )
            ],
        )
    ).data
    bs.create_volume_backup_policy_assignment(
        M.CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume.id, policy_id=policy.id)
    )
    created = volume.time_created.astimezone(UTC)
    instant = created.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    just_after = (instant + timedelta(seconds=1)).isoformat()
    pause_and_kill(
        server,
        "create_volume_backup:creating",
        lambda: server.ocibv("clock", "set", just_after),
    )
    # the restarted server resumes the interrupted job and passes the instant again
    deadline = time.monotonic() + 60
    while True:
        made = bs.list_volume_backups(compartment_id=tenancy, volume_id=volume.id).data
        if made and made[0].lifecycle_state == "AVAILABLE":
            break
        assert time.monotonic() < deadline, "the scheduled backup never became AVAILABLE"
        time.sleep(0.1)
    time.sleep(1.5)  # several scheduler passes after the restart
    made = bs.list_volume_backups(compartment_id=tenancy, volume_id=volume.id).data
    assert len(made) == 1
    (backup,) = made
    assert backup.source_type == "SCHEDULED"
    assert backup.time_created == instant
    assert backup.expiration_time == instant + timedelta(days=7)
    wait_state(lambda: bs.get_volume_backup(backup.id).data, "AVAILABLE")
    with sqlite3.connect(server.data_dir / "ocibv.db") as db:
        rows = db.execute("SELECT outcome, backup_id FROM scheduled_runs").fetchall()
    assert rows == [("backed_up", backup.id)]
