"""Chunk size measurement: FULL backup time and INCREMENTAL stored bytes per chunk size.

    .venv/bin/python bench/chunk_size.py [--size-gib 4] [--runs 3] [--sizes-kib 128,256,...]

Uses the image of ``bench/backup.py`` (same seed) and the same change (1% of the volume in
scattered 64 KiB writes). Each backup runs in this process on a fresh local store; figures
are medians over ``--runs``. Prints a table and writes ``bench/results/chunk-size-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from backup import SEGMENT, build_image, change_image, copy_image, du
from ocibv.engine.backends import LocalBackend
from ocibv.engine.backup import backup_volume
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.manifest import FULL, INCREMENTAL

RESULTS = Path(__file__).resolve().parent / "results"


def one(base: Path, work: Path, chunk_size: int, workers: int, run: int) -> dict[str, float]:
    # A fresh store per measurement, all deleted at the end (see Tool.new_repo in backup.py).
    image, repo = work / "cs-volume.img", work / f"cs-store-{chunk_size}-{run}"
    shutil.rmtree(repo, ignore_errors=True)
    copy_image(base, image)
    store = ChunkStore(LocalBackend(repo))
    start = time.perf_counter()
    full = backup_volume(
        store,
        image,
        backup_id="full",
        volume_id="v",
        chunk_size=chunk_size,
        backup_type=FULL,
        workers=workers,
    )
    full_s = time.perf_counter() - start
    full_du = du(repo)
    change_image(image)
    start = time.perf_counter()
    incr = backup_volume(
        store,
        image,
        backup_id="incr",
        volume_id="v",
        chunk_size=chunk_size,
        previous=full,
        backup_type=INCREMENTAL,
        workers=workers,
    )
    incr_s = time.perf_counter() - start
    full_digests = full.digests()
    new = {e.digest: e for e in incr.chunks if e.digest not in full_digests}
    result = {
        "full_s": full_s,
        "full_store_mb": full_du / 1e6,
        "full_chunks": float(len(full.chunks)),
        "incremental_s": incr_s,
        "incremental_store_mb": (du(repo) - full_du) / 1e6,
        "incremental_new_chunks": float(len(new)),
        "incremental_new_stored_mb": sum(e.stored_size for e in new.values()) / 1e6,
        "manifest_kb": len(json.dumps([list(e) for e in incr.chunks])) / 1e3,
    }
    image.unlink()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size-gib", type=float, default=4)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sizes-kib", default="128,256,512,1024,4096")
    p.add_argument(
        "--workdir", default=os.path.join(os.environ.get("TMPDIR", "/var/tmp"), "ocibv-bench")
    )
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gib * (1 << 30)) // SEGMENT * SEGMENT
    base = work / f"base-{size >> 20}m-seed1.img"
    if not base.exists():
        build_image(base, size)
    sizes = [int(s) * 1024 for s in args.sizes_kib.split(",")]
    raw: dict[int, list[dict[str, float]]] = {s: [] for s in sizes}
    for run in range(args.runs):
        for cs in sizes:
            r = one(base, work, cs, args.workers, run)
            raw[cs].append(r)
            print(
                f"run {run + 1} {cs >> 10:5d} KiB  full {r['full_s']:.2f}s  "
                f"incr {r['incremental_s']:.2f}s +{r['incremental_store_mb']:.1f}MB",
                flush=True,
            )
    for repo in work.glob("cs-store-*"):
        shutil.rmtree(repo)
    medians = {
        cs: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for cs, runs in raw.items()
    }
    print(
        f"\n{'chunk':>8s} {'full s':>7s} {'full MB':>8s} {'chunks':>7s} {'incr s':>7s} "
        f"{'incr +MB':>9s} {'new chunks':>10s} {'manifest kB':>11s}"
    )
    for cs, m in medians.items():
        print(
            f"{cs >> 10:5d}KiB {m['full_s']:7.2f} {m['full_store_mb']:8.1f} "
            f"{m['full_chunks']:7.0f} {m['incremental_s']:7.2f} "
            f"{m['incremental_store_mb']:9.1f} {m['incremental_new_chunks']:10.0f} "
            f"{m['manifest_kb']:11.0f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"chunk-size-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(
        json.dumps(
            {"size_bytes": size, "runs": args.runs, "medians": medians, "raw": raw}, indent=2
        )
        + "\n"
    )
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
