"""A full disk (a small tmpfs the test mounts) loses nothing and leaves nothing stuck: a backup
that does not fit never shows an AVAILABLE member it later takes back, a restore that does not
fit ends FAULTY and frees its space, and a request the database cannot record gets a retryable
503 ServiceUnavailable instead of a 500."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import oci
import pytest

from tests.e2e.helpers import create_group, create_volume, image_path, wait_state, write_image
from tests.e2e.server import Server

M = oci.core.models
MIB = 1024 * 1024
SETTLED = ("AVAILABLE", "FAULTY")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    mounted: list[Path] = []

    def mount(name: str, mib: int) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(where)],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"mounting a {mib} MiB tmpfs is refused here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_group_backup_that_does_not_fit_never_shows_an_available_member(
    tmp_path: Path, small_disk: Callable[[str, int], Path]
) -> None:
    store = small_disk("store", 12)
    server = Server(tmp_path / "data", env={"OCIBV_STORE_URL": f"file://{store}"}).start()
    try:
        bs = server.blockstorage()
        tenancy = server.config()["tenancy"]
        ad = server.identity().list_availability_domains(tenancy).data[0].name
        fits, too_big = create_volume(bs, tenancy, ad).id, create_volume(bs, tenancy, ad).id
        write_image(server, fits, 0, os.urandom(2 * MIB))
        write_image(server, too_big, 0, os.urandom(32 * MIB))
        group = create_group(bs, tenancy, ad, [fits, too_big]).id
        backup = bs.create_volume_group_backup(
            M.CreateVolumeGroupBackupDetails(volume_group_id=group, type="FULL")
        ).data
        seen: set[str] = set()
        while True:
            row = bs.get_volume_group_backup(backup.id).data
            for member_id in row.volume_backup_ids or []:
                seen.add(bs.get_volume_backup(member_id).data.lifecycle_state)
            if row.lifecycle_state in SETTLED:
                break
        assert row.lifecycle_state == "FAULTY"
        assert "AVAILABLE" not in seen, seen
        members = [bs.get_volume_backup(m).data for m in row.volume_backup_ids]
        assert {m.lifecycle_state for m in members} == {"FAULTY"}
        # the volumes are free again: a backup of the small one alone fits and restores
        single = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=fits)).data
        done = wait_state(lambda: bs.get_volume_backup(single.id).data, *SETTLED)
        assert done.lifecycle_state == "AVAILABLE"
    finally:
        server.stop()


def test_restore_that_does_not_fit_ends_faulty_and_frees_its_space(
    tmp_path: Path, small_disk: Callable[[str, int], Path]
) -> None:
    data = small_disk("data", 40) / "ocibv"
    server = Server(data, env={"OCIBV_STORE_URL": f"file://{tmp_path / 'store'}"}).start()
    try:
        bs = server.blockstorage()
        tenancy = server.config()["tenancy"]
        ad = server.identity().list_availability_domains(tenancy).data[0].name
        source = create_volume(bs, tenancy, ad).id
        write_image(server, source, 0, os.urandom(24 * MIB))
        backup = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=source)).data
        assert wait_state(lambda: bs.get_volume_backup(backup.id).data, *SETTLED
                          ).lifecycle_state == "AVAILABLE"
        restored = bs.create_volume(M.CreateVolumeDetails(
            compartment_id=tenancy, availability_domain=ad,
            source_details=M.VolumeSourceFromVolumeBackupDetails(id=backup.id),
        )).data
        done = wait_state(lambda: bs.get_volume(restored.id).data, *SETTLED, timeout=120)
        assert done.lifecycle_state == "FAULTY"
        assert not image_path(server, restored.id).exists()  # the partial image is gone
        bs.delete_volume_backup(backup.id)  # no longer held as a restore source

        # A request the database cannot record (0 bytes free) answers 503, harms nothing.
        _truncate_wal(data / "ocibv.db")
        filler = data.parent / "filler"
        _fill(filler)
        try:
            with pytest.raises(oci.exceptions.ServiceError) as err:
                bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=source))
            assert (err.value.status, err.value.code) == (503, "ServiceUnavailable")
            assert "storage is full" in err.value.message
        finally:
            filler.unlink(missing_ok=True)
        assert bs.get_volume(source).data.lifecycle_state == "AVAILABLE"
        again = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=source)).data
        assert wait_state(lambda: bs.get_volume_backup(again.id).data, *SETTLED
                          ).lifecycle_state == "AVAILABLE"
    finally:
        server.stop()


def _truncate_wal(db_path: Path) -> None:
    """Give the WAL's pre-allocated space back, so the next commit needs new space."""
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _fill(path: Path) -> None:
    """Take every free byte of ``path``'s file system (it may be full already)."""
    try:
        handle = open(path, "wb")  # noqa: SIM115
    except OSError:
        path.touch(exist_ok=True)  # a full tmpfs may still take an empty file
        return
    for block in (MIB, 4096):
        try:
            while True:
                handle.write(b"\xff" * block)
                handle.flush()
        except OSError:
            pass
    with contextlib.suppress(OSError):
        handle.close()
