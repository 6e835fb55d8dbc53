"""Backup policy benchmark: a simulated year of Oracle's gold policy on a volume group.

    .venv/bin/python bench/policies.py [--days 365] [--data-gib 1] [--change 0.01]
                                       [--rescan] [--profile FILE] [--workdir D]

Two 50 GB volumes in one group, each holding ``--data-gib`` GiB of data (``bench/backup.py``'s
image: 16 MiB segments of zeros written as bytes, random and compressible text, written into
the fresh image before anything opened it, as ``ocibv volume import`` would); gold is
assigned to the group and the service clock is advanced one simulated day at a time with
``--change`` of each volume's data rewritten before each day in scattered, aligned 64 KiB
random writes.

The changes go where a user's go: both volumes are attached (``AttachmentService``, as
``ocibv volume attach``) to a real NBD server (``ocibv.nbd.NbdServer`` on 127.0.0.1, its own
event loop thread in this process, as under ``serve``) and each day's writes are sent over
one TCP connection per volume with a small NBD client (``tests/nbd/helpers.RawClient``,
16 requests in flight), then a FLUSH. So the volumes' changed-block records are trusted and
each daily INCREMENTAL reads only what changed, as it would for a user. ``--rescan`` is the
earlier method, for comparison: volumes never attached, the same writes made with ``pwrite``
straight into the image files behind the records' backs, so every INCREMENTAL compares
content.

Everything else runs in this process through the services (the rules of ``ocibv clock
advance``: ``Services.advance_clock``) on a local store with its fsyncs; the NBD server's
CPU counts in the CPU figure. At the end: garbage collection (grace 0, twice: the first run
condemns, the second deletes), then the store's ``du`` against the kept backups' data — the
sum of their logical sizes and the distinct data they reference. ``--profile FILE`` writes
a cProfile of the simulated days. Prints a table; writes
``bench/results/policies-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import random
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import blake3

from backup import build_image, du
from ocibv.config import Settings
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE
from ocibv.nbd import ExportTable, NbdServer
from ocibv.nbd import protocol as nbdp
from ocibv.nbd.data_plane import NbdDataPlane
from ocibv.services.container import Services
from ocibv.services.context import Caller
from ocibv.store import resources as repo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.nbd.helpers import RawClient

RESULTS = Path(__file__).resolve().parent / "results"
GOLD = "ocid1.volumebackuppolicy.oc1..aaaaaaaagoldocibvoracledefinedpolicy"
GIB = 1 << 30
WRITE = 64 << 10
QUEUE_DEPTH = 16  # NBD requests a client keeps in flight
AD = "Uocm:PHX-AD-1"


def changes(data_bytes: int, fraction: float, seed: int) -> Iterator[tuple[int, bytes]]:
    """A day's writes to one volume: ``(offset, 64 KiB)``, scattered, aligned, in order."""
    rng = random.Random(seed)
    count = int(data_bytes * fraction) // WRITE
    for i, slot in enumerate(sorted(rng.sample(range(data_bytes // WRITE), count))):
        yield slot * WRITE, blake3.blake3(b"%d-%d" % (seed, i)).digest(length=WRITE)


def change_file(path: Path, writes: Iterator[tuple[int, bytes]]) -> None:
    """``--rescan``: write straight into the image file (its changed-block record no longer
    vouches for it, so the next INCREMENTAL compares content)."""
    fd = os.open(path, os.O_RDWR)
    try:
        for offset, data in writes:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


class NbdDisks:
    """A real NBD server on its own event loop thread, the volumes attached to it, and one
    client connection per volume: how a user's host writes to them."""

    def __init__(self, services: Services, caller: Caller, volume_ids: list[str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="nbd", daemon=True)
        self.thread.start()
        exports = ExportTable()
        self.server = NbdServer(exports, host="127.0.0.1", port=0)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result()
        self.plane = NbdDataPlane(exports, self.server)
        self.plane.loop = self.loop
        services.attachments.use_data_plane(self.plane)
        self.services, self.caller = services, caller
        self.clients: dict[str, RawClient] = {}
        for volume_id in volume_ids:
            attachment = services.attachments.attach_volume(caller, volume_id, False)
            client = RawClient(self.server.port, timeout=60)
            client.start()
            client.go(attachment.export_name)
            self.clients[volume_id] = client

    def write(self, volume_id: str, writes: Iterator[tuple[int, bytes]]) -> None:
        """The writes, ``QUEUE_DEPTH`` in flight at a time (as a host's block layer keeps
        several requests outstanding), then a FLUSH."""
        client = self.clients[volume_id]
        in_flight = 0
        for cookie, (offset, data) in enumerate(writes):
            client.request(nbdp.CMD_WRITE, offset, len(data), cookie=cookie)
            client.send(data)
            in_flight += 1
            if in_flight >= QUEUE_DEPTH:
                self._reply(client, "write")
                in_flight -= 1
        for _ in range(in_flight):
            self._reply(client, "write")
        client.request(nbdp.CMD_FLUSH, 0, 0)
        self._reply(client, "flush")

    @staticmethod
    def _reply(client: RawClient, what: str) -> None:
        error, cookie = client.simple_reply()
        if error:
            raise RuntimeError(f"NBD {what} (cookie {cookie}) failed: error {error}")

    def close(self) -> None:
        for volume_id, client in self.clients.items():
            client.close()
            self.services.attachments.detach_volume(self.caller, volume_id)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--data-gib", type=float, default=1.0)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--rescan", action="store_true",
                        help="write into the image files directly (content rescans)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write a cProfile of the simulated days to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ocibv-policies-", dir=args.workdir))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean the work dir up on kill
    try:
        result = run(work, args.days, args.data_gib, args.change, args.rescan, args.profile)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"policies-{datetime.now(UTC):%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:32} {value}")
    print(f"written to {out}")


def run(
    work: Path, days: int, data_gib: float, fraction: float, rescan: bool,
    profile: Path | None,
) -> dict[str, object]:
    services = Services(Settings.load(work / "data"))
    services.migrate()
    services.life.start()  # attachments are held by a live process
    principal = services.identity.create_tenancy("bench")
    caller = Caller(principal.tenancy_id, principal.user_id)
    volumes = []
    # The image is 1.6x the data wanted: build_image writes 62.5% of its size.
    image_size = int(data_gib * GIB * 1.6) // (16 << 20) * (16 << 20)
    for n in range(2):
        res = services.volumes.create_volume(
            caller,
            {"compartment_id": caller.tenancy_id, "availability_domain": AD,
             "display_name": f"v{n}", "size_in_gbs": 50},
            None,
        )
        services.drain_jobs()
        path = services.settings.volume_path(res.id)
        build_image(path, image_size, seed=n + 1)
        os.truncate(path, 50 * GIB)
        volumes.append(res)
    group = services.volume_groups.create_volume_group(
        caller,
        {"compartment_id": caller.tenancy_id, "availability_domain": AD, "display_name": "g",
         "source_details": {"type": "volumeIds", "volumeIds": [v.id for v in volumes]}},
        None,
    )
    services.drain_jobs()
    start = datetime(services.clock.now().year + 1, 1, 1, tzinfo=UTC) - timedelta(hours=12)
    services.clock.set(start)
    services.volume_backup_policy_assignments.create_volume_backup_policy_assignment(
        caller, {"asset_id": group.id, "policy_id": GOLD}
    )
    disks = None if rescan else NbdDisks(services, caller, [v.id for v in volumes])
    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    cpu_began = time.process_time()
    if profiler:
        profiler.enable()
    slowest = 0.0
    day_seconds: list[float] = []  # advance only: the backups, expiries and GC of each day
    write_seconds = 0.0  # the day's writes through NBD (or into the files)
    for day in range(days):
        t = time.perf_counter()
        for n, volume in enumerate(volumes):
            writes = changes(image_size, fraction, day * 2 + n)
            if disks is None:
                change_file(services.settings.volume_path(volume.id), writes)
            else:
                disks.write(volume.id, writes)
        write_seconds += time.perf_counter() - t
        t = time.perf_counter()
        services.advance_clock(86400)
        day_seconds.append(time.perf_counter() - t)
        slowest = max(slowest, day_seconds[-1])
        if day % 30 == 29:
            store_gib = du(work / "data" / "store") / GIB
            print(
                f"day {day + 1}: {time.perf_counter() - began:.1f} s, "
                f"cpu {time.process_time() - cpu_began:.1f} s, store {store_gib:.2f} GiB, "
                f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    if profiler and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    if disks is not None:
        disks.close()
    services.life.stop()
    store_before_gc = du(work / "data" / "store")
    for _ in range(2):  # the first condemns what no backup uses, the second deletes it
        services.store_housekeeping.collect_garbage(grace_seconds=0)
    store = du(work / "data" / "store")
    with services.db.read() as conn:
        kept = [
            b for b in repo.of_kind(conn, caller.tenancy_id, Kind.VOLUME_BACKUP)
            if b.lifecycle_state == AVAILABLE
        ]
        groups = [
            g for g in repo.of_kind(conn, caller.tenancy_id, Kind.VOLUME_GROUP_BACKUP)
            if g.lifecycle_state == AVAILABLE
        ]
    manifests = [services.catalog.manifest(caller.tenancy_id, b.id) for b in kept]
    logical = sum(m.data_bytes for m in manifests)
    distinct: dict[str, int] = {}
    for m in manifests:
        for chunk in m.chunks:
            distinct[chunk.digest] = chunk.size
    kinds: dict[str, int] = {}
    for g in groups:
        word = g.display_name.split()[1]
        kinds[word] = kinds.get(word, 0) + 1
    return {
        "days": days,
        "writes": "direct into the image files (content rescans)" if rescan else "through NBD",
        "data_gib_per_volume": round(image_size * 0.625 / GIB, 3),
        "change_per_day": fraction,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "slowest_day_seconds": round(slowest, 2),
        "first_day_seconds": round(day_seconds[0], 2),
        "median_day_seconds": round(statistics.median(day_seconds), 3),
        "writing_seconds": round(write_seconds, 1),
        "kept_group_backups": kinds,
        "kept_logical_gib": round(logical / GIB, 2),
        "kept_distinct_gib": round(sum(distinct.values()) / GIB, 2),
        "store_gib_before_gc": round(store_before_gc / GIB, 2),
        "store_gib": round(store / GIB, 2),
        "store_vs_distinct": round(store / max(1, sum(distinct.values())), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg()[0],
    }


if __name__ == "__main__":
    main()
