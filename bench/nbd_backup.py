"""Backups of volumes attached over NBD: a real ``ocibv serve``, driven through the official SDK.

    .venv/bin/python bench/nbd_backup.py [--sizes 4,16,64,8] [--writer-seconds 10] [--workdir DIR]

One ``ocibv serve`` (fresh data dir in a temp dir, free API port, ``--nbd-port 0``) serves
50 GB volumes (bigger when the data needs it); each is attached with ``ocibv volume attach``
and the segments of bench/backup.py's image (``build_image``'s generator, step for step:
62.5% of the data range in 16 MiB segments of zero bytes, random and log text; the rest
holes) are written into it through NBD, 16 MiB per write, with a small Python NBD client
(no image file: the dev VM's disk is shared and nearly full). Every backup is requested
through the SDK (``CreateVolumeBackup`` / ``CreateVolumeGroupBackup``) and timed from the
request until it is AVAILABLE (polled every 20 ms); bytes read are the job row's
``progress_done`` (``jobs`` in ``<data dir>/ocibv.db``), store growth is ``du`` of
``<data dir>/store``.

1. Incremental after NBD writes, vs restic (``--sizes``' first size, 4 GiB): FULL; then 1% of
   the data range rewritten in 655 scattered, aligned 64 KiB writes through NBD (the offsets
   and bytes of bench/backup.py's ``change_image``); INCREMENTAL. restic (Debian, local
   repository, defaults) backs up the same bytes before and after the writes: the volume's
   data range read from its image file, ``head -c SIZE IMAGE | restic backup --stdin``
   (``head``'s CPU counts as restic's; for a changed file restic reads it all anyway): its
   INCREMENTAL wall time and repository growth. Then one more INCREMENTAL with nothing
   changed (ocibv's fixed cost: API, job queue, snapshot, manifest). The 1% INCREMENTAL is
   restored (CreateVolume from the backup) and the restored volume's data range must hash
   (sha256) to the source volume's and to the image-plus-writes computed in memory, and
   hold no data past the range. restic backs up each of the ``--repeats`` further changes
   of measurement 2 at this size as well, and the speed goal is judged on the medians over
   the same changes (ocibv's INCREMENTALs of the first size against restic's); the ratio of
   the first change alone is recorded beside it.
2. Flat in volume size: the same change (655 writes of 64 KiB) on volumes with 4, 16, 64, 8
   GiB of data (``--sizes``; 64 needs ~60 GiB of free disk), and on volumes of 4 and 64 GiB
   with a 4 KiB block written at the start of every 256 KiB chunk (``--sparse-sizes``: every
   chunk in the manifest, as in a fully written volume, with 1/64 of the data, so 64 GiB fits
   the shared disk; changed-block INCREMENTALs only): ``--repeats`` changed-block
   INCREMENTALs (a new change before each; the median is reported), then a content-rescan
   one for comparison (detach, ``touch`` the image behind the record's back so its mtime no
   longer matches, attach, write the same amount, INCREMENTAL: the job's note says it
   compared content). A size the disk cannot hold while leaving 4 GiB free is skipped and
   recorded (the disk is shared).
3. Writer impact: a separate process writes 4 KiB at random offsets of the data range
   through NBD, one at a time, to a volume of a two-volume group: ``--writer-seconds``
   without a backup (half just before, half just after), and while a FULL group backup runs
   (its state polled every second, as the SDK's waiter does; then again polled every 20 ms);
   p50/p99 latency of each; the goal is judged on the first. As a control, the same writer
   runs again during the FULL of the next size's volume (not in the group: no
   copy-before-write on the written volume, only the backup's CPU and I/O).

The machine's load average (1 min) is sampled at every step and stored. Prints a table and
writes ``bench/results/nbd-backup-<date>.json``.
"""

from __future__ import annotations

import argparse
import array
import functools
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import blake3
import oci

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.server import Server  # noqa: E402
from tests.nbd.helpers import RawClient  # noqa: E402

from backup import (  # noqa: E402  (bench/backup.py, next to this file)
    CHANGE_SEED,
    CHANGE_WRITE,
    IMAGE_SEED,
    SEGMENT,
    _text_corpus,
    data_extents,
    du,
    measure,
)

M = oci.core.models
GIB = 1024**3
MIB = 1024**2
VOLUME_GBS = 50
POLL = 0.02
IMPACT_POLL = 1.0
"""How often the writer-impact step asks whether the group FULL is done: the SDK waiter's
first interval (``oci.wait_until`` polls after 1 s, doubling up to 30 s). Polling every
``POLL`` is 50 signed requests a second, a load of its own on the serving process; that
case is measured too (``during_full_polled_every_20ms``)."""
RESERVE = 4 * GIB  # free disk left to the other users of the machine
CHUNK = 256 * 1024  # ocibv's chunk size
SPARSE_BLOCK = 4096
RESULTS = ROOT / "bench" / "results"
LOADS: list[dict[str, Any]] = []


def settle_writeback() -> None:
    """Write out every dirty page before a timed step, so an earlier step's writeback (the
    other tool's repository, the NBD writes) does not compete with this one's fsyncs."""
    os.sync()


def load(step: str) -> None:
    """Sample the 1/5/15-minute load average at ``step``."""
    one, five, fifteen = os.getloadavg()
    LOADS.append({"step": step, "at": time.time(), "load1": one, "load5": five, "load15": fifteen})


# ---------------------------------------------------------------- the changes


def change_writes(size: int, count: int, seed: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, 64 KiB)`` of ``count`` scattered aligned writes in ``[0, size)``: for
    ``count = size // 100 // 64 KiB`` exactly what ``backup.change_image`` writes."""
    rng = random.Random(seed)
    slots = sorted(rng.sample(range(size // CHANGE_WRITE), count))
    for i, slot in enumerate(slots):
        data = blake3.blake3(b"change-%d-%d" % (seed, i)).digest(length=CHANGE_WRITE)
        yield slot * CHANGE_WRITE, data


def nbd_client(uri: str) -> RawClient:
    parts = urlsplit(uri)
    client = RawClient(int(parts.port or 10809), timeout=60)
    # as libnbd and qemu do: without it a write's header and payload (two sends) meet Nagle
    # and the server's delayed ACK, and every write takes ~40 ms
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.start()
    client.go(parts.path.lstrip("/"))
    return client


def write_through_nbd(uri: str, writes: Iterator[tuple[int, bytes]]) -> dict[str, float]:
    """Send each write over one NBD connection, in order; bytes and seconds."""
    client = nbd_client(uri)
    started, total = time.perf_counter(), 0
    try:
        for offset, data in writes:
            error = client.write(offset, data)
            if error:
                raise RuntimeError(f"NBD write at {offset} failed: error {error}")
            total += len(data)
    finally:
        client.close()
    return {"bytes": total, "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------- the service


class Bench:
    """The server, its SDK client and the few calls every measurement makes."""

    def __init__(self, data_dir: Path) -> None:
        self.server = Server(data_dir).start()
        self.bs = self.server.blockstorage()
        self.tenancy = self.server.config()["tenancy"]
        identity = self.server.identity()
        self.ad = identity.list_availability_domains(self.tenancy).data[0].name

    def stop(self) -> None:
        self.server.stop()

    def wait(self, fetch: Callable[[], Any], *states: str, timeout: float = 1800,
             poll: float = POLL) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            data = fetch()
            if data.lifecycle_state in states:
                return data
            if time.monotonic() > deadline:
                raise RuntimeError(f"still {data.lifecycle_state} after {timeout} s")
            time.sleep(poll)

    def create_volume(self, name: str, data_bytes: int = 0) -> str:
        """A volume of 50 GB (the minimum), or bigger if ``data_bytes`` need it."""
        gbs = max(VOLUME_GBS, -(-data_bytes // GIB))
        made = self.bs.create_volume(M.CreateVolumeDetails(
            compartment_id=self.tenancy, availability_domain=self.ad,
            size_in_gbs=gbs, display_name=name)).data
        self.wait(lambda: self.bs.get_volume(made.id).data, "AVAILABLE")
        return str(made.id)

    def attach(self, volume_id: str) -> str:
        return self.server.ocibv("volume", "attach", volume_id).stdout.strip()

    def detach(self, volume_id: str) -> None:
        self.server.ocibv("volume", "detach", volume_id)

    def image(self, volume_id: str) -> Path:
        return self.server.data_dir / "volumes" / f"{volume_id}.img"

    def store_bytes(self) -> int:
        return du(self.server.data_dir / "store")

    def server_cpu(self) -> float:
        """User+system CPU seconds of the ``ocibv serve`` process so far."""
        assert self.server.proc is not None
        fields = Path(f"/proc/{self.server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def job(self, resource_id: str) -> tuple[int, str | None]:
        with sqlite3.connect(self.server.data_dir / "ocibv.db") as db:
            row = db.execute("SELECT progress_done, note FROM jobs WHERE resource_id = ?",
                             (resource_id,)).fetchone()
        return int(row[0]), row[1]

    def backup(self, volume_id: str, kind: str) -> dict[str, Any]:
        """One volume backup through the SDK: request to AVAILABLE, bytes read, store growth."""
        store, cpu = self.store_bytes(), self.server_cpu()
        load(f"{kind} start")
        settle_writeback()
        started = time.perf_counter()
        made = self.bs.create_volume_backup(
            M.CreateVolumeBackupDetails(volume_id=volume_id, type=kind)).data
        done = self.wait(lambda: self.bs.get_volume_backup(made.id).data, "AVAILABLE", "FAULTY")
        wall = time.perf_counter() - started
        if done.lifecycle_state != "AVAILABLE":
            raise RuntimeError(f"{kind} backup {made.id} is {done.lifecycle_state}")
        read, note = self.job(made.id)
        return {"backup_id": made.id, "type": kind, "wall_s": wall,
                "server_cpu_s": self.server_cpu() - cpu, "bytes_read": read, "note": note,
                "store_growth_bytes": self.store_bytes() - store}

    def restore(self, backup_id: str) -> tuple[str, float]:
        settle_writeback()
        started = time.perf_counter()
        made = self.bs.create_volume(M.CreateVolumeDetails(
            compartment_id=self.tenancy, availability_domain=self.ad,
            source_details=M.VolumeSourceFromVolumeBackupDetails(id=backup_id))).data
        self.wait(lambda: self.bs.get_volume(made.id).data, "AVAILABLE")
        return str(made.id), time.perf_counter() - started


def image_segments(size: int, seed: int = IMAGE_SEED) -> Iterator[tuple[int, bytes]]:
    """``(offset, 16 MiB)`` of every written segment of ``backup.build_image(size, seed)``
    (the same generator, step for step), for volumes too big to keep an image file of."""
    rng = random.Random(seed)
    corpus = _text_corpus(rng)
    n_segments = size // SEGMENT
    written = round(n_segments * 2.5 / 4)
    segments = sorted(rng.sample(range(n_segments), written))
    kinds = (["zero", "random", "text"] * written)[:written]
    rng.shuffle(kinds)
    for segment, kind in zip(segments, kinds, strict=True):
        if kind == "zero":
            data = bytes(SEGMENT)
        elif kind == "random":
            data = blake3.blake3(b"%d-%d" % (seed, segment)).digest(length=SEGMENT)
        else:
            offsets = (rng.randrange(len(corpus) - 4096) for _ in range(SEGMENT // 4096))
            data = b"".join(corpus[o : o + 4096] for o in offsets)
        yield segment * SEGMENT, data


def fill_volume(bench: Bench, volume_id: str, size: int) -> str:
    """Attach ``volume_id`` and stream a ``size`` bench image into it; the URI."""
    uri = bench.attach(volume_id)
    started = time.perf_counter()
    write_through_nbd(uri, image_segments(size))
    print(f"  streamed the image into the volume in {time.perf_counter() - started:.0f} s",
          flush=True)
    return uri


def expected_sha256(size: int, writes: list[tuple[int, bytes]]) -> str:
    """sha256 of the bench image of ``size`` with ``writes`` applied, computed in memory."""
    h = hashlib.sha256()
    segments = image_segments(size)
    upcoming = next(segments, None)
    i = 0
    for pos in range(0, size, SEGMENT):
        buf = bytearray(SEGMENT)
        if upcoming is not None and upcoming[0] == pos:
            buf[:] = upcoming[1]
            upcoming = next(segments, None)
        while i < len(writes) and writes[i][0] < pos + SEGMENT:  # 64 KiB aligned: inside
            offset, data = writes[i]
            buf[offset - pos : offset - pos + len(data)] = data
            i += 1
        h.update(buf)
    return h.hexdigest()


def data_sha256(path: Path, size: int) -> str:
    """sha256 of the first ``size`` bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left and (block := f.read(min(8 << 20, left))):
            h.update(block)
            left -= len(block)
    return h.hexdigest()


# ---------------------------------------------------------------- 1. incremental vs restic


def restic_run(work: Path, image: Path, size: int) -> dict[str, float]:
    """``restic backup --stdin`` of the first ``size`` bytes of ``image`` (the volume's data
    range, read from its image file; ``head``'s CPU counts as restic's)."""
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "restic"),
           "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    if not (work / "restic").exists():
        subprocess.run(["restic", "init", "-q"], env=env, check=True, capture_output=True)
    before = du(work / "restic")
    settle_writeback()
    pipeline = (f"head -c {size} {shlex.quote(str(image))} | restic backup -q --host bench "
                "--stdin --stdin-filename volume.img")
    m = measure(["bash", "-o", "pipefail", "-c", pipeline], env=env,
                log=work / "restic.log")
    m["store_growth_bytes"] = du(work / "restic") - before
    return m


def incremental_vs_restic(bench: Bench, size: int, work: Path) -> dict[str, Any]:
    volume = bench.create_volume(f"data-{size >> 30}g", size)
    uri = fill_volume(bench, volume, size)
    full = bench.backup(volume, "FULL")
    print(f"  ocibv FULL        {_row(full)}", flush=True)
    load("restic FULL")
    restic_full = restic_run(work, bench.image(volume), size)
    print(f"  restic FULL       wall {restic_full['wall_s']:.2f} s", flush=True)

    count = size // 100 // CHANGE_WRITE
    writes = list(change_writes(size, count, CHANGE_SEED))  # bench/backup.py's change_image
    written = write_through_nbd(uri, iter(writes))
    incremental = bench.backup(volume, "INCREMENTAL")
    print(f"  ocibv INCREMENTAL {_row(incremental)}", flush=True)
    load("restic INCREMENTAL")
    restic_inc = restic_run(work, bench.image(volume), size)
    print(f"  restic INCREMENTAL wall {restic_inc['wall_s']:.2f} s, "
          f"+{restic_inc['store_growth_bytes'] / MIB:.1f} MiB", flush=True)

    floor = bench.backup(volume, "INCREMENTAL")  # nothing changed: the fixed cost
    print(f"  ocibv INCREMENTAL, nothing changed {_row(floor)}", flush=True)

    restored, restore_s = bench.restore(incremental["backup_id"])
    digests = {"expected": expected_sha256(size, writes),
               "source_volume": data_sha256(bench.image(volume), size),
               "restored_volume": data_sha256(bench.image(restored), size)}
    beyond = [e for e in data_extents(bench.image(restored)) if e[1] > size]
    exact = len(set(digests.values())) == 1 and not beyond
    print(f"  restore {restore_s:.2f} s, sha256 {'equal' if exact else 'DIFFERENT'}", flush=True)
    bench.bs.delete_volume(restored)
    return {
        "volume_id": volume, "uri": uri, "data_bytes": size, "changed_bytes": written["bytes"],
        "change_writes": count, "nbd_write_s": written["seconds"],
        "ocibv": {"FULL": full, "INCREMENTAL": incremental, "INCREMENTAL_nothing_changed": floor,
                  "RESTORE": {"wall_s": restore_s, "sha256": digests, "exact": exact,
                              "data_past_range": bool(beyond)}},
        "restic": {"FULL": restic_full, "INCREMENTAL": restic_inc,
                   "INCREMENTAL_runs": [restic_inc]},
    }


# ---------------------------------------------------------------- 2. flat in volume size


def disk_needed(size: int, *, first: bool = False) -> int:
    """Disk a volume of ``size`` needs here: its data (62.5%), its FULL (~45% of the data in
    bench/backup.py's figures, 50% assumed), and ``RESERVE`` left for everyone else; the
    first size also holds a restored copy and restic's repository."""
    data = size * 5 // 8
    return data + data // 2 + (2 * data if first else 0) + RESERVE


def rescan_incremental(bench: Bench, volume: str, uri: str, size: int, count: int,
                       seed: int) -> tuple[str, dict[str, Any]]:
    """Write behind the record's back (touch the detached image), then the same change."""
    bench.detach(volume)
    os.utime(bench.image(volume))  # the record's saved mtime no longer matches: untrusted
    uri = bench.attach(volume)
    write_through_nbd(uri, change_writes(size, count, seed))
    return uri, bench.backup(volume, "INCREMENTAL")


def size_point(bench: Bench, size: int, count: int, work: Path, first: dict[str, Any] | None,
               writer: Callable[[Callable[[], tuple[float, float]]], dict[str, Any]] | None = None,
               repeats: int = 3,
               paired: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """``repeats`` changed-block INCREMENTALs (each after a new change of ``count`` 64 KiB
    writes; the median by wall time is reported) and one content-rescan INCREMENTAL at
    ``size``; ``writer``, if given, runs a writer to another volume during this volume's
    FULL; ``paired``, if given, runs after each INCREMENTAL made here (restic's backup of
    the same change) and its results go to ``paired_runs``."""
    control = None
    runs: list[dict[str, Any]] = []
    paired_runs: list[dict[str, Any]] = []
    if first is not None:  # the volume of measurement 1: its INCREMENTAL is the first run
        volume, uri = first["volume_id"], first["uri"]
        runs.append(first["ocibv"]["INCREMENTAL"])
    else:
        volume = bench.create_volume(f"data-{size >> 30}g", size)
        uri = fill_volume(bench, volume, size)
        full: dict[str, Any] = {}

        def run_full() -> tuple[float, float]:
            started = time.monotonic()
            full.update(bench.backup(volume, "FULL"))
            return started, time.monotonic()

        if writer is None:
            run_full()
        else:
            control = writer(run_full)
            print(f"  writer to another volume during this FULL {_lat(control)}", flush=True)
        print(f"  ocibv FULL        {_row(full)}", flush=True)
    while len(runs) < repeats:
        write_through_nbd(uri, change_writes(size, count, CHANGE_SEED + 10 + len(runs)))
        runs.append(bench.backup(volume, "INCREMENTAL"))
        if paired is not None:
            paired_runs.append(paired())
            print(f"  paired restic INCREMENTAL wall {paired_runs[-1]['wall_s']:.2f} s",
                  flush=True)
    for run in runs:
        print(f"  {size >> 30:3d} GiB changed-block INCREMENTAL {_row(run)}", flush=True)
    tracked = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    uri, rescan = rescan_incremental(bench, volume, uri, size, count, CHANGE_SEED + 1)
    print(f"  {size >> 30:3d} GiB content-rescan INCREMENTAL {_row(rescan)}", flush=True)
    out = {"data_bytes": size, "volume_id": volume, "uri": uri, "change_writes": count,
           "tracked": tracked, "tracked_runs": runs, "rescan": rescan,
           "paired_runs": paired_runs}
    if first is None:
        out["FULL"] = full
    if control is not None:
        out["writer_during_this_full"] = control
    return out


def sparse_writes(size: int) -> Iterator[tuple[int, bytes]]:
    """One 4 KiB block of random bytes at the start of every 256 KiB chunk of ``size``:
    every chunk is non-zero, so the manifest has as many entries as a fully written volume
    of that size, with 1/64 of its data (a 64 GiB volume fits the shared disk)."""
    for n in range(size // CHUNK):
        yield n * CHUNK, blake3.blake3(b"sparse-%d" % n).digest(length=SPARSE_BLOCK)


def sparse_point(bench: Bench, size: int, count: int, repeats: int) -> dict[str, Any]:
    """``repeats`` changed-block INCREMENTALs (each after a new change of ``count`` 64 KiB
    writes; the median is reported) of a sparse-filled volume of ``size``, then the volume
    is deleted."""
    volume = bench.create_volume(f"sparse-{size >> 30}g", size)
    uri = bench.attach(volume)
    started = time.perf_counter()
    write_through_nbd(uri, sparse_writes(size))
    print(f"  wrote a 4 KiB block into each of the {size // CHUNK} chunks in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    full = bench.backup(volume, "FULL")
    print(f"  ocibv FULL        {_row(full)}", flush=True)
    runs: list[dict[str, Any]] = []
    while len(runs) < repeats:
        write_through_nbd(uri, change_writes(size, count, CHANGE_SEED + 20 + len(runs)))
        runs.append(bench.backup(volume, "INCREMENTAL"))
        print(f"  {size >> 30:3d} GiB sparse, changed-block INCREMENTAL {_row(runs[-1])}",
              flush=True)
    bench.detach(volume)
    bench.bs.delete_volume(volume)
    return {"data_bytes": size, "fill": "sparse", "volume_id": volume, "FULL": full,
            "change_writes": count, "tracked": sorted(runs, key=lambda r: r["wall_s"])[
                len(runs) // 2], "tracked_runs": runs}


# ---------------------------------------------------------------- 3. writer impact


def writer_main(uri: str, seconds: float, block: int, span: int, out: Path, stop: Path) -> None:
    """Child mode: random ``block``-byte writes in ``[0, span)``, one at a time; each write's
    start (``time.monotonic``, system-wide) and latency go to ``out`` as doubles."""
    client = nbd_client(uri)
    rng = random.Random(7)
    payload = os.urandom(block)
    samples = array.array("d")
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end and not stop.exists():
        error = client.write(rng.randrange(span // block) * block, payload)
        samples.extend((now, time.monotonic() - now))
        if error:
            raise SystemExit(f"write failed: {error}")
    client.close()
    out.write_bytes(samples.tobytes())


def run_writer(uri: str, seconds: float, block: int, span: int, work: Path,
               during: Callable[[], tuple[float, float]] | None = None) -> list[float]:
    """Run the writer process; latencies (s) of the writes started in the window ``during``
    returns (all of them without it)."""
    out, stop = work / "writer.bin", work / "writer.stop"
    stop.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, __file__, "--writer", uri, str(seconds),
                             str(block), str(span), str(out), str(stop)])
    try:
        window = (0.0, float("inf"))
        if during is not None:
            time.sleep(1)
            window = during()
            stop.touch()
        if proc.wait(seconds + 600) != 0:
            raise RuntimeError("writer failed")
    finally:
        if proc.poll() is None:
            proc.kill()
    samples = array.array("d")
    samples.frombytes(out.read_bytes())
    return sorted(samples[i + 1] for i in range(0, len(samples), 2)
                  if window[0] <= samples[i] <= window[1])


def latency(lat: list[float], window_s: float) -> dict[str, Any]:
    return {"writes": len(lat), "window_s": window_s, "p50_ms": _pct(lat, 0.5) * 1e3,
            "p99_ms": _pct(lat, 0.99) * 1e3, "max_ms": lat[-1] * 1e3}


def writer_impact(bench: Bench, volume: str, uri: str, size: int, seconds: float,
                  block: int, work: Path) -> dict[str, Any]:
    """The writer alone (half the time before, half after) and during a group FULL."""
    other = bench.create_volume("group-peer")
    group = bench.bs.create_volume_group(M.CreateVolumeGroupDetails(
        compartment_id=bench.tenancy, availability_domain=bench.ad,
        source_details=M.VolumeGroupSourceFromVolumesDetails(volume_ids=[volume, other]))).data
    bench.wait(lambda: bench.bs.get_volume_group(group.id).data, "AVAILABLE")
    load("writer alone, before")
    before = run_writer(uri, seconds / 2, block, size, work)
    backup: dict[str, Any] = {}

    def group_full(poll: float) -> Callable[[], tuple[float, float]]:
        def run() -> tuple[float, float]:
            load(f"writer during group FULL, polled every {poll} s")
            started = time.monotonic()
            made = bench.bs.create_volume_group_backup(
                M.CreateVolumeGroupBackupDetails(volume_group_id=group.id, type="FULL")).data
            done = bench.wait(lambda: bench.bs.get_volume_group_backup(made.id).data,
                              "AVAILABLE", "FAULTY", poll=poll)
            ended = time.monotonic()
            backup.update(id=made.id, state=done.lifecycle_state, wall_s=ended - started)
            return started, ended

        return run

    during = latency(run_writer(uri, seconds + 3600, block, size, work,
                                during=group_full(IMPACT_POLL)), backup["wall_s"])
    during["poll_s"] = IMPACT_POLL
    busy_poll = latency(run_writer(uri, seconds + 3600, block, size, work,
                                   during=group_full(POLL)), backup["wall_s"])
    busy_poll["poll_s"] = POLL
    load("writer alone, after")
    after = run_writer(uri, seconds / 2, block, size, work)
    alone = latency(sorted(before + after), seconds)
    alone["p99_ms_before"] = _pct(before, 0.99) * 1e3
    alone["p99_ms_after"] = _pct(after, 0.99) * 1e3
    print(f"  writer alone        {_lat(alone)}  (p99 before {alone['p99_ms_before']:.2f}, "
          f"after {alone['p99_ms_after']:.2f})", flush=True)
    print(f"  writer during FULL  {_lat(during)}  (polled every {IMPACT_POLL:g} s)", flush=True)
    print(f"  writer during FULL  {_lat(busy_poll)}  (polled every {POLL:g} s; group FULL "
          f"{backup['wall_s']:.1f} s, {backup['state']})", flush=True)
    return {"block_bytes": block, "span_bytes": size, "alone": alone, "during_full": during,
            "during_full_polled_every_20ms": busy_poll, "group_backup": backup,
            "p99_ratio": during["p99_ms"] / alone["p99_ms"],
            "p50_ratio": during["p50_ms"] / alone["p50_ms"],
            "p99_ratio_polled_every_20ms": busy_poll["p99_ms"] / alone["p99_ms"]}


# ---------------------------------------------------------------- report


def _pct(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))] if values else float("nan")


def _row(m: dict[str, Any]) -> str:
    note = f"  note: {m['note']}" if m.get("note") else ""
    return (f"wall {m['wall_s']:7.2f} s  read {m['bytes_read'] / MIB:9.1f} MiB  "
            f"store +{m['store_growth_bytes'] / MIB:8.1f} MiB{note}")


def _lat(m: dict[str, Any]) -> str:
    return f"{m['writes']:6d} writes  p50 {m['p50_ms']:6.2f} ms  p99 {m['p99_ms']:6.2f} ms"


def goals(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    one = result["incremental_vs_restic"]
    mine, restic = one["ocibv"]["INCREMENTAL"], one["restic"]["INCREMENTAL"]
    points = result["flat_in_size"]
    # medians over the same changes: the first and each of the first size's repeats (a
    # single ~0.4 s sample moved 0.35-0.67 s between runs of the same code)
    mine_walls = [r["wall_s"] for r in points[0]["tracked_runs"]]
    restic_walls = [r["wall_s"] for r in one["restic"]["INCREMENTAL_runs"]]
    speed = statistics.median(restic_walls) / statistics.median(mine_walls)
    store = mine["store_growth_bytes"] / max(1, restic["store_growth_bytes"])
    times = [p["tracked"]["wall_s"] for p in points]
    reads = [p["tracked"]["bytes_read"] for p in points]
    out = {
        "INCREMENTAL >= 30x faster than restic (medians of the same changes)": {
            "value": speed, "met": speed >= 30, "ocibv_wall_s": mine_walls,
            "restic_wall_s": restic_walls,
            "first_change_only": restic["wall_s"] / mine["wall_s"]},
        "INCREMENTAL stores <= 1/4 of restic's growth": {"value": store, "met": store <= 0.25},
        "restore of the INCREMENTAL exact": {"value": one["ocibv"]["RESTORE"]["exact"],
                                             "met": one["ocibv"]["RESTORE"]["exact"]},
        # flat: the largest size's INCREMENTAL within 2x of the smallest's and bytes read
        # within 25% (the same number of writes at other offsets can share chunks differently)
        "INCREMENTAL flat in volume size (time)": {"value": max(times) / min(times),
                                                   "met": max(times) <= 2 * min(times)},
        "INCREMENTAL flat in volume size (bytes read)": {"value": max(reads) / min(reads),
                                                         "met": max(reads) <= 1.25 * min(reads)},
    }
    sparse = [p["tracked"]["wall_s"] for p in result.get("flat_in_size_sparse", [])]
    if len(sparse) > 1:
        out["INCREMENTAL flat in volume size, sparse fill (time)"] = {
            "value": max(sparse) / min(sparse), "met": max(sparse) <= 2 * min(sparse)}
    if "writer_impact" in result:
        ratio = result["writer_impact"]["p99_ratio"]
        out["writer p99 during group FULL <= 3x"] = {"value": ratio, "met": ratio <= 3}
    return out


def report(result: dict[str, Any]) -> None:
    one = result["incremental_vs_restic"]
    print(f"\n1. INCREMENTAL after {one['change_writes']} scattered 64 KiB NBD writes "
          f"({one['changed_bytes'] / MIB:.0f} MiB) on {one['data_bytes'] >> 30} GiB of data")
    print(f"{'':24s}{'wall s':>10s}{'read MiB':>10s}{'store +MiB':>12s}")
    for label, m in (("ocibv FULL", one["ocibv"]["FULL"]),
                     ("ocibv INCREMENTAL", one["ocibv"]["INCREMENTAL"]),
                     ("ocibv INCR., no change", one["ocibv"]["INCREMENTAL_nothing_changed"])):
        print(f"{label:24s}{m['wall_s']:10.2f}{m['bytes_read'] / MIB:10.1f}"
              f"{m['store_growth_bytes'] / MIB:12.1f}")
    for label, m in (("restic FULL", one["restic"]["FULL"]),
                     ("restic INCREMENTAL", one["restic"]["INCREMENTAL"])):
        print(f"{label:24s}{m['wall_s']:10.2f}{'':>10s}{m['store_growth_bytes'] / MIB:12.1f}")
    every = ", ".join(f"{r['wall_s']:.2f}" for r in one["restic"]["INCREMENTAL_runs"])
    print(f"{'restic, every change':24s}{every}")
    r = one["ocibv"]["RESTORE"]
    print(f"{'ocibv RESTORE':24s}{r['wall_s']:10.2f}   sha256 {'equal' if r['exact'] else 'BAD'}")
    print("\n2. the same change at each data size: INCREMENTAL wall s / MiB read "
          "(changed-block: median of the runs, min-max)")
    print(f"{'data':>8s}{'tracked s':>12s}{'min-max':>14s}{'read MiB':>10s}"
          f"{'rescan s':>12s}{'read MiB':>10s}")
    for p in result["flat_in_size"]:
        t, s = p["tracked"], p["rescan"]
        walls = [r["wall_s"] for r in p["tracked_runs"]]
        spread = f"{min(walls):.2f}-{max(walls):.2f}"
        print(f"{p['data_bytes'] >> 30:5d} GiB{t['wall_s']:12.2f}{spread:>14s}"
              f"{t['bytes_read'] / MIB:10.1f}{s['wall_s']:12.2f}{s['bytes_read'] / MIB:10.1f}")
    for p in result.get("flat_in_size_sparse", []):
        walls = [r["wall_s"] for r in p["tracked_runs"]]
        spread = f"{min(walls):.2f}-{max(walls):.2f}"
        print(f"{p['data_bytes'] >> 30:5d} GiB{p['tracked']['wall_s']:12.2f}{spread:>14s}"
              f"{p['tracked']['bytes_read'] / MIB:10.1f}  sparse fill: a 4 KiB block per "
              f"chunk (FULL {p['FULL']['wall_s']:.0f} s)")
    for skipped in result.get("skipped_sizes", []):
        print(f"{skipped['data_bytes'] >> 30:5d} GiB  skipped: "
              f"{skipped['free_bytes'] / GIB:.1f} GiB of disk free")
    if "writer_impact" in result:
        w = result["writer_impact"]
        print(f"\n3. {w['block_bytes'] >> 10} KiB random NBD writes, QD 1")
        print(f"  alone            {_lat(w['alone'])}")
        print(f"  during group FULL {_lat(w['during_full'])}  (polled every "
              f"{w['during_full'].get('poll_s', POLL):g} s)")
        if "during_full_polled_every_20ms" in w:
            print(f"  during group FULL {_lat(w['during_full_polled_every_20ms'])}  (polled "
                  f"every {POLL:g} s)")
        if "during_full_of_another_volume" in w:
            print(f"  during FULL of a volume outside the group (no copy-before-write) "
                  f"{_lat(w['during_full_of_another_volume'])}")
    print("\ngoals")
    for goal, g in result["goals"].items():
        value = g["value"]
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        print(f"  {'met    ' if g['met'] else 'MISSED '} {goal}  ({shown})")
    loads = [x["load1"] for x in result["load_average"]]
    print(f"\nload average (1 min) during the run: {min(loads):.1f}-{max(loads):.1f}, "
          f"median {statistics.median(loads):.1f} on {os.cpu_count()} CPUs")


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(float(s) * GIB) for s in args.sizes.split(",")]
    for size in sizes:
        assert size % SEGMENT == 0, size
    free, need = shutil.disk_usage(args.workdir).free, disk_needed(sizes[0], first=True)
    if free < need:  # the disk is shared: never fill it
        raise SystemExit(f"{free / GIB:.1f} GiB free in {args.workdir}, the first size needs "
                         f"~{need / GIB:.1f} GiB (with a {RESERVE >> 30} GiB reserve)")
    work = Path(tempfile.mkdtemp(prefix="ocibv-nbd-backup-", dir=args.workdir))
    load("start")
    bench = Bench(work / "data")
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        print(f"1. incremental vs restic, {sizes[0] >> 30} GiB", flush=True)
        one = incremental_vs_restic(bench, sizes[0], work)
        result["incremental_vs_restic"] = one
        count = one["change_writes"]
        print("2. flat in volume size", flush=True)
        # restic backs up each further change too: the speed goal is judged on medians
        restic_again = functools.partial(restic_run, work, bench.image(one["volume_id"]),
                                         sizes[0])
        points = [size_point(bench, sizes[0], count, work, one, repeats=args.repeats,
                             paired=restic_again)]
        one["restic"]["INCREMENTAL_runs"] += points[0]["paired_runs"]
        shutil.rmtree(work / "restic", ignore_errors=True)  # disk space for the larger sizes
        one["uri"] = points[0]["uri"]  # re-attached by the rescan
        if args.writer_seconds > 0:
            print("3. writer impact", flush=True)
            result["writer_impact"] = writer_impact(
                bench, one["volume_id"], one["uri"], sizes[0], args.writer_seconds,
                args.write_block, work)
        result["skipped_sizes"] = []
        for size in sizes[1:]:
            free, need = shutil.disk_usage(work).free, disk_needed(size)
            if free < need:  # the disk is shared: never fill it
                print(f"2. skipping {size >> 30} GiB: {free / GIB:.1f} GiB free, needs "
                      f"~{need / GIB:.1f} GiB (with a {RESERVE >> 30} GiB reserve)", flush=True)
                result["skipped_sizes"].append({"data_bytes": size, "free_bytes": free,
                                                "needed_bytes": need})
                continue
            print(f"2. flat in volume size: {size >> 30} GiB", flush=True)
            writer = None
            impact = result.get("writer_impact")
            if impact is not None and "during_full_of_another_volume" not in impact:
                # the control: a FULL of a volume outside the group, no copy-before-write on A

                def writer(during: Callable[[], tuple[float, float]]) -> dict[str, Any]:
                    window: list[float] = []

                    def timed() -> tuple[float, float]:
                        start, end = during()
                        window.append(end - start)
                        return start, end

                    lat = run_writer(one["uri"], args.writer_seconds + 3600, args.write_block,
                                     sizes[0], work, during=timed)
                    return latency(lat, window[0])

            points.append(size_point(bench, size, count, work, None, writer, args.repeats))
            if "writer_during_this_full" in points[-1]:
                result["writer_impact"]["during_full_of_another_volume"] = points[-1][
                    "writer_during_this_full"]
            bench.detach(points[-1]["volume_id"])
            bench.bs.delete_volume(points[-1]["volume_id"])
        result["flat_in_size"] = points
        sparse: list[dict[str, Any]] = []
        for size in [int(float(g) * GIB) for g in args.sparse_sizes.split(",") if g]:
            need = 2 * size // (CHUNK // SPARSE_BLOCK) + RESERVE
            free = shutil.disk_usage(work).free
            if free < need:
                print(f"2. skipping {size >> 30} GiB sparse: {free / GIB:.1f} GiB free",
                      flush=True)
                continue
            print(f"2. flat in volume size, sparse fill: {size >> 30} GiB", flush=True)
            sparse.append(sparse_point(bench, size, count, args.repeats))
        result["flat_in_size_sparse"] = sparse
    finally:
        bench.stop()
        load("end")
        shutil.rmtree(work, ignore_errors=True)
    result["goals"] = goals(result)
    result["load_average"] = LOADS
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                         "python": platform.python_version(), "cache": "warm page cache"}
    result["config"] = {"sizes_bytes": sizes, "volume_gbs": VOLUME_GBS,
                        "repeats": args.repeats,
                        "writer_seconds": args.writer_seconds, "write_block": args.write_block,
                        "restic": subprocess.run(["restic", "version"], capture_output=True,
                                                 text=True).stdout.strip(),
                        "command": " ".join([".venv/bin/python bench/nbd_backup.py",
                                             *sys.argv[1:]])}
    return result


def main() -> None:
    if len(sys.argv) == 8 and sys.argv[1] == "--writer":
        uri, seconds, block, span, out, stop = sys.argv[2:]
        writer_main(uri, float(seconds), int(block), int(span), Path(out), Path(stop))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="4,16,64,8", help="GiB of data per volume; the first is used "
                   "for measurements 1 and 3")
    p.add_argument("--sparse-sizes", default="4,64",
                   help="GiB volumes filled with a 4 KiB block per 256 KiB chunk (as many "
                   "manifest entries as fully written, 1/64 of the data) for measurement 2; "
                   "empty: skip")
    p.add_argument("--repeats", type=int, default=3,
                   help="changed-block INCREMENTALs per size (median reported)")
    p.add_argument("--writer-seconds", type=float, default=10, help="0: skip measurement 3")
    p.add_argument("--write-block", type=int, default=4096)
    p.add_argument("--workdir", default=os.environ.get("TMPDIR", "/var/tmp"))
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    result = run(args)
    report(result)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"nbd-backup-{datetime.now(UTC):%Y-%m-%d}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
