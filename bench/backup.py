"""Backup benchmark: ocibv's engine against restic and borg on the same volume image.

    .venv/bin/python bench/backup.py [--runs 3] [--size-gib 4] [--workdir DIR]

Builds a reproducible sparse image (``--size-gib`` GiB, 62.5% of it written in 16 MiB
segments: a third zeros written as real zero bytes, a third random, a third compressible log
text; fixed seed), then per run and per tool: FULL backup into an empty repository; 1% of
the volume rewritten in scattered 64 KiB writes (fixed seed); INCREMENTAL backup; restore of
the latest backup, checked (sha256 equal, every hole of the source still a hole). Each step
runs in its own subprocess (ocibv too), and ``os.wait4`` gives its CPU time and peak RSS;
before each, ``os.sync`` writes out what earlier steps left dirty and the image is read into
the page cache (both untimed: borg drops the pages of what it read).
A restore's "wall to durable" adds the ``fsync`` of the restored file right after the
tool returns: ocibv's restore is durable when it returns, restic's and borg's leave their
bytes in the page cache (the goal is judged on the wall time; both are reported).
Store growth is ``du`` of the repository. Reported figures are medians over the runs; the
page cache is warm (dropping it would need root and is not attempted). Tool defaults are
kept: restic (repository v2, compression auto), borg (``-e none``, lz4).
Results go to ``bench/results/backup-<date>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3

SEGMENT = 16 << 20
CHANGE_WRITE = 64 << 10
IMAGE_SEED = 1
CHANGE_SEED = 2
STEPS = ("FULL", "INCREMENTAL", "RESTORE")
TOOLS = ("ocibv", "restic", "borg")
RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- the volume image


def _text_corpus(rng: random.Random) -> bytes:
    """4 MiB of log-like lines over a 3,000-word Zipf vocabulary (zstd-1 ratio ~2.9)."""
    syllables = [b"ka", b"lo", b"mi", b"ne", b"ru", b"sa", b"ti", b"vo", b"de", b"gra"]
    syllables += [b"pel", b"ston", b"ber", b"an", b"is", b"or", b"ex", b"qua"]
    vocab = [b"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(3000)]
    weights = list(itertools.accumulate(1 / (i + 1) for i in range(len(vocab))))
    levels = [b"INFO", b"INFO", b"INFO", b"DEBUG", b"WARN", b"ERROR"]
    lines, n = [], 0
    while n < 4 << 20:
        words = b" ".join(rng.choices(vocab, cum_weights=weights, k=rng.randint(4, 16)))
        stamp = b"2024-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
            rng.randint(0, 999),
        )
        line = b"%s %s [%s] %s\n" % (stamp, rng.choice(levels), rng.choice(vocab), words)
        lines.append(line)
        n += len(line)
    return b"".join(lines)


def build_image(path: Path, size: int, seed: int = IMAGE_SEED) -> None:
    """Write the benchmark image: 62.5% of ``size`` in segments of zeros, random and text."""
    rng = random.Random(seed)
    corpus = _text_corpus(rng)
    n_segments = size // SEGMENT
    written = round(n_segments * 2.5 / 4)
    segments = sorted(rng.sample(range(n_segments), written))
    kinds = (["zero", "random", "text"] * written)[:written]
    rng.shuffle(kinds)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        zeros = bytes(SEGMENT)
        for segment, kind in zip(segments, kinds, strict=True):
            if kind == "zero":
                data = zeros
            elif kind == "random":
                data = blake3.blake3(b"%d-%d" % (seed, segment)).digest(length=SEGMENT)
            else:  # 4 KiB slices of the corpus at random offsets: text, but no duplicates
                offsets = (rng.randrange(len(corpus) - 4096) for _ in range(SEGMENT // 4096))
                data = b"".join(corpus[o : o + 4096] for o in offsets)
            os.pwrite(fd, data, segment * SEGMENT)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.rename(path)


def change_image(path: Path, seed: int = CHANGE_SEED) -> int:
    """Overwrite 1% of the image in scattered, aligned 64 KiB random writes; bytes written."""
    size = path.stat().st_size
    rng = random.Random(seed)
    count = size // 100 // CHANGE_WRITE
    fd = os.open(path, os.O_RDWR)
    try:
        for i, slot in enumerate(sorted(rng.sample(range(size // CHANGE_WRITE), count))):
            data = blake3.blake3(b"change-%d-%d" % (seed, i)).digest(length=CHANGE_WRITE)
            os.pwrite(fd, data, slot * CHANGE_WRITE)
        os.fsync(fd)
    finally:
        os.close(fd)
    return count * CHANGE_WRITE


def data_extents(path: Path) -> list[tuple[int, int]]:
    """``(start, end)`` of the allocated regions of a file."""
    from ocibv.engine.volume_files import iter_data_extents

    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return [(s, s + n) for s, n in iter_data_extents(fd, size)]
    finally:
        os.close(fd)


def data_blocks(fd: int, path: Path, block: int = 4 << 20) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` of every data extent of ``path`` (open as ``fd``), ``block``
    bytes at a time."""
    for start, end in data_extents(path):
        for pos in range(start, end, block):
            yield pos, os.pread(fd, min(block, end - pos), pos)


def warm(path: Path) -> None:
    """Read every data extent of ``path`` into the page cache (untimed, before a backup
    step): borg drops the pages of the files it backed up (``POSIX_FADV_DONTNEED``), and the
    tool after it read the image from the disk — ocibv's rescan took 2.1-2.3 s after borg's
    and 1.06 s before it, in one run of this benchmark."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for _block in data_blocks(fd, path):
            pass
    finally:
        os.close(fd)


def copy_image(src: Path, dst: Path) -> None:
    """Copy every data extent byte for byte (zeros stay allocated, holes stay holes)."""
    fd_in = os.open(src, os.O_RDONLY)
    fd_out = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd_out, os.fstat(fd_in).st_size)
        for pos, block in data_blocks(fd_in, src):
            os.pwrite(fd_out, block, pos)
        os.fsync(fd_out)
    finally:
        os.close(fd_in)
        os.close(fd_out)


def fsync_seconds(path: Path) -> float:
    """Seconds an ``fsync`` of ``path`` takes right after a restore wrote it: what is left
    to make the restore durable. ocibv's restore ``fsync``s before it returns (~0 here);
    restic's and borg's return with their bytes in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        start = time.perf_counter()
        os.fsync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)


def holes_preserved(source: Path, restored: Path) -> bool:
    """True if every allocated region of ``restored`` is allocated in ``source`` too."""
    src = data_extents(source)
    i = 0
    for start, end in data_extents(restored):
        while i < len(src) and src[i][1] <= start:
            i += 1
        if i == len(src) or src[i][0] > start or src[i][1] < end:
            return False
    return True


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def du(path: Path) -> int:
    """Disk usage in bytes, like ``du -s``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


# ---------------------------------------------------------------- running a step


# A minimal launcher (``python -S``, ~10 MB) forks and execs the step. On exec the kernel
# folds the pre-exec RSS into the child's ru_maxrss, so forking the tool straight from this
# (bigger) process would report our RSS as the tool's floor.
_LAUNCHER = """
import json, os, sys, time
log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - start
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "wall_s": wall,
                  "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}))
"""


def measure(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, log: Path
) -> dict[str, float]:
    """Run ``cmd``; its wall time, user+sys CPU time and peak RSS (from ``os.wait4``).

    Every dirty page is written out first (``os.sync``, untimed): a step must not pay for
    the previous one's writes — restic's restore returns with its 4.3 GB still in the page
    cache, and an ocibv step right after it measured 4.98 s where it otherwise took 2.9-3.3."""
    os.sync()
    launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(log), *cmd]
    done = subprocess.run(launcher, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"launcher failed: {done.stderr}")
    result = json.loads(done.stdout)
    if result.pop("code") != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}")
    return {k: float(v) for k, v in result.items()}


S3: dict[str, str] = {}
"""With ``--s3``: ``endpoint`` of the S3 server both tools write to (moto on loopback)."""


def s3_bytes(bucket: str) -> int:
    """Bytes of every object in ``bucket`` of the benchmark's S3 server."""
    import boto3

    client = boto3.client("s3", endpoint_url=S3["endpoint"])
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        total += sum(item["Size"] for item in page.get("Contents", ()))
    return total


class Tool:
    name = ""

    def __init__(self, work: Path, image: Path, log: Path) -> None:
        self.repo = work / f"repo-{self.name}"
        self.work, self.image, self.log = work, image, log
        self.bucket = ""

    def size(self) -> int:
        """What the repository holds now (``du``, or the bucket's bytes on S3)."""
        return s3_bytes(self.bucket) if S3 else du(self.repo)

    def new_repo(self, run: int) -> None:
        """A fresh repository directory for ``run``; all are deleted after the last run.

        Deleting thousands of files just before a backup makes ext4 without a journal (as
        on the dev VM) skip their inode numbers for 30 s ("recently deleted" scans in every
        file creation), which would measure the harness, not the tools.
        """
        self.repo = self.work / f"repo-{self.name}-{run}"
        shutil.rmtree(self.repo, ignore_errors=True)
        self.bucket = f"bench-{self.name}-{run}-{os.getpid()}"

    def remove_repos(self) -> None:
        for repo in self.work.glob(f"repo-{self.name}-*"):
            shutil.rmtree(repo, ignore_errors=True)

    def run(self, step: str, target: Path) -> dict[str, float]:
        raise NotImplementedError


class Ocibv(Tool):
    name = "ocibv"

    def __init__(self, work: Path, image: Path, log: Path, args: argparse.Namespace) -> None:
        super().__init__(work, image, log)
        self.extra = ["--workers", str(args.workers), "--pack-size", str(args.pack_size)]
        if args.chunk_size:
            self.extra += ["--chunk-size", str(args.chunk_size)]

    def run(self, step: str, target: Path) -> dict[str, float]:
        store = f"s3://{self.bucket}/repo?endpoint={S3['endpoint']}" if S3 else str(self.repo)
        cmd = [
            sys.executable,
            __file__,
            "--step",
            step,
            "--store",
            store,
            "--image",
            str(target if step == "RESTORE" else self.image),
            *self.extra,
        ]
        return measure(cmd, log=self.log)


class Restic(Tool):
    name = "restic"

    def run(self, step: str, target: Path) -> dict[str, float]:
        repo = f"s3:{S3['endpoint']}/{self.bucket}/repo" if S3 else str(self.repo)
        env = {
            **os.environ,
            "RESTIC_PASSWORD": "bench",
            "RESTIC_REPOSITORY": repo,
            "RESTIC_CACHE_DIR": str(self.work / "restic-cache"),
        }
        if step == "FULL":
            shutil.rmtree(self.work / "restic-cache", ignore_errors=True)
            subprocess.run(["restic", "init", "-q"], env=env, check=True, capture_output=True)
        if step == "RESTORE":
            out = target.parent / "restic-out"
            shutil.rmtree(out, ignore_errors=True)
            m = measure(
                ["restic", "restore", "latest", "--target", str(out), "-q"], env=env, log=self.log
            )
            found = [p for p in out.rglob("*") if p.is_file()]
            found[0].rename(target)
            shutil.rmtree(out)
            return m
        return measure(
            ["restic", "backup", "-q", "--host", "bench", self.image.name],
            env=env,
            cwd=self.image.parent,
            log=self.log,
        )


class Borg(Tool):
    name = "borg"

    def run(self, step: str, target: Path) -> dict[str, float]:
        env = {
            **os.environ,
            "BORG_REPO": str(self.repo),
            "BORG_BASE_DIR": str(self.work / "borg"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }
        if step == "FULL":
            shutil.rmtree(self.work / "borg", ignore_errors=True)
            subprocess.run(["borg", "init", "-e", "none"], env=env, check=True, capture_output=True)
        if step == "RESTORE":
            out = target.parent / "borg-out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            m = measure(
                ["borg", "extract", "--sparse", "::incremental"], env=env, cwd=out, log=self.log
            )
            (out / self.image.name).rename(target)
            shutil.rmtree(out)
            return m
        archive = "::full" if step == "FULL" else "::incremental"
        return measure(
            ["borg", "create", archive, self.image.name],
            env=env,
            cwd=self.image.parent,
            log=self.log,
        )


def ocibv_step(args: argparse.Namespace) -> None:
    """One ocibv step, run in its own process by :class:`Ocibv` (so RSS is comparable)."""
    from ocibv.engine.backends import LocalBackend, open_backend
    from ocibv.engine.backup import backup_volume, restore_volume
    from ocibv.engine.chunk_store import DEFAULT_CHUNK_SIZE, ChunkStore
    from ocibv.engine.manifest import FULL, INCREMENTAL, load_manifest

    backend = open_backend(args.store) if "://" in args.store else LocalBackend(args.store)
    store = ChunkStore(backend, pack_size=args.pack_size or None)
    chunk_size = args.chunk_size or DEFAULT_CHUNK_SIZE
    image = Path(args.image)
    if args.step == "FULL":
        backup_volume(
            store,
            image,
            backup_id="full",
            volume_id="vol",
            chunk_size=chunk_size,
            backup_type=FULL,
            workers=args.workers,
        )
    elif args.step == "INCREMENTAL":
        previous = load_manifest(store.backend, "full")
        backup_volume(
            store,
            image,
            backup_id="incremental",
            volume_id="vol",
            chunk_size=chunk_size,
            previous=previous,
            backup_type=INCREMENTAL,
            workers=args.workers,
        )
    else:
        manifest = load_manifest(store.backend, "incremental")
        restore_volume(store, manifest, image, workers=args.workers)


# ---------------------------------------------------------------- the benchmark


def bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gib * (1 << 30)) // SEGMENT * SEGMENT
    base = work / f"base-{size >> 20}m-seed{IMAGE_SEED}.img"
    if not base.exists():
        print(f"building {base} ...", flush=True)
        build_image(base, size)
    image, target, log = work / "volume.img", work / "restored.img", work / "tools.log"
    log.write_bytes(b"")
    tools: list[Tool] = []
    for name in args.tools.split(","):
        if name == "ocibv":
            tools.append(Ocibv(work, image, log, args))
        elif name == "borg" and S3:
            continue  # borg has no S3 backend
        elif name in ("restic", "borg"):
            tools.append((Restic if name == "restic" else Borg)(work, image, log))
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        t.name: {s: [] for s in STEPS} for t in tools
    }
    for run in range(args.runs):
        order = tools[run % len(tools) :] + tools[: run % len(tools)]  # rotate to spread bias
        copy_image(base, image)
        for tool in order:
            tool.new_repo(run)
            warm(image)
            m = tool.run("FULL", target)
            m["store_mb"] = tool.size() / 1e6
            raw[tool.name]["FULL"].append(m)
            print(f"run {run + 1} {tool.name:6s} FULL        {_fmt(m)}", flush=True)
        changed = change_image(image)
        digest, allocated = sha256(image), sum(e - s for s, e in data_extents(image))
        for tool in order:
            before = tool.size()
            warm(image)
            m = tool.run("INCREMENTAL", target)
            m["store_mb"] = (tool.size() - before) / 1e6
            raw[tool.name]["INCREMENTAL"].append(m)
            print(f"run {run + 1} {tool.name:6s} INCREMENTAL {_fmt(m)}", flush=True)
        for tool in order:
            target.unlink(missing_ok=True)
            m = tool.run("RESTORE", target)
            m["durable_s"] = m["wall_s"] + fsync_seconds(target)
            m["sha256_ok"] = sha256(target) == digest
            m["holes_ok"] = holes_preserved(image, target)
            m["allocated_mb"] = sum(e - s for s, e in data_extents(target)) / 1e6
            raw[tool.name]["RESTORE"].append(m)
            print(f"run {run + 1} {tool.name:6s} RESTORE     {_fmt(m)}", flush=True)
            target.unlink()
    for tool in tools:
        tool.remove_repos()
    medians = {
        t: {
            s: {
                k: statistics.median(r[k] for r in runs)
                for k in runs[0]
                if isinstance(runs[0][k], float)
            }
            for s, runs in steps.items()
        }
        for t, steps in raw.items()
    }
    for t, steps in raw.items():
        runs = steps["RESTORE"]
        medians[t]["RESTORE"]["sha256_ok"] = all(r["sha256_ok"] for r in runs)
        medians[t]["RESTORE"]["holes_ok"] = all(r["holes_ok"] for r in runs)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cache": "warm page cache",
        },
        "config": {
            "runs": args.runs,
            "size_bytes": size,
            "allocated_bytes": allocated,
            "changed_bytes": changed,
            "workers": args.workers,
            "chunk_size": args.chunk_size or "default",
            "versions": _versions(),
        },
        "medians": medians,
        "ratios": _ratios(medians),
        "targets": _targets(medians, _ratios(medians)),
        "runs": raw,
    }


def _versions() -> dict[str, str]:
    out = {}
    for tool, cmd in (("restic", ["restic", "version"]), ("borg", ["borg", "--version"])):
        try:
            out[tool] = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            out[tool] = "missing"
    return out


def _ratios(medians: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``other/ocibv`` per step and metric (above 1: ocibv is faster/smaller)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    if "ocibv" not in medians:
        return out
    for other in medians:
        if other == "ocibv":
            continue
        out[other] = {}
        for step in STEPS:
            mine, theirs = medians["ocibv"][step], medians[other][step]
            out[other][step] = {
                k: theirs[k] / mine[k]
                for k in ("wall_s", "durable_s", "cpu_s", "rss_mb", "store_mb")
                if k in mine and mine[k] > 0
            }
    return out


def _targets(medians: dict[str, Any], ratios: dict[str, Any]) -> dict[str, bool]:
    """The goals this benchmark exists for, checked against restic's medians."""
    if "ocibv" not in medians or "restic" not in ratios:
        return {}
    r, mine, theirs = ratios["restic"], medians["ocibv"], medians["restic"]
    return {
        **(
            {
                "S3: FULL >= 3x faster than restic": r["FULL"]["wall_s"] >= 3,
                "S3: INCREMENTAL >= 3x faster than restic": r["INCREMENTAL"]["wall_s"] >= 3,
                "S3: RESTORE >= 3x faster than restic": r["RESTORE"]["wall_s"] >= 3,
            }
            if S3
            else {
                "FULL >= 5x faster than restic": r["FULL"]["wall_s"] >= 5,
                "INCREMENTAL >= 10x faster than restic": r["INCREMENTAL"]["wall_s"] >= 10,
                "INCREMENTAL stores <= 1/4 of restic's growth": r["INCREMENTAL"]["store_mb"] >= 4,
                "RESTORE >= 4x faster than restic": r["RESTORE"]["wall_s"] >= 4,
            }
        ),
        "RESTORE exact, holes kept": mine["RESTORE"]["sha256_ok"] and mine["RESTORE"]["holes_ok"],
        "peak RSS below restic's": all(mine[s]["rss_mb"] < theirs[s]["rss_mb"] for s in STEPS),
    }


def _fmt(m: dict[str, Any]) -> str:
    parts = [f"wall {m['wall_s']:6.2f}s", f"cpu {m['cpu_s']:6.2f}s", f"rss {m['rss_mb']:6.0f}MB"]
    if "store_mb" in m:
        parts.append(f"store +{m['store_mb']:7.1f}MB")
    if "sha256_ok" in m:
        parts.append(f"sha256 {'ok' if m['sha256_ok'] else 'MISMATCH'}")
        parts.append(f"holes {'ok' if m['holes_ok'] else 'filled'}")
    return "  ".join(parts)


_LABELS = {"wall_s": "wall", "durable_s": "wall to durable", "cpu_s": "cpu", "rss_mb": "rss",
           "store_mb": "store"}


def print_report(result: dict[str, Any]) -> None:
    med = result["medians"]
    cfg = result["config"]
    mb = {k: cfg[k] / 1e6 for k in ("size_bytes", "allocated_bytes", "changed_bytes")}
    print(
        f"\nmedians of {cfg['runs']} runs (warm page cache); image {mb['size_bytes']:.0f} MB, "
        f"{mb['allocated_bytes']:.0f} MB allocated, {mb['changed_bytes']:.0f} MB changed"
    )
    print(f"{'step':12s} {'tool':7s} {'wall s':>8s} {'cpu s':>8s} {'rss MB':>8s} {'store MB':>9s}")
    for step in STEPS:
        for tool, steps in med.items():
            m = steps[step]
            store = f"{m['store_mb']:9.1f}" if "store_mb" in m else f"{'':9s}"
            extra = ""
            if step == "RESTORE":
                extra = f"  sha256 {'ok' if m['sha256_ok'] else 'BAD'}"
                extra += f", holes {'kept' if m['holes_ok'] else 'filled'}"
                extra += f", allocated {m['allocated_mb']:.0f} MB"
                extra += f"; durable after {m['durable_s']:.2f} s"
            print(
                f"{step:12s} {tool:7s} {m['wall_s']:8.2f} {m['cpu_s']:8.2f} "
                f"{m['rss_mb']:8.0f} {store}{extra}"
            )
    for other, steps in result["ratios"].items():
        print(f"\n{other}/ocibv (above 1 means ocibv is better)")
        for step, r in steps.items():
            print(
                f"  {step:12s} " + "  ".join(f"{_LABELS[k]} {v:5.2f}x" for k, v in r.items())
            )
    if result.get("targets"):
        print("\ntargets")
        for goal, met in result["targets"].items():
            print(f"  {'met    ' if met else 'MISSED '} {goal}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size-gib", type=float, default=4)
    p.add_argument(
        "--workdir", default=os.path.join(os.environ.get("TMPDIR", "/var/tmp"), "ocibv-bench")
    )
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=0, help="bytes (default: the engine's)")
    p.add_argument("--pack-size", type=int, default=0, help="bytes (default: the store's)")
    p.add_argument(
        "--s3", action="store_true",
        help="store both repositories on a local S3 server (moto, started here); no borg",
    )
    p.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--image", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.step:
        ocibv_step(args)
        return 0
    server = None
    if args.s3:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.s3_server import DUMMY_CREDENTIALS, S3Server

        os.environ.update(DUMMY_CREDENTIALS)
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        server = S3Server.start(work / "moto.log")
        S3["endpoint"] = server.endpoint
    try:
        result = bench(args)
    finally:
        if server is not None:
            server.stop()
    result["config"]["store"] = "s3 (moto on loopback)" if args.s3 else "local directory"
    print_report(result)
    RESULTS.mkdir(exist_ok=True)
    kind = "-s3" if args.s3 else ""
    out = RESULTS / f"backup{kind}-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
