"""Backup policies and assignments over the wire: the official SDK and oci CLI create, list,
assign and remove them; wrong input answers the OCI error naming the field; ``ocibv clock
advance`` against a running server takes the scheduled backups."""

from __future__ import annotations

import json
import re
from datetime import UTC, timedelta

import oci
import pytest

from tests.e2e.helpers import M, create_group, create_volume, service_error
from tests.e2e.server import Server

GOLD_NAMES = {"gold", "silver", "bronze"}
HOURLY = {"backupType": "INCREMENTAL", "period": "ONE_HOUR", "retentionSeconds": 3 * 3600}


def hourly(compartment: str, name: str = "hourly") -> M.CreateVolumeBackupPolicyDetails:
    return M.CreateVolumeBackupPolicyDetails(
        compartment_id=compartment,
        display_name=name,
        schedules=[
            M.VolumeBackupSchedule(
                backup_type="INCREMENTAL", period="ONE_HOUR", retention_seconds=3 * 3600
            ),
            M.VolumeBackupSchedule(
                backup_type="FULL",
                period="ONE_WEEK",
                offset_type="STRUCTURED",
                day_of_week="SATURDAY",
                hour_of_day=3,
                retention_seconds=28 * 86400,
                time_zone="REGIONAL_DATA_CENTER_TIME",
            ),
        ],
    )


def test_sdk_creates_lists_updates_and_deletes_policies(
    bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    created = bs.create_volume_backup_policy(hourly(compartment)).data
    assert created.id.startswith("ocid1.volumebackuppolicy.oc1.phx.")
    weekly = created.schedules[1]
    assert (weekly.day_of_week, weekly.hour_of_day, weekly.time_zone) == (
        "SATURDAY", 3, "REGIONAL_DATA_CENTER_TIME",
    )
    got = bs.get_volume_backup_policy(created.id)
    assert got.data.display_name == "hourly" and got.headers["etag"]
    listed = bs.list_volume_backup_policies(compartment_id=compartment).data
    assert [p.id for p in listed] == [created.id]
    oracle = bs.list_volume_backup_policies().data
    assert {p.display_name for p in oracle} == GOLD_NAMES
    assert all(p.compartment_id is None and p.id.startswith("ocid1.volumebackuppolicy.oc1..")
               for p in oracle)
    gold = next(p for p in oracle if p.display_name == "gold")
    assert [s.period for s in gold.schedules] == ["ONE_DAY", "ONE_WEEK", "ONE_MONTH", "ONE_YEAR"]
    assert [s.retention_seconds for s in gold.schedules] == [
        604800, 2419200, 31560000, 157680000,
    ]
    assert bs.get_volume_backup_policy(gold.id).data.display_name == "gold"
    first = bs.list_volume_backup_policies(limit=2)
    assert len(first.data) == 2 and first.next_page
    rest = bs.list_volume_backup_policies(limit=2, page=first.next_page)
    assert len(rest.data) == 1 and not rest.next_page
    assert {p.id for p in first.data + rest.data} == {p.id for p in oracle}
    updated = bs.update_volume_backup_policy(
        created.id, M.UpdateVolumeBackupPolicyDetails(display_name="renamed")
    ).data
    assert updated.display_name == "renamed" and len(updated.schedules) == 2
    with service_error(409, "Conflict", "Oracle-defined"):
        bs.delete_volume_backup_policy(gold.id)
    with service_error(409, "Conflict", "Oracle-defined"):
        bs.update_volume_backup_policy(gold.id, M.UpdateVolumeBackupPolicyDetails(display_name="x"))
    bs.delete_volume_backup_policy(created.id)
    with service_error(404, "NotAuthorizedOrNotFound"):
        bs.get_volume_backup_policy(created.id)


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"period": "ONE_DAY", "offsetType": "STRUCTURED", "dayOfWeek": "MONDAY"},
         "schedules[0].dayOfWeek"),
        ({"period": "ONE_DAY", "offsetSeconds": 90000}, "schedules[0].offsetSeconds"),
        ({"period": "ONE_WEEK", "retentionSeconds": 3600}, "schedules[0].retentionSeconds"),
        ({"period": "ONE_FORTNIGHT"}, "schedules[0].period"),
    ],
)
def test_wrong_schedules_answer_invalid_parameter_naming_the_field(
    bs: oci.core.BlockstorageClient, compartment: str, schedule: dict[str, object], field: str
) -> None:
    body = {"backupType": "INCREMENTAL", "retentionSeconds": 30 * 86400, **schedule}
    details = {"compartmentId": compartment, "schedules": [body]}
    with service_error(400, "InvalidParameter", field):
        bs.base_client.call_api(
            resource_path="/volumeBackupPolicies", method="POST", body=details,
            header_params={"content-type": "application/json"}, response_type="VolumeBackupPolicy",
        )


def test_destination_region_is_refused_until_copies_exist(
    bs: oci.core.BlockstorageClient, compartment: str
) -> None:
    details = hourly(compartment)
    details.destination_region = "us-ashburn-1"
    with service_error(400, "InvalidParameter", "destinationRegion"):
        bs.create_volume_backup_policy(details)


def test_sdk_assigns_and_removes_a_policy(
    bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    volume = create_volume(bs, compartment, ad)
    policy = bs.create_volume_backup_policy(hourly(compartment)).data
    assignment = bs.create_volume_backup_policy_assignment(
        M.CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume.id, policy_id=policy.id)
    ).data
    assert (assignment.asset_id, assignment.policy_id) == (volume.id, policy.id)
    found = bs.get_volume_backup_policy_asset_assignment(volume.id).data
    assert [a.id for a in found] == [assignment.id]
    assert bs.get_volume_backup_policy_assignment(assignment.id).data.policy_id == policy.id
    with service_error(409, "Conflict", "already has"):
        bs.create_volume_backup_policy_assignment(
            M.CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume.id, policy_id=policy.id)
        )
    with service_error(409, "Conflict", "assigned"):
        bs.delete_volume_backup_policy(policy.id)
    with service_error(400, "RelatedResourceNotAuthorizedOrNotFound", "policyId"):
        bs.create_volume_backup_policy_assignment(
            M.CreateVolumeBackupPolicyAssignmentDetails(
                asset_id=volume.id, policy_id=policy.id.replace("aaaa", "bbbb", 1)
            )
        )
    bs.delete_volume_backup_policy_assignment(assignment.id)
    assert bs.get_volume_backup_policy_asset_assignment(volume.id).data == []
    bs.delete_volume_backup_policy(policy.id)


def test_create_volume_with_backup_policy_id_assigns_it(
    bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    gold = next(p for p in bs.list_volume_backup_policies().data if p.display_name == "gold")
    volume = create_volume(bs, compartment, ad, backup_policy_id=gold.id)
    (assignment,) = bs.get_volume_backup_policy_asset_assignment(volume.id).data
    assert assignment.policy_id == gold.id
    bs.delete_volume(volume.id)
    assert bs.get_volume_backup_policy_asset_assignment(volume.id).data == []
    unknown = "ocid1.volumebackuppolicy.oc1..aaaaaaaanosuchpolicy"
    with service_error(400, "RelatedResourceNotAuthorizedOrNotFound", "backupPolicyId"):
        create_volume(bs, compartment, ad, backup_policy_id=unknown)
    assert [v.id for v in bs.list_volumes(compartment_id=compartment).data] == [volume.id]
    member = create_volume(bs, compartment, ad)
    group = create_group(bs, compartment, ad, [member.id], backup_policy_id=gold.id)
    (assignment,) = bs.get_volume_backup_policy_asset_assignment(group.id).data
    assert assignment.policy_id == gold.id
    # the server is shared: a gold assignment left behind would take backups whenever
    # another test moves the service clock past one of its instants
    bs.delete_volume_group(group.id)
    assert bs.get_volume_backup_policy_asset_assignment(group.id).data == []


def test_cli_creates_lists_assigns_and_removes(
    server: Server, bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    volume = create_volume(bs, compartment, ad)
    policy = server.cli(
        "bv", "volume-backup-policy", "create", "--compartment-id", compartment,
        "--display-name", "cli", "--schedules", json.dumps([HOURLY]),
    ).json["data"]
    assert policy["schedules"][0]["period"] == "ONE_HOUR"
    oracle = server.cli("bv", "volume-backup-policy", "list", "--all").json["data"]
    assert {p["display-name"] for p in oracle} == GOLD_NAMES
    mine = server.cli(
        "bv", "volume-backup-policy", "list", "--compartment-id", compartment
    ).json["data"]
    assert [p["id"] for p in mine] == [policy["id"]]
    bad = server.cli(
        "bv", "volume-backup-policy", "create", "--compartment-id", compartment,
        "--schedules", json.dumps([{**HOURLY, "retentionSeconds": 1800}]), check=False,
    )
    assert bad.returncode != 0
    assert bad.error["code"] == "InvalidParameter"
    assert "schedules[0].retentionSeconds" in bad.error["message"]
    assignment = server.cli(
        "bv", "volume-backup-policy-assignment", "create",
        "--asset-id", volume.id, "--policy-id", policy["id"],
    ).json["data"]
    found = server.cli(
        "bv", "volume-backup-policy-assignment", "get-volume-backup-policy-asset-assignment",
        "--asset-id", volume.id,
    ).json["data"]
    assert [a["id"] for a in found] == [assignment["id"]]
    server.cli(
        "bv", "volume-backup-policy-assignment", "delete",
        "--policy-assignment-id", assignment["id"], "--force",
    )
    server.cli("bv", "volume-backup-policy", "delete", "--policy-id", policy["id"], "--force")


def test_clock_advance_takes_scheduled_backups_of_a_running_server(
    server: Server, bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    volume = create_volume(bs, compartment, ad)
    policy = bs.create_volume_backup_policy(hourly(compartment)).data
    now = bs.get_volume(volume.id).data.time_created
    start = (now + timedelta(hours=1)).replace(minute=30, second=0, microsecond=0)
    server.ocibv("clock", "set", start.astimezone(UTC).isoformat())
    bs.create_volume_backup_policy_assignment(
        M.CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume.id, policy_id=policy.id)
    )
    out = server.ocibv("clock", "advance", "2h").stdout
    # the count covers every asset of the shared server (other tests' assignments too)
    taken = re.search(r"(\d+) scheduled backup\(s\) taken", out)
    assert taken is not None and int(taken.group(1)) >= 2, out
    made = bs.list_volume_backups(compartment_id=compartment, volume_id=volume.id).data
    assert len(made) == 2
    for backup in made:
        assert backup.lifecycle_state == "AVAILABLE" and backup.source_type == "SCHEDULED"
        assert backup.time_created.minute == 0 and backup.time_created.second == 0
        assert backup.expiration_time - backup.time_created == timedelta(hours=3)
    manual = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume.id)).data
    assert manual.source_type == "MANUAL" and manual.expiration_time is None
