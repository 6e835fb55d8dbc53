"""Volumes attached over NBD to real clients: reads and writes, holes, the conflicts an
attachment causes, crash-consistent group backups while a writer keeps writing, and
incrementals that read only what changed (and stay exact after a kill -9)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import oci
import pytest

from tests.e2e.helpers import create_group, create_volume, image_path, wait_state
from tests.e2e.server import Server
from tests.nbd.helpers import RawClient

M = oci.core.models
MIB = 1024 * 1024
RECORD = 4096
SETTLED = ("AVAILABLE", "FAULTY")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("attach") / "data").start()
    yield srv
    srv.stop()


def attach(server: Server, volume_id: str, *extra: str) -> str:
    return server.ocibv("volume", "attach", volume_id, *extra).stdout.strip()


def client(uri: str) -> RawClient:
    parts = urlsplit(uri)
    nbd = RawClient(int(parts.port or 10809), timeout=30)
    nbd.start()
    nbd.go(parts.path.lstrip("/"))
    return nbd


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def setup_volume(server: Server) -> tuple[oci.core.BlockstorageClient, str, str, str]:
    bs = server.blockstorage()
    tenancy = server.config()["tenancy"]
    ad = server.identity().list_availability_domains(tenancy).data[0].name
    return bs, tenancy, ad, create_volume(bs, tenancy, ad).id


def test_real_clients_use_an_attached_volume(server: Server, tmp_path: Path) -> None:
    bs, _, _, volume = setup_volume(server)
    image = tmp_path / "disk.raw"
    with open(image, "wb") as handle:  # data, a hole, data
        handle.write(os.urandom(3 * MIB))
        handle.seek(6 * MIB)
        handle.write(b"end of the filesystem" * 1000)
    uri = attach(server, volume)
    assert uri.startswith("nbd://127.0.0.1:")
    converted = run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(image), uri)
    assert converted.returncode == 0, converted.stderr
    compared = run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(image), uri)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    mapped = run("nbdinfo", "--map", uri)
    assert mapped.returncode == 0 and "hole" in mapped.stdout and "data" in mapped.stdout
    copy = tmp_path / "copy.raw"
    copied = run("nbdcopy", uri, str(copy))
    assert copied.returncode == 0, copied.stderr
    with open(copy, "rb") as handle:
        assert handle.read(image.stat().st_size) == image.read_bytes()
    # attached: no delete, no import, no second attachment
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.delete_volume(volume)
    assert err.value.status == 409 and "attached" in err.value.message
    refused = server.ocibv("volume", "import", volume, str(image), check=False)
    assert refused.returncode == 1 and "attached" in refused.stderr
    again = server.ocibv("volume", "attach", volume, check=False)
    assert again.returncode == 1 and "attached" in again.stderr
    server.ocibv("volume", "detach", volume)
    assert run("nbdinfo", uri).returncode != 0  # the export died with the detach
    exported = tmp_path / "exported.raw"
    server.ocibv("volume", "export", volume, str(exported))
    with open(exported, "rb") as handle:
        assert handle.read(image.stat().st_size) == image.read_bytes()
    read_only = attach(server, volume, "--read-only")
    written = run("qemu-io", "-f", "raw", "-c", "write 0 4k", read_only)
    assert written.returncode != 0 or "failed" in (written.stdout + written.stderr)
    server.ocibv("volume", "detach", volume)
    bs.delete_volume(volume)


def record(n: int) -> bytes:
    """Record ``n``: its number and a digest over it, padded to 4 KiB (a torn one fails)."""
    head = struct.pack(">Q", n) + hashlib.sha256(struct.pack(">Q", n)).digest()
    return head + bytes(RECORD - len(head))


def records_in(path: Path, limit: int) -> list[int]:
    found = []
    with open(path, "rb") as handle:
        for n in range(1, limit + 1):
            handle.seek(n * RECORD)
            block = handle.read(RECORD)
            if block == bytes(RECORD) or not block:
                continue
            assert block == record(n), f"record {n} is torn"
            found.append(n)
    return found


def test_group_backup_under_a_live_writer_is_one_instant(server: Server) -> None:
    """A FULL, then an INCREMENTAL whose members read only their changed blocks side by
    side: each is one instant of both volumes while a writer keeps writing to them."""
    bs, tenancy, ad, a = setup_volume(server)
    b = create_volume(bs, tenancy, ad).id
    group = create_group(bs, tenancy, ad, [a, b]).id
    writer_a, writer_b = client(attach(server, a)), client(attach(server, b))
    written = [0]
    failures: list[BaseException] = []
    for kind in ("FULL", "INCREMENTAL"):
        stop = threading.Event()
        first = written[0]

        def write_records(stop: threading.Event = stop, limit: int = first + 20_000) -> None:
            n = written[0]
            try:  # each round has room of its own: a fast writer and a slow FULL once left
                while not stop.is_set() and n < limit:  # none to the INCREMENTAL (a hang)
                    n += 1
                    assert writer_a.write(n * RECORD, record(n)) == 0  # first to A...
                    assert writer_b.write(n * RECORD, record(n)) == 0  # ...then to B
                    written[0] = n
            except BaseException as exc:
                failures.append(exc)
                raise

        thread = threading.Thread(target=write_records)
        thread.start()
        try:
            while written[0] < first + 50:
                assert thread.is_alive(), f"the writer stopped: {failures}"
                time.sleep(0.01)
            backup = bs.create_volume_group_backup(
                M.CreateVolumeGroupBackupDetails(volume_group_id=group, type=kind)).data
            before = written[0]
            done = wait_state(lambda b=backup.id: bs.get_volume_group_backup(b).data, *SETTLED)
            during = written[0] - before
        finally:
            stop.set()
            thread.join()
        assert done.lifecycle_state == "AVAILABLE"
        assert during > 0, "the writer was blocked for the length of the backup"
        if kind == "INCREMENTAL":  # both read their changed blocks (side by side), no content
            assert job_of(server, done.id)[1] is None
        restored = {}
        for member_id in done.volume_backup_ids:
            member = bs.get_volume_backup(member_id).data
            assert member.type == kind
            volume = bs.create_volume(M.CreateVolumeDetails(
                compartment_id=tenancy, availability_domain=ad,
                source_details=M.VolumeSourceFromVolumeBackupDetails(id=member_id))).data
            wait_state(lambda v=volume.id: bs.get_volume(v).data, "AVAILABLE")
            restored[member.volume_id] = records_in(image_path(server, volume.id), written[0])
        in_a, in_b = restored[a], restored[b]
        assert in_a == list(range(1, len(in_a) + 1)), f"{kind}: A is not one prefix"
        assert in_b == list(range(1, len(in_b) + 1)), f"{kind}: B is not one prefix"
        assert set(in_b) <= set(in_a), f"{kind}: B holds a record A does not: not one instant"
        assert len(in_a) - len(in_b) <= 1  # the writer was between A and B at that instant
        assert first < len(in_a) < written[0]
    server.ocibv("volume", "detach", a)
    server.ocibv("volume", "detach", b)


def job_of(server: Server, backup_id: str) -> tuple[int, str | None]:
    """Bytes the backup job read, and its note."""
    with sqlite3.connect(server.data_dir / "ocibv.db") as db:
        row = db.execute("SELECT progress_done, note FROM jobs WHERE resource_id = ?",
                         (backup_id,)).fetchone()
    return int(row[0]), row[1]


def test_incremental_reads_what_changed_and_stays_exact_after_kill(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        bs, _, _, volume = setup_volume(server)
        nbd = client(attach(server, volume))
        data = os.urandom(32 * MIB)
        for offset in range(0, len(data), MIB):
            assert nbd.write(offset, data[offset:offset + MIB]) == 0

        def backup(kind: str) -> str:
            made = bs.create_volume_backup(
                M.CreateVolumeBackupDetails(volume_id=volume, type=kind)).data
            assert wait_state(lambda: bs.get_volume_backup(made.id).data, *SETTLED
                              ).lifecycle_state == "AVAILABLE"
            return str(made.id)

        def scatter() -> bytearray:
            current = bytearray(data)
            for n in range(8):  # 8 scattered 64 KiB writes: 2 MiB of chunks at most
                offset = (n * 4 + 1) * MIB + 4096
                chunk = os.urandom(64 * 1024)
                assert nbd.write(offset, chunk) == 0
                current[offset:offset + len(chunk)] = chunk
            return current

        backup("FULL")
        data = scatter()
        tracked = backup("INCREMENTAL")
        read, note = job_of(server, tracked)
        assert read <= 4 * MIB and note is None, (read, note)
        assert _restores_to(bs, server, tracked) == bytes(data)

        nbd.close()
        server.stop(kill=True)  # the record may now miss writes: it must not be trusted
        server.start()
        nbd = client(attach(server, volume))
        data = scatter()
        compared = backup("INCREMENTAL")
        read, note = job_of(server, compared)
        assert read >= 30 * MIB and note and "comparing content" in note, (read, note)
        assert _restores_to(bs, server, compared) == bytes(data)
        nbd.close()
    finally:
        server.stop()


def _restores_to(bs: oci.core.BlockstorageClient, server: Server, backup_id: str) -> bytes:
    source = bs.get_volume_backup(backup_id).data
    volume = bs.create_volume(M.CreateVolumeDetails(
        compartment_id=source.compartment_id,
        availability_domain=bs.get_volume(source.volume_id).data.availability_domain,
        source_details=M.VolumeSourceFromVolumeBackupDetails(id=backup_id))).data
    wait_state(lambda: bs.get_volume(volume.id).data, "AVAILABLE")
    with open(image_path(server, volume.id), "rb") as handle:
        return handle.read(32 * MIB)
