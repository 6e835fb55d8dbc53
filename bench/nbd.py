"""NBD data plane benchmark: ocibv's server against qemu-nbd (the native peer), same run.

    .venv/bin/python bench/nbd.py            # 2 GiB sequential + 10 s random 4 KiB per server

Sequential: ``nbdcopy`` writes a 2 GiB random image into each server's export (a fresh
sparse file), then reads it back to ``null:``; once with nbdcopy's defaults (it opens 4
connections when the server advertises multi-conn, which ocibv does and qemu-nbd does
not) and once with ``--connections=1`` for a like-for-like view. Random: fio's nbd engine,
4 KiB random read and random write, queue depth 16, ``--seconds`` each. Both servers run as
separate processes over the same kind of file in the same directory; warm page cache.
Every timed step starts with ``sync``: each server's writes end with nbdcopy's FLUSH, but
without it the next step ran while the kernel still wrote back the previous server's
gigabytes (measured: ocibv's default write, run after qemu-nbd's, got 0.39x; 0.55-0.8x in
runs of its own just before and after).
Prints a table and writes ``bench/results/nbd-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

GIB = 1024**3
MIB = 1024**2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def serve_ocibv(image: str, port: int) -> None:
    """Child mode: serve ``image`` as export ``vol`` until SIGTERM."""
    from ocibv.engine.live_volume import LiveVolume
    from ocibv.nbd import ExportTable, NbdServer

    async def main() -> None:
        volume = LiveVolume(Path(image))
        table = ExportTable()
        table.add("vol", volume)
        server = NbdServer(table, port=port)
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.close()
        volume.close()

    if os.environ.get("OCIBV_BENCH_LOOP", "uvloop") == "uvloop":
        import uvloop  # what `ocibv serve` runs on (uvicorn's default when installed)

        uvloop.run(main())
    else:
        asyncio.run(main())


def start_server(kind: str, image: Path, port: int) -> subprocess.Popen[bytes]:
    if kind == "ocibv":
        cmd = [sys.executable, __file__, "--serve", str(image), str(port)]
    else:
        cmd = ["qemu-nbd", "-f", "raw", "-x", "vol", "-b", "127.0.0.1", "-p", str(port),
               "-t", "-e", "8", "--cache=writeback", "--discard=unmap", str(image)]  # fmt: skip
    proc = subprocess.Popen(cmd)
    wait_port(port)
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def timed(cmd: list[str]) -> float:
    os.sync()  # start from clean page cache: no writeback of an earlier step competes
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def fresh_image(path: Path, size: int) -> None:
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def fio_iops(uri: str, rw: str, seconds: int, size: int) -> float:
    out = subprocess.run(
        ["fio", "--name=r", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}", "--bs=4k",
         "--iodepth=16", f"--size={size}", "--time_based", f"--runtime={seconds}",
         "--output-format=json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    job = json.loads(out.stdout[out.stdout.index("{") :])["jobs"][0]  # after a banner line
    return float(job["read" if "read" in rw else "write"]["iops"])


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="ocibv-nbd-bench-", dir=args.dir))
    size = args.gib * GIB
    src = work / "src.img"
    with open(src, "wb") as f:  # random: nothing compresses, no holes to skip
        for _ in range(size // (16 * MIB)):
            f.write(os.urandom(16 * MIB))
    results: dict[str, dict[str, float]] = {}
    try:
        for kind in ("qemu-nbd", "ocibv"):
            image = work / f"{kind}.img"
            row: dict[str, float] = {}
            for label, extra in (("", []), ("_1conn", ["--connections=1"])):
                fresh_image(image, size)
                port = free_port()
                proc = start_server(kind, image, port)
                uri = f"nbd://127.0.0.1:{port}/vol"
                try:
                    row[f"write{label}_s"] = timed(["nbdcopy", *extra, str(src), uri])
                    row[f"read{label}_s"] = timed(["nbdcopy", *extra, uri, "null:"])
                    if not label:
                        row["randread_iops"] = fio_iops(uri, "randread", args.seconds, size)
                        row["randwrite_iops"] = fio_iops(uri, "randwrite", args.seconds, size)
                finally:
                    stop_server(proc)
            for key in [k for k in row if k.endswith("_s")]:
                row[key.replace("_s", "_mbps")] = size / MIB / row[key]
            results[kind] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"size_bytes": size, "servers": results, "date": datetime.now(UTC).isoformat()}


def report(result: dict[str, object]) -> None:
    servers = result["servers"]
    assert isinstance(servers, dict)
    q, o = servers["qemu-nbd"], servers["ocibv"]
    print(f"{'metric':<28}{'qemu-nbd':>12}{'ocibv':>12}{'ocibv/qemu':>12}")
    for key in ("write_mbps", "read_mbps", "write_1conn_mbps", "read_1conn_mbps",
                "randread_iops", "randwrite_iops"):  # fmt: skip
        print(f"{key:<28}{q[key]:>12.0f}{o[key]:>12.0f}{o[key] / q[key]:>12.2f}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve_ocibv(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=int, default=2, help="sequential image size (GiB)")
    parser.add_argument("--seconds", type=int, default=10, help="fio run time per test")
    parser.add_argument("--dir", default=None, help="scratch directory (default: $TMPDIR)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    result = run(args)
    report(result)
    if not args.no_save:
        out = Path(__file__).parent / "results" / f"nbd-{datetime.now(UTC):%Y-%m-%d}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {out}")


if __name__ == "__main__":
    main()
