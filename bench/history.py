"""History benchmark: the cost of backup N of a group does not grow with N.

    .venv/bin/python bench/history.py [--backups 200] [--size-mib 64] [--s3]

One volume image (``--size-mib``, half random data), a FULL, then ``--backups``
INCREMENTAL backups (content rescan), each after 4 scattered 64 KiB writes inside the data
(so every backup has the same amount to read), into one store;
after each backup the unique sizes are brought up to date the way the services do it (the
incremental reference table, ``ocibv.services.unique_sizes``).

Single backups take ~0.05 s and vary by several times that on a shared machine (fsync), so
one backup's time says little. Reported: the raw times of backup 2 and backup N; the ratio
of the medians of the first 10 and the last 10 backups (the goal's figure, robust to
outliers); and the trend over all backups — the Theil-Sen slope (median of the slopes
between every pair of backups, robust to a minority of outliers) times N-1, as a fraction
of the first median: the growth from backup 2 to backup N the whole series supports. RSS:
after backup 10 and after the last one. Results go to ``bench/results/history-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def theil_sen(values: list[float]) -> float:
    """Median of the slopes between every pair of points (index, value)."""
    slopes = [
        (values[j] - values[i]) / (j - i)
        for i in range(len(values))
        for j in range(i + 1, len(values))
    ]
    return statistics.median(slopes) if slopes else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backups", type=int, default=200)
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--s3", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ocibv.engine.backends import LocalBackend, open_backend
    from ocibv.engine.backup import backup_volume
    from ocibv.engine.chunk_store import ChunkStore
    from ocibv.engine.manifest import FULL, INCREMENTAL
    from ocibv.services.unique_sizes import RefTable

    work = Path(tempfile.mkdtemp(prefix="ocibv-history-"))
    server = None
    if args.s3:
        from tests.s3_server import DUMMY_CREDENTIALS, S3Server

        os.environ.update(DUMMY_CREDENTIALS)
        server = S3Server.start(work / "moto.log")
        backend = open_backend(f"s3://history-{os.getpid()}/repo?endpoint={server.endpoint}")
    else:
        backend = LocalBackend(work / "repo")
    try:
        size = args.size_mib << 20
        image = work / "v.img"
        rng = random.Random(1)
        with open(image, "wb") as handle:
            handle.truncate(size)
            for offset in range(0, size, 2 << 20):
                handle.seek(offset)
                handle.write(rng.randbytes(1 << 20))
        store = ChunkStore(backend)
        table = RefTable()
        previous = backup_volume(store, image, backup_id="b0", volume_id="v", backup_type=FULL)
        table.add("b0", ((e.digest, e.stored_size) for e in previous.chunks))
        times, rss = [], []
        for n in range(1, args.backups + 1):
            with open(image, "r+b") as handle:  # inside the data (never into a hole, which
                for _ in range(4):  # would make every later backup read more)
                    segment = rng.randrange(0, size, 2 << 20)
                    handle.seek(segment + rng.randrange(0, (1 << 20) - (64 << 10), 4096))
                    handle.write(rng.randbytes(64 << 10))
            start = time.perf_counter()
            previous = backup_volume(store, image, backup_id=f"b{n}", volume_id="v",
                                     backup_type=INCREMENTAL, previous=previous)
            table.add(f"b{n}", ((e.digest, e.stored_size) for e in previous.chunks))
            table.take_dirty()
            times.append(time.perf_counter() - start)
            rss.append(rss_mb())
        window = min(10, len(times))  # medians of 10: single backups are noisy
        early = statistics.median(times[:window])
        late = statistics.median(times[-window:])
        slope = theil_sen(times)
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg(),
            "store": "s3 (moto)" if args.s3 else "local",
            "size_mib": args.size_mib,
            "backups": args.backups,
            "backup_2_s": round(times[0], 4),
            "backup_last_s": round(times[-1], 4),
            "median_first_10_s": round(early, 4),
            "median_last_10_s": round(late, 4),
            "ratio_median_last_10_to_first_10": round(late / early, 3),
            "theil_sen_slope_ms_per_backup": round(slope * 1000, 4),
            "trend_growth_over_run": round(slope * (len(times) - 1) / early, 3),
            "rss_mb_after_10": round(rss[min(9, len(rss) - 1)], 1),
            "rss_mb_after_last": round(rss[-1], 1),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "times_s": [round(t, 4) for t in times],
        }
        print(json.dumps({k: v for k, v in result.items() if k != "times_s"}, indent=2))
        RESULTS.mkdir(exist_ok=True)
        kind = "-s3" if args.s3 else ""
        out = RESULTS / f"history{kind}-{datetime.now(UTC):%Y-%m-%d}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
