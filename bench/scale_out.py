"""Scale-out benchmark: API throughput and p99 with 1, 2 and 4 ``ocibv serve`` processes on one
PostgreSQL catalog, against one process on SQLite, in the same run; and paging through 10,000
volumes on both databases.

    .venv/bin/python bench/scale_out.py [--seconds 8] [--connections 4]

The load generator is ``wrk`` (C, Debian package ``wrk``), one instance per ocibv process,
replaying requests signed by the SDK's own signer just before each run (a signature stays
valid for 5 minutes; the server verifies every request in full). Operations: GetVolume (over
100 volumes), ListVolumes(limit=100) and CreateVolume. PostgreSQL is a throwaway cluster
(tests/postgres.py). Prints tables; writes JSON to bench/results/scale-out-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import oci
from oci._vendor import requests
from oci.signer import Signer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.postgres import PostgresServer, free_port  # noqa: E402

OCIBV = str(Path(sys.executable).parent / "ocibv")
API = "/20160918"
RESULTS = ROOT / "bench" / "results"


def start_servers(data: Path, count: int, env: dict[str, str]) -> list[tuple[int, Any]]:
    procs = []
    for n in range(count):
        port = free_port()
        log = open(data.parent / f"serve-{n}.log", "ab")  # noqa: SIM115
        command = [OCIBV, "serve", "--data-dir", str(data), "--port", str(port),
                   "--log-level", "warning", "--nbd-port", "0"]
        proc = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        wait_port(port)
        procs.append((port, proc))
    return procs


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no server on {port}")


def seed(config: dict[str, Any], endpoint: str, count: int, name: str) -> tuple[str, list[str]]:
    identity = oci.identity.IdentityClient(config, service_endpoint=endpoint)
    bs = oci.core.BlockstorageClient(config, service_endpoint=endpoint)
    tenancy = config["tenancy"]
    compartment = identity.create_compartment(oci.identity.models.CreateCompartmentDetails(
        compartment_id=tenancy, name=name, description="bench")).data.id
    ad = identity.list_availability_domains(tenancy).data[0].name
    ids = [bs.create_volume(oci.core.models.CreateVolumeDetails(
        compartment_id=compartment, availability_domain=ad, size_in_gbs=50,
        display_name=f"v{n:05d}")).data.id for n in range(count)]
    return compartment, ids


def signed(config: dict[str, Any], port: int, method: str, path: str,
           body: str | None = None) -> dict[str, Any]:
    signer = Signer(config["tenancy"], config["user"], config["fingerprint"], config["key_file"])
    req = requests.Request(method, f"http://127.0.0.1:{port}{path}", data=body,
                           headers={"accept": "application/json",
                                    "content-type": "application/json"}).prepare()
    signer(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    return {"method": method, "path": path, "headers": headers, "body": body or ""}


def lua_script(path: Path, reqs: list[dict[str, Any]]) -> None:
    def q(text: str) -> str:
        return json.dumps(text)

    items = []
    for r in reqs:
        headers = ", ".join(f"[{q(k)}] = {q(v)}" for k, v in r["headers"].items()
                            if k not in ("host", "content-length"))
        items.append(f"{{{q(r['method'])}, {q(r['path'])}, {{{headers}}}, {q(r['body'])}}}")
    path.write_text("local reqs = {\n" + ",\n".join(items) + "\n}\nlocal i = 0\n"
                    "request = function()\n  i = i % #reqs + 1\n  local r = reqs[i]\n"
                    "  local body = r[4] ~= '' and r[4] or nil\n"
                    "  return wrk.format(r[1], r[2], r[3], body)\nend\n")


def run_wrk(targets: list[tuple[int, Path]], seconds: int, connections: int) -> dict[str, float]:
    procs = [subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
        for port, script in targets]
    rates, p99s, p50s, errors = [], [], [], 0
    for proc in procs:
        out = proc.communicate()[0]
        rates.append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))  # type: ignore[union-attr]
        p99s.append(_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)))  # type: ignore[union-attr]
        p50s.append(_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)))  # type: ignore[union-attr]
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(bad.group(1)) if bad else 0
    return {"req_per_s": sum(rates), "p50_ms": max(p50s), "p99_ms": max(p99s), "errors": errors}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def bench_config(label: str, processes: int, env: dict[str, str], args: argparse.Namespace,
                 work: Path) -> dict[str, Any]:
    data = work / label / "data"
    data.parent.mkdir(parents=True)
    servers = start_servers(data, processes, env)
    try:
        config = oci.config.from_file(str(data / "oci" / "config"))
        endpoint = f"http://127.0.0.1:{servers[0][0]}"
        compartment, ids = seed(config, endpoint, 100, "bench")
        ad = oci.identity.IdentityClient(config, service_endpoint=endpoint
                                         ).list_availability_domains(config["tenancy"]).data[0].name
        time.sleep(2)  # let the creates settle
        results = {}
        ops = {
            "GetVolume": lambda port: [signed(config, port, "GET", f"{API}/volumes/{v}")
                                       for v in ids],
            "ListVolumes(100)": lambda port: [signed(
                config, port, "GET", f"{API}/volumes?compartmentId={compartment}&limit=100")],
            "CreateVolume": lambda port: [signed(config, port, "POST", f"{API}/volumes", json.dumps(
                {"compartmentId": compartment, "availabilityDomain": ad, "sizeInGBs": 50,
                 "displayName": f"c{n}"})) for n in range(50)],
        }
        for op, make in ops.items():
            targets = []
            for port, _ in servers:
                script = data.parent / f"{op}-{port}.lua".replace("(", "").replace(")", "")
                lua_script(script, make(port))
                targets.append((port, script))
            per = max(1, args.connections // processes)
            results[op] = run_wrk(targets, args.seconds, per)
            print(f"{label:>16} {op:>17} {results[op]['req_per_s']:9.0f} req/s  "
                  f"p50 {results[op]['p50_ms']:6.2f} ms  p99 {results[op]['p99_ms']:7.2f} ms  "
                  f"errors {results[op]['errors']}", flush=True)
        return results
    finally:
        for _, proc in servers:
            proc.terminate()
        for _, proc in servers:
            proc.wait(30)


def bench_paging(label: str, env: dict[str, str], work: Path, count: int) -> dict[str, float]:
    """p99 of one ListVolumes(limit=100) page while walking 100 volumes and ``count``."""
    data = work / f"paging-{label}" / "data"
    data.parent.mkdir(parents=True)
    seed_direct(data, env, count)
    servers = start_servers(data, 1, env)
    port = servers[0][0]
    try:
        config = oci.config.from_file(str(data / "oci" / "config"))
        bs = oci.core.BlockstorageClient(config, service_endpoint=f"http://127.0.0.1:{port}")
        out = {}
        for name in ("small", "large"):
            comp = Path(data.parent / f"{name}.id").read_text()
            times = []
            # as many page requests either way, so that the two p99s compare like with like
            for _ in range(100 if name == "small" else 1):
                page = None
                while True:
                    t = time.perf_counter()
                    resp = bs.list_volumes(compartment_id=comp, limit=100, page=page)
                    times.append((time.perf_counter() - t) * 1000)
                    page = resp.next_page
                    if not page:
                        break
            times.sort()
            out[f"{name}_pages"] = len(times)
            out[f"{name}_p99_ms"] = times[int(len(times) * 0.99) - 1 if len(times) > 1 else 0]
            out[f"{name}_median_ms"] = statistics.median(times)
        print(f"{label:>16} paging: 100 volumes p99 {out['small_p99_ms']:.2f} ms, {count} volumes "
              f"p99 {out['large_p99_ms']:.2f} ms ({out['large_pages']} pages)", flush=True)
        return out
    finally:
        servers[0][1].terminate()
        servers[0][1].wait(30)


def seed_direct(data: Path, env: dict[str, str], count: int) -> None:
    """Volumes straight into the catalog (the API path is measured elsewhere)."""
    os.environ.update(env)
    from ocibv.bootstrap import ensure_bootstrapped
    from ocibv.config import Settings
    from ocibv.domain.lifecycle import AVAILABLE
    from ocibv.services.container import Services
    from ocibv.services.context import Caller
    from ocibv.services.volumes import new_volume
    from ocibv.store import resources as repo

    services = Services(Settings.load(data))
    services.migrate()
    ensure_bootstrapped(services)
    config = oci.config.from_file(str(data / "oci" / "config"))
    tenancy = config["tenancy"]
    caller = Caller(tenancy, config["user"])
    for name, n in (("small", 100), ("large", count)):
        comp = services.identity.create_compartment(
            caller, {"compartment_id": tenancy, "name": name, "description": name})
        (data.parent / f"{name}.id").write_text(comp.id)
        with services.db.write() as conn:
            for i in range(n):
                vol = new_volume(services.ctx, caller, compartment_id=comp.id,
                                 availability_domain="Uocm:PHX-AD-1", size_in_gbs=50,
                                 display_name=f"v{i:05d}", state=AVAILABLE, source_details=None)
                repo.insert(conn, vol)
    services.db.dispose()
    for key in env:
        os.environ.pop(key, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--volumes", type=int, default=10_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk): make bench installs it")
    work = Path(tempfile.mkdtemp(prefix="ocibv-scale-"))
    pg = PostgresServer().start()
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "args": vars(args),
                              "cpus": os.cpu_count()}
    try:
        report["sqlite x1"] = bench_config("sqlite x1", 1, {}, args, work)
        for n in (1, 2, 4):
            env = {"OCIBV_DATABASE_URL": pg.new_database()}
            report[f"postgres x{n}"] = bench_config(f"postgres x{n}", n, env, args, work)
        report["paging sqlite"] = bench_paging("sqlite", {}, work, args.volumes)
        report["paging postgres"] = bench_paging(
            "postgres", {"OCIBV_DATABASE_URL": pg.new_database()}, work, args.volumes)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    get = {k: v["GetVolume"]["req_per_s"] for k, v in report.items()
           if isinstance(v, dict) and "GetVolume" in v}
    print(f"GetVolume: postgres x2 / x1 = {get['postgres x2'] / get['postgres x1']:.2f} "
          f"(goal >= 1.3); postgres x1 / sqlite x1 = {get['postgres x1'] / get['sqlite x1']:.2f} "
          "(goal >= 0.7)")
    for db in ("sqlite", "postgres"):
        p = report[f"paging {db}"]
        print(f"paging {db}: {args.volumes} volumes p99 / 100 volumes p99 = "
              f"{p['large_p99_ms'] / p['small_p99_ms']:.2f} (goal <= 2)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale-out-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
