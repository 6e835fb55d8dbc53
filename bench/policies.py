"""Backup policy benchmark: a simulated year of Oracle's gold policy on a volume group.

    .venv/bin/python bench/policies.py [--days 365] [--data-gib 1] [--change 0.01] [--workdir D]

Two 50 GB volumes in one group, each holding ``--data-gib`` GiB of data (``bench/backup.py``'s
image: 16 MiB segments of zeros written as bytes, random and compressible text); gold is
assigned to the group and the service clock is advanced one simulated day at a time with
``--change`` of each volume's data rewritten before each day (scattered 64 KiB random
writes). Everything runs in this process through the services (the rules of ``ocibv clock
advance``) on a local store with its fsyncs. At the end: garbage collection (grace 0), then
the store's ``du`` against the kept backups' data — the sum of their logical sizes and the
distinct data they reference. Prints a table; writes ``bench/results/policies-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import blake3

from backup import build_image, du
from ocibv.config import Settings
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE
from ocibv.services.container import Services
from ocibv.services.context import Caller
from ocibv.store import resources as repo

RESULTS = Path(__file__).resolve().parent / "results"
GOLD = "ocid1.volumebackuppolicy.oc1..aaaaaaaagoldocibvoracledefinedpolicy"
GIB = 1 << 30
WRITE = 64 << 10
AD = "Uocm:PHX-AD-1"


def change(path: Path, data_bytes: int, fraction: float, seed: int) -> None:
    rng = random.Random(seed)
    count = int(data_bytes * fraction) // WRITE
    fd = os.open(path, os.O_RDWR)
    try:
        for i, slot in enumerate(sorted(rng.sample(range(data_bytes // WRITE), count))):
            os.pwrite(fd, blake3.blake3(b"%d-%d" % (seed, i)).digest(length=WRITE), slot * WRITE)
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--data-gib", type=float, default=1.0)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ocibv-policies-", dir=args.workdir))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean the work dir up on kill
    try:
        result = run(work, args.days, args.data_gib, args.change)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"policies-{datetime.now(UTC):%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:32} {value}")
    print(f"written to {out}")


def run(work: Path, days: int, data_gib: float, fraction: float) -> dict[str, object]:
    services = Services(Settings.load(work / "data"))
    services.migrate()
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
    began = time.perf_counter()
    cpu_began = time.process_time()
    slowest = 0.0
    for day in range(days):
        for n, volume in enumerate(volumes):
            change(services.settings.volume_path(volume.id), image_size, fraction, day * 2 + n)
        t = time.perf_counter()
        services.advance_clock(86400)
        slowest = max(slowest, time.perf_counter() - t)
        if day % 30 == 29:
            store_gib = du(work / "data" / "store") / GIB
            print(
                f"day {day + 1}: {time.perf_counter() - began:.1f} s, "
                f"cpu {time.process_time() - cpu_began:.1f} s, store {store_gib:.2f} GiB",
                file=sys.stderr,
                flush=True,
            )
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    store_before_gc = du(work / "data" / "store")
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
        "data_gib_per_volume": round(image_size * 0.625 / GIB, 3),
        "change_per_day": fraction,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "slowest_day_seconds": round(slowest, 2),
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
