"""Scale benchmark: a sparse volume with one non-zero 4 KiB block in every 256 KiB chunk.

    .venv/bin/python bench/scale.py [--sizes-gib 16,64] [--workdir DIR]

Per size: build the image, then a FULL and an INCREMENTAL (content rescan, after a few
writes) into a fresh local store, each in its own process (``os.wait4``: wall, CPU, peak
RSS). The worst case for metadata: every chunk is stored and named, so the manifest and the
index have one entry per 256 KiB of volume. Results go to ``bench/results/scale-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backup import measure

CHUNK = 256 << 10
RESULTS = Path(__file__).resolve().parent / "results"


def build(path: Path, size: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        for n in range(size // CHUNK):
            os.pwrite(fd, n.to_bytes(8, "little") * 512, n * CHUNK)  # 4 KiB, unique per chunk
        os.fsync(fd)
    finally:
        os.close(fd)


def step(args: argparse.Namespace) -> None:
    from ocibv.engine.backends import LocalBackend
    from ocibv.engine.backup import backup_volume
    from ocibv.engine.chunk_store import ChunkStore
    from ocibv.engine.manifest import FULL, INCREMENTAL, load_manifest

    store = ChunkStore(LocalBackend(Path(args.store)))
    if args.step == "FULL":
        backup_volume(store, Path(args.image), backup_id="full", volume_id="v",
                      backup_type=FULL)
    else:
        previous = load_manifest(store.backend, "full")
        backup_volume(store, Path(args.image), backup_id="incr", volume_id="v",
                      backup_type=INCREMENTAL, previous=previous)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes-gib", default="16,64")
    p.add_argument("--workdir", default="/var/tmp/ocibv-scale")
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--image", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.step:
        step(args)
        return 0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, object] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    for gib in (float(s) for s in args.sizes_gib.split(",")):
        size = int(gib * (1 << 30))
        image, store, log = work / "scale.img", work / "store", work / "scale.log"
        build(image, size)
        shutil.rmtree(store, ignore_errors=True)
        row = {}
        for name in ("FULL", "INCREMENTAL"):
            if name == "INCREMENTAL":
                with open(image, "r+b") as handle:
                    for n in range(0, size // CHUNK, max(1, size // CHUNK // 64)):
                        handle.seek(n * CHUNK + 8192)
                        handle.write(os.urandom(4096))
            cmd = [sys.executable, __file__, "--step", name, "--store", str(store),
                   "--image", str(image)]
            row[name] = measure(cmd, log=log)
            print(f"{gib:g} GiB {name:12s} wall {row[name]['wall_s']:7.2f}s "
                  f"cpu {row[name]['cpu_s']:7.2f}s rss {row[name]['rss_mb']:6.0f}MB", flush=True)
        out[f"{gib:g}GiB"] = row
        shutil.rmtree(store, ignore_errors=True)
        image.unlink()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale-{datetime.now(UTC):%Y-%m-%d}.json").write_text(
        json.dumps(out, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
