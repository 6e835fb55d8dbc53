"""Single-volume backups through the SDK and CLI: defaults, FULL after a resize, update, move,
list, delete, idempotent create, and the 409s of backups in progress (every rule in
process in tests/services/test_backups.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import oci
import pytest

from tests.e2e.helpers import new_volume, wait
from tests.e2e.server import InProcessServer, Server

M = oci.core.models
STORE_KINDS = ("local", "s3")  # every test runs with the store on disk and on S3
DATABASE_KINDS = ("sqlite", "postgresql")  # and with the catalog on SQLite and PostgreSQL


@pytest.fixture(scope="module")
def server(own_server: InProcessServer) -> Server:
    """This module's own server, its store on each of ``STORE_KINDS``."""
    return own_server


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server whose jobs wait 1 s before they start: requests in flight are observable."""
    server = InProcessServer(tmp_path_factory.mktemp("slow") / "data",
                             env={"OCIBV_JOB_DELAY_SECONDS": "1"}).start()
    bs = server.blockstorage()
    tenancy = server.config()["tenancy"]
    ad = server.identity().list_availability_domains(tenancy).data[0].name
    yield {"server": server, "bs": bs, "tenancy": tenancy, "ad": ad}
    server.stop()


def _create(bs: oci.core.BlockstorageClient, volume: str, **kwargs: Any) -> M.VolumeBackup:
    return bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume, **kwargs)).data


def test_types_follow_the_volume_history(server: Server, compartment: str, ad: str) -> None:
    bs = server.blockstorage()
    volume = new_volume(bs, compartment, ad, "history")
    first = _create(bs, volume, display_name="first")
    assert first.lifecycle_state == "REQUEST_RECEIVED"
    first = wait(bs, bs.get_volume_backup(first.id), "AVAILABLE")
    assert first.type == "FULL"  # default INCREMENTAL, but nothing to build on yet
    assert first.compartment_id == compartment and first.volume_id == volume
    assert first.source_type == "MANUAL" and first.volume_group_backup_id is None
    second = wait(bs, bs.get_volume_backup(_create(bs, volume).id), "AVAILABLE")
    assert second.type == "INCREMENTAL"
    bs.update_volume(volume, M.UpdateVolumeDetails(size_in_gbs=60))
    third = wait(bs, bs.get_volume_backup(_create(bs, volume).id), "AVAILABLE")
    assert third.type == "FULL" and third.size_in_gbs == 60  # first backup after a resize
    fourth = wait(bs, bs.get_volume_backup(_create(bs, volume).id), "AVAILABLE")
    assert fourth.type == "INCREMENTAL"
    listed = oci.pagination.list_call_get_all_results(
        bs.list_volume_backups, compartment_id=compartment, volume_id=volume,
        sort_by="TIMECREATED", sort_order="ASC", limit=2,
    ).data
    assert [b.id for b in listed] == [first.id, second.id, third.id, fourth.id]
    only = bs.list_volume_backups(compartment_id=compartment, display_name="first").data
    assert [b.id for b in only] == [first.id]


def test_update_move_delete(server: Server, compartment: str, ad: str) -> None:
    bs = server.blockstorage()
    identity = server.identity()
    other = identity.create_compartment(oci.identity.models.CreateCompartmentDetails(
        compartment_id=server.config()["tenancy"], name="elsewhere", description="target",
    )).data.id
    volume = new_volume(bs, compartment, ad, "moving")
    backup = wait(bs, bs.get_volume_backup(_create(bs, volume).id), "AVAILABLE")
    renamed = bs.update_volume_backup(backup.id, M.UpdateVolumeBackupDetails(
        display_name="renamed", freeform_tags={"k": "v"}))
    assert renamed.data.display_name == "renamed" and renamed.data.freeform_tags == {"k": "v"}
    assert renamed.headers["etag"] != backup.id
    moved = bs.change_volume_backup_compartment(
        backup.id, M.ChangeVolumeBackupCompartmentDetails(compartment_id=other))
    assert moved.status == 204 and moved.headers.get("etag")
    assert bs.get_volume_backup(backup.id).data.compartment_id == other
    deleted = server.cli("bv", "backup", "delete", "--volume-backup-id", backup.id, "--force",
                         "--wait-for-state", "TERMINATED", "--wait-interval-seconds", "1")
    assert deleted.returncode == 0
    assert bs.get_volume_backup(backup.id).data.lifecycle_state == "TERMINATED"


def test_cli_backup_create_and_restore(server: Server, compartment: str, ad: str) -> None:
    bs = server.blockstorage()
    volume = new_volume(bs, compartment, ad, "cli")
    backup = server.cli("bv", "backup", "create", "--volume-id", volume, "--type", "FULL",
                        "--wait-for-state", "AVAILABLE", "--wait-interval-seconds", "1"
                        ).json["data"]
    assert backup["type"] == "FULL" and backup["lifecycle-state"] == "AVAILABLE"
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.create_volume(M.CreateVolumeDetails(
            compartment_id=compartment, availability_domain=ad,
            source_details=M.VolumeSourceFromVolumeBackupDetails(
                id="ocid1.volumebackup.oc1.phx.aaaaaaaanothere"),
        ))
    assert (err.value.status, err.value.code) == (400, "RelatedResourceNotAuthorizedOrNotFound")
    bs.update_volume(volume, M.UpdateVolumeDetails(size_in_gbs=70))
    bigger = server.cli("bv", "backup", "create", "--volume-id", volume,
                        "--wait-for-state", "AVAILABLE", "--wait-interval-seconds", "1"
                        ).json["data"]
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.create_volume(M.CreateVolumeDetails(
            compartment_id=compartment, availability_domain=ad, size_in_gbs=60,
            source_details=M.VolumeSourceFromVolumeBackupDetails(id=bigger["id"]),
        ))
    assert (err.value.status, err.value.code) == (400, "InvalidParameter")
    restored = server.cli("bv", "volume", "create", "--volume-backup-id", backup["id"],
                          "--availability-domain", ad, "--wait-for-state", "AVAILABLE",
                          "--wait-interval-seconds", "1").json["data"]
    assert restored["size-in-gbs"] == 50 and restored["is-hydrated"] is True


def test_in_progress_conflicts(slow: dict[str, Any]) -> None:
    bs, tenancy, ad = slow["bs"], slow["tenancy"], slow["ad"]
    volume = new_volume(bs, tenancy, ad, "busy")
    token = "same-token-for-both-calls"
    backup = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume),
                                     opc_retry_token=token).data
    again = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume),
                                    opc_retry_token=token).data
    assert again.id == backup.id  # the retry returns the same backup, no second one
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.delete_volume(volume)  # its backup is running
    assert (err.value.status, err.value.code) == (409, "IncorrectState")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume))
    assert (err.value.status, err.value.code) == (409, "IncorrectState")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.delete_volume_backup(backup.id)  # not finished yet
    assert (err.value.status, err.value.code) == (409, "IncorrectState")
    wait(bs, bs.get_volume_backup(backup.id), "AVAILABLE")
    bs.delete_volume(volume)
    assert wait(bs, bs.get_volume(volume), "TERMINATED").lifecycle_state == "TERMINATED"
    jobs = [line for line in slow["server"].ocibv("jobs").stdout.splitlines()
            if "create_volume_backup" in line]
    assert len(jobs) == 1 and " done " in jobs[0] and "100%" in jobs[0], jobs


def test_copy_is_refused_clearly(server: Server, compartment: str, ad: str) -> None:
    bs = server.blockstorage()
    backup = wait(bs, bs.get_volume_backup(
        _create(bs, new_volume(bs, compartment, ad, "copy")).id), "AVAILABLE")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.copy_volume_backup(backup.id, M.CopyVolumeBackupDetails(
            destination_region="us-ashburn-1"))
    assert (err.value.status, err.value.code) == (501, "MethodNotImplemented")
    assert "copies" in err.value.message
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.get_volume_kms_key(backup.volume_id)
    assert (err.value.status, err.value.code) == (501, "MethodNotImplemented")
