"""Several ``ocibv serve`` processes on one PostgreSQL catalog, one data dir and one store:
rules that read then write hold across processes, every job runs exactly once, a killed
process's job is taken over, periodic work runs in one process, and a database outage gives
clients retryable errors and loses nothing."""

from __future__ import annotations

import os
import random
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import oci
import psycopg
import pytest

from tests.e2e.helpers import create_group, create_volume, image_path, wait_state, write_image
from tests.e2e.server import Server
from tests.postgres import PostgresServer, pg_bin

M = oci.core.models
MIB = 1024 * 1024
SETTLED = ("AVAILABLE", "FAULTY")

pytestmark = pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed")


@pytest.fixture
def pair(postgres: PostgresServer, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two servers sharing a fresh database, the data dir (volumes) and the store."""
    env = {"OCIBV_DATABASE_URL": postgres.new_database(), "OCIBV_GC_INTERVAL_SECONDS": "1",
           "OCIBV_TEST_HOOKS": "1", "OCIBV_LOG_LEVEL": "info"}
    data = tmp_path / "data"
    first = Server(data, env=dict(env)).start()
    second = Server(data, env=dict(env)).start()
    yield first, second
    first.stop(kill=True)
    second.stop(kill=True)


def clients(servers: tuple[Server, Server]) -> list[oci.core.BlockstorageClient]:
    return [s.blockstorage() for s in servers]


def in_parallel(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(n)`` for n < count at once; each result or the exception it raised."""
    def attempt(n: int) -> Any:
        try:
            return call(n)
        except oci.exceptions.ServiceError as exc:
            return exc
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(attempt, range(count)))


def test_read_then_write_rules_hold_across_two_processes(pair: tuple[Server, Server]) -> None:
    first, _ = pair
    tenancy = first.config()["tenancy"]
    ad = first.identity().list_availability_domains(tenancy).data[0].name
    # 50 concurrent CreateVolume with one retry token, through both processes: one volume.
    token = uuid.uuid4().hex
    details = M.CreateVolumeDetails(compartment_id=tenancy, availability_domain=ad,
                                    display_name="once", size_in_gbs=50)
    made = in_parallel(50, lambda n: pair[n % 2].blockstorage().create_volume(
        details, opc_retry_token=token).data.id)
    assert all(isinstance(m, str) for m in made), [m for m in made if not isinstance(m, str)]
    assert len(set(made)) == 1
    bs = first.blockstorage()
    listed = bs.list_volumes(compartment_id=tenancy, display_name="once").data
    assert [v.id for v in listed] == [made[0]]
    # 20 concurrent groups all claiming one volume: it joins exactly one.
    shared = create_volume(bs, tenancy, ad).id
    groups = in_parallel(20, lambda n: pair[n % 2].blockstorage().create_volume_group(
        M.CreateVolumeGroupDetails(
            compartment_id=tenancy, availability_domain=ad,
            source_details=M.VolumeGroupSourceFromVolumesDetails(volume_ids=[shared]),
        )).data.id)
    won = [g for g in groups if isinstance(g, str)]
    assert len(won) == 1, groups
    assert all(e.status == 409 for e in groups if not isinstance(e, str))
    assert bs.get_volume(shared).data.volume_group_id == won[0]
    # 20 concurrent compartments with one name: one.
    name = f"c-{uuid.uuid4().hex[:6]}"
    created = in_parallel(20, lambda n: pair[n % 2].identity().create_compartment(
        oci.identity.models.CreateCompartmentDetails(
            compartment_id=tenancy, name=name, description="race")).data.id)
    assert len([c for c in created if isinstance(c, str)]) == 1
    assert all(e.status == 409 for e in created if not isinstance(e, str))


def test_jobs_run_once_a_killed_process_is_taken_over_and_gc_runs_in_one(
    pair: tuple[Server, Server],
) -> None:
    first, second = pair
    bs_first, bs_second = clients(pair)
    tenancy = first.config()["tenancy"]
    ad = first.identity().list_availability_domains(tenancy).data[0].name
    a, b = create_volume(bs_first, tenancy, ad).id, create_volume(bs_first, tenancy, ad).id
    group = create_group(bs_first, tenancy, ad, [a, b]).id
    expected: dict[str, dict[str, bytes]] = {}
    backups = []
    for n in range(20):  # alternately through both processes, data changed in between
        write_image(first, a, (n % 4) * MIB, os.urandom(64 * 1024))
        write_image(first, b, (n % 4) * MIB, os.urandom(64 * 1024))
        client = (bs_first, bs_second)[n % 2]
        backup = client.create_volume_group_backup(
            M.CreateVolumeGroupBackupDetails(volume_group_id=group)).data
        done = wait_state(lambda c=client, i=backup.id: c.get_volume_group_backup(i).data,
                          *SETTLED)
        assert done.lifecycle_state == "AVAILABLE"
        backups.append(done)
        expected[done.id] = {v: _head(first, v) for v in (a, b)}
    with psycopg.connect(_dsn(first)) as db:
        runs = db.execute(
            "SELECT resource_id, count(*), max(attempts) FROM jobs "
            "WHERE kind = 'create_volume_group_backup' GROUP BY resource_id").fetchall()
    assert len(runs) == 20 and all(count == 1 and attempts == 1 for _, count, attempts in runs)
    for done in (backups[0], backups[-1], *random.sample(backups[1:-1], 2)):
        for member_id in done.volume_backup_ids:
            member = bs_first.get_volume_backup(member_id).data
            assert _restored_head(bs_first, first, tenancy, ad, member_id) == \
                expected[done.id][member.volume_id]

    # kill -9 whichever process is running a backup: the other takes it over and finishes it
    (first.data_dir / "pause-at").write_text("create_volume_group_backup:committed")
    write_image(first, a, 0, os.urandom(64 * 1024))
    want = {v: _head(first, v) for v in (a, b)}
    backup = bs_first.create_volume_group_backup(
        M.CreateVolumeGroupBackupDetails(volume_group_id=group)).data
    marker = first.data_dir / "paused"
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (first.data_dir / "pause-at").unlink()
    pid = int(marker.read_text().split()[1])
    marker.unlink()
    os.kill(pid, signal.SIGKILL)
    killed_first = first.proc is not None and first.proc.pid == pid
    survivor, bs = (second, bs_second) if killed_first else (first, bs_first)
    done = wait_state(lambda: bs.get_volume_group_backup(backup.id).data, *SETTLED)
    assert done.lifecycle_state == "AVAILABLE"
    member = bs.get_volume_backup(done.volume_backup_ids[0]).data
    assert _restored_head(bs, survivor, tenancy, ad, member.id) == want[member.volume_id]

    # periodic work ran, in one process only
    log = (first.data_dir.parent / f"{first.data_dir.name}-serve.log").read_text()
    pids = set(re.findall(r"garbage collection by pid (\d+)", log))
    assert len(pids) == 1, pids


def test_database_outage_gives_retryable_errors_and_loses_nothing(
    postgres: PostgresServer, pair: tuple[Server, Server],
) -> None:
    first, second = pair
    bs = first.blockstorage()
    tenancy = first.config()["tenancy"]
    ad = first.identity().list_availability_domains(tenancy).data[0].name
    volume = create_volume(bs, tenancy, ad).id
    write_image(first, volume, 0, os.urandom(MIB))
    backup = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume)).data
    postgres.halt()
    try:
        with pytest.raises(oci.exceptions.ServiceError) as err:
            bs.get_volume(volume)
        assert (err.value.status, err.value.code) == (503, "ServiceUnavailable")
        time.sleep(3)
    finally:
        postgres.resume()
    done = wait_state(lambda: bs.get_volume_backup(backup.id).data, *SETTLED, timeout=90)
    assert done.lifecycle_state == "AVAILABLE"
    again = second.blockstorage().create_volume_backup(
        M.CreateVolumeBackupDetails(volume_id=volume)).data
    assert wait_state(lambda: bs.get_volume_backup(again.id).data, *SETTLED
                      ).lifecycle_state == "AVAILABLE"
    deadline = time.monotonic() + 30  # finishing bookkeeping retries every few seconds
    while True:
        with psycopg.connect(_dsn(first)) as db:
            states = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        if states.keys() <= {"done"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert states.keys() <= {"done"}, states  # none failed, none left behind


def _dsn(server: Server) -> str:
    url = server.env["OCIBV_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    return url


def _head(server: Server, volume_id: str) -> bytes:
    with open(image_path(server, volume_id), "rb") as handle:
        return handle.read(4 * MIB)


def _restored_head(bs: Any, server: Server, tenancy: str, ad: str, backup_id: str) -> bytes:
    volume = bs.create_volume(M.CreateVolumeDetails(
        compartment_id=tenancy, availability_domain=ad,
        source_details=M.VolumeSourceFromVolumeBackupDetails(id=backup_id))).data
    wait_state(lambda: bs.get_volume(volume.id).data, "AVAILABLE")
    return _head(server, volume.id)


def test_a_sqlite_catalog_moves_into_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data).start()
    bs = server.blockstorage()
    tenancy = server.config()["tenancy"]
    ad = server.identity().list_availability_domains(tenancy).data[0].name
    volume = create_volume(bs, tenancy, ad).id
    write_image(server, volume, 0, os.urandom(MIB))
    want = _head(server, volume)
    backup = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume)).data
    wait_state(lambda: bs.get_volume_backup(backup.id).data, "AVAILABLE")
    server.stop()
    url = postgres.new_database()
    moved = server.ocibv("db", "migrate-to", url)
    assert "copied" in moved.stdout
    refused = server.ocibv("db", "migrate-to", url, check=False)  # never over a catalog
    assert refused.returncode == 1 and "already holds a catalog" in refused.stderr
    server.env["OCIBV_DATABASE_URL"] = url
    server.start()
    try:
        bs = server.blockstorage()  # the same keys sign: they moved too
        assert bs.get_volume_backup(backup.id).data.lifecycle_state == "AVAILABLE"
        assert _restored_head(bs, server, tenancy, ad, backup.id) == want
    finally:
        server.stop()
