"""Crash-point sweep: for every step of a backup, a group backup and a restore job, the server
is killed with SIGKILL exactly there (the ``OCIBV_TEST_HOOKS`` pause hook), restarted, and the
invariants checked: nothing stays transitional or reserved, every AVAILABLE backup restores
exactly the bytes of its point in time, and ``ocibv scrub`` finds the store clean."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import oci

from tests.e2e.helpers import create_group, create_volume, image_path, wait_state, write_image
from tests.e2e.server import Server

M = oci.core.models
MIB = 1024 * 1024
DATA = 4 * MIB  # every volume's data lives in its first 4 MiB
SETTLED = ("AVAILABLE", "FAULTY", "TERMINATED")
STEPS = [
    ("create_volume_backup", "creating"),
    ("create_volume_backup", "captured"),
    ("create_volume_backup", "available"),
    ("create_volume_group_backup", "committed"),
    ("create_volume_group_backup", "captured_member"),
    ("create_volume_group_backup", "available"),
    ("create_volume", "image_written"),
]


def content(server: Server, volume_id: str) -> str:
    """The volume's bytes: its first 4 MiB, and nothing allocated after them."""
    path = image_path(server, volume_id)
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read(DATA)).hexdigest()
        try:
            os.lseek(handle.fileno(), DATA, os.SEEK_DATA)
            return digest + "+more"
        except OSError as exc:
            assert exc.errno == errno.ENXIO
    return digest


def reservations(server: Server) -> int:
    with sqlite3.connect(server.data_dir / "ocibv.db") as db:
        return int(db.execute("SELECT count(*) FROM reservations").fetchone()[0])


def pause_and_kill(server: Server, step: str, start: Any) -> Any:
    """Arm the hook at ``step``, start the work, kill -9 the server the moment it pauses there,
    and start it again (unarmed). Returns what ``start()`` returned."""
    (server.data_dir / "pause-at").write_text(step)
    started = start()
    marker = server.data_dir / "paused"
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, f"the job never reached {step}"
        time.sleep(0.02)
    server.stop(kill=True)
    marker.unlink()
    (server.data_dir / "pause-at").unlink()
    server.start()
    return started


def restores_exactly(bs: Any, server: Server, tenancy: str, ad: str, backup_id: str,
                     expected: str) -> None:
    volume = bs.create_volume(M.CreateVolumeDetails(
        compartment_id=tenancy, availability_domain=ad,
        source_details=M.VolumeSourceFromVolumeBackupDetails(id=backup_id),
    )).data
    wait_state(lambda: bs.get_volume(volume.id).data, "AVAILABLE")
    assert content(server, volume.id) == expected


def test_kill_at_every_step_then_invariants_hold(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"OCIBV_TEST_HOOKS": "1"}).start()
    try:
        bs = server.blockstorage()
        tenancy = server.config()["tenancy"]
        ad = server.identity().list_availability_domains(tenancy).data[0].name
        a = create_volume(bs, tenancy, ad).id
        b = create_volume(bs, tenancy, ad).id
        group = create_group(bs, tenancy, ad, [a, b]).id
        for n, (kind, step) in enumerate(STEPS):
            # new data for this round: the backup must capture exactly it
            write_image(server, a, (n % 4) * MIB, os.urandom(MIB))
            write_image(server, b, (n % 4) * MIB, os.urandom(512 * 1024))
            expected = {a: content(server, a), b: content(server, b)}
            hook = f"{kind}:{step}"
            if kind == "create_volume_backup":
                details = M.CreateVolumeBackupDetails(volume_id=a, type="FULL" if n % 2 else None)
                backup = pause_and_kill(
                    server, hook, lambda d=details: bs.create_volume_backup(d).data
                )
                done = wait_state(lambda b=backup: bs.get_volume_backup(b.id).data, *SETTLED)
                assert done.lifecycle_state == "AVAILABLE", (step, done.lifecycle_state)
                members = {a: done.id}
            elif kind == "create_volume_group_backup":
                group_details = M.CreateVolumeGroupBackupDetails(volume_group_id=group)
                backup = pause_and_kill(
                    server, hook, lambda d=group_details: bs.create_volume_group_backup(d).data
                )
                done = wait_state(lambda b=backup: bs.get_volume_group_backup(b.id).data, *SETTLED)
                assert done.lifecycle_state == "AVAILABLE", (step, done.lifecycle_state)
                member_rows = [bs.get_volume_backup(m).data for m in done.volume_backup_ids]
                assert {m.lifecycle_state for m in member_rows} == {"AVAILABLE"}
                members = {m.volume_id: m.id for m in member_rows}
            else:  # a restore killed after writing the image, before saying AVAILABLE
                source = bs.list_volume_backups(tenancy, volume_id=a).data[0]
                restore = M.CreateVolumeDetails(
                    compartment_id=tenancy, availability_domain=ad,
                    source_details=M.VolumeSourceFromVolumeBackupDetails(id=source.id),
                )
                restored = pause_and_kill(
                    server, hook, lambda d=restore: bs.create_volume(d).data
                )
                done = wait_state(lambda r=restored: bs.get_volume(r.id).data, *SETTLED)
                assert done.lifecycle_state == "AVAILABLE"
                members = {}
                # the source backup is free again: it can be deleted now
            assert reservations(server) == 0, f"a reservation outlived {kind}:{step}"
            for volume_id, backup_id in members.items():
                restores_exactly(bs, server, tenancy, ad, backup_id, expected[volume_id])
            # the volumes are free: an offline import goes through at once
            server.ocibv("volume", "export", a, str(tmp_path / "a.img"))
        scrub = server.ocibv("scrub")
        assert scrub.returncode == 0, scrub.stdout + scrub.stderr
    finally:
        server.stop()


def test_a_volume_being_cloned_refuses_resize_and_delete(tmp_path: Path) -> None:
    """A clone's size is fixed when it is requested: until the clone is made, its source
    cannot grow (or go), and the 409 names the clone; afterwards both work."""
    server = Server(tmp_path / "data", env={"OCIBV_TEST_HOOKS": "1"}).start()
    try:
        bs = server.blockstorage()
        tenancy = server.config()["tenancy"]
        ad = server.identity().list_availability_domains(tenancy).data[0].name
        source = create_volume(bs, tenancy, ad).id
        write_image(server, source, 0, os.urandom(MIB))
        expected = content(server, source)
        (server.data_dir / "pause-at").write_text("create_volume:image_written")
        clone = bs.create_volume(M.CreateVolumeDetails(
            compartment_id=tenancy, availability_domain=ad,
            source_details=M.VolumeSourceFromVolumeDetails(id=source),
        )).data
        marker = server.data_dir / "paused"
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for call in (
            lambda: bs.update_volume(source, M.UpdateVolumeDetails(size_in_gbs=60)),
            lambda: bs.delete_volume(source),
        ):
            try:
                call()
                raise AssertionError("a volume being cloned was changed")
            except oci.exceptions.ServiceError as err:
                assert (err.status, err.code) == (409, "IncorrectState"), err.message
                assert clone.id in err.message
        server.stop(kill=True)
        marker.unlink()
        (server.data_dir / "pause-at").unlink()
        server.start()
        made = wait_state(lambda: bs.get_volume(clone.id).data, *SETTLED)
        assert made.lifecycle_state == "AVAILABLE" and made.size_in_gbs == 50
        assert content(server, clone.id) == expected
        grown = bs.update_volume(source, M.UpdateVolumeDetails(size_in_gbs=60)).data
        assert grown.size_in_gbs == 60
    finally:
        server.stop()
