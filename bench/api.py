"""API benchmark: ocibv's GetVolume and ListVolumes(limit=100) against a floor.

    .venv/bin/python bench/api.py [--seconds 10] [--clients 4]

Starts two servers on free loopback ports, as subprocesses:

* ``ocibv serve`` on a fresh data dir, seeded through the SDK with ``--volumes`` volumes in one
  compartment;
* the floor (bench/floor_app.py): bare uvicorn + starlette answering the same JSON, unsigned,
  with no database — what the framework alone costs.

Then ``--clients`` client processes, each with one keep-alive ``requests.Session`` (the one the
SDK vendors), drive each server for ``--seconds`` per operation. Requests to ocibv are signed by
``oci.signer.Signer`` exactly as the SDK signs them. Signing costs the client ~0.4 ms of CPU per
request, which on a small machine would be taken from the server under test, so the main runs
sign a pool of requests just before the timed window (dates stay fresh: they are re-signed
every minute; the server verifies every request in full either way) and one more run signs
each request as the SDK does, reporting the signing time separately. Latency is measured from
send to the last byte of the body, signing excluded.

Also measured: the server's CPU time per request (from /proc, independent of how busy the
clients keep the machine) and micro-benchmarks of signature verification and client signing.

Prints a table and the ocibv/floor ratios; writes JSON to bench/results/api-<date>.json.
On a small machine the clients compete with the server for CPU, so the req/s ratio flatters
whichever server needs more CPU; the server-CPU-per-request ratio shows the headroom.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
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

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
OCIBV = str(Path(sys.executable).parent / "ocibv")
API = "/20160918"
RESIGN_SECONDS = 60.0  # well inside the server's 5-minute date window
SDK_HEADERS = {"accept": "application/json", "content-type": "application/json"}


# --- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(proc: subprocess.Popen[bytes], port: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on port {port} within 30 s")


def start(cmd: list[str], port: int, log: Path, what: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_listening(proc, port, what)
    return proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- seeding ------------------------------------------------------------------------------


def seed(config: dict[str, Any], endpoint: str, count: int) -> tuple[str, list[str]]:
    """A compartment with ``count`` AVAILABLE volumes; returns its id and the volume ids."""
    identity = oci.identity.IdentityClient(config, service_endpoint=endpoint)
    bs = oci.core.BlockstorageClient(config, service_endpoint=endpoint)
    tenancy = config["tenancy"]
    compartment = identity.create_compartment(
        oci.identity.models.CreateCompartmentDetails(
            compartment_id=tenancy, name="bench", description="API benchmark"
        )
    ).data.id
    ad = identity.list_availability_domains(tenancy).data[0].name
    ids = [
        bs.create_volume(
            oci.core.models.CreateVolumeDetails(
                compartment_id=compartment,
                availability_domain=ad,
                size_in_gbs=50,
                display_name=f"bench-{n:04d}",
            )
        ).data.id
        for n in range(count)
    ]
    deadline = time.monotonic() + 120
    while True:
        ready = oci.pagination.list_call_get_all_results(
            bs.list_volumes, compartment_id=compartment, lifecycle_state="AVAILABLE"
        ).data
        if len(ready) == count:
            return compartment, ids
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(ready)} of {count} volumes became AVAILABLE")
        time.sleep(0.5)


# --- load clients -------------------------------------------------------------------------


def make_signer(signing: dict[str, str] | None) -> Signer | None:
    if signing is None:
        return None
    return Signer(signing["tenancy"], signing["user"], signing["fingerprint"], signing["key_file"])


def client_main(spec: dict[str, Any], index: int, barrier: Any, out: Any) -> None:
    """One load client: warm up, wait for the others, send requests for ``seconds``."""
    session = requests.Session()
    signer = make_signer(spec["signing"])
    urls: list[str] = spec["urls"]
    urls = urls[index % len(urls) :] + urls[: index % len(urls)]

    def prepare(url: str) -> requests.PreparedRequest:
        return session.prepare_request(
            requests.Request("GET", url, headers=SDK_HEADERS, auth=signer)
        )

    per_request = spec["sign_each"]
    pool = [] if per_request else [prepare(u) for u in urls]
    signed_at = time.monotonic()
    for n in range(20):  # warm up (also opens the keep-alive connection)
        session.send(prepare(urls[n % len(urls)])).content  # noqa: B018
    latencies: list[int] = []
    signing: list[int] = []
    errors = 0
    barrier.wait()
    began = time.monotonic()
    deadline = began + spec["seconds"]
    n = 0
    while time.monotonic() < deadline:
        if per_request:
            s0 = time.perf_counter_ns()
            prepared = prepare(urls[n % len(urls)])
            signing.append((time.perf_counter_ns() - s0) // 1000)
        else:
            if time.monotonic() - signed_at > RESIGN_SECONDS:
                pool = [prepare(u) for u in urls]
                signed_at = time.monotonic()
            prepared = pool[n % len(pool)]
        t0 = time.perf_counter_ns()
        response = session.send(prepared)
        response.content  # noqa: B018  (read the whole body)
        latencies.append((time.perf_counter_ns() - t0) // 1000)
        if response.status_code != 200:
            errors += 1
        n += 1
    out.put(
        {
            "latencies_us": latencies,
            "signing_us": signing,
            "errors": errors,
            "elapsed": time.monotonic() - began,
        }
    )


def percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return float(sorted_values[index])


def run_load(name: str, spec: dict[str, Any], clients: int, server_pid: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=client_main, args=(spec, i, barrier, out), daemon=True)
        for i in range(clients)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=120)
    cpu0 = cpu_seconds(server_pid)
    results = [out.get(timeout=spec["seconds"] + 120) for _ in procs]
    cpu1 = cpu_seconds(server_pid)
    for proc in procs:
        proc.join(timeout=30)
    latencies = sorted(v for r in results for v in r["latencies_us"])
    signing = sorted(v for r in results for v in r["signing_us"])
    elapsed = max(r["elapsed"] for r in results)
    count = len(latencies)
    row = {
        "name": name,
        "operation": spec["operation"],
        "target": spec["target"],
        "requests": count,
        "errors": sum(r["errors"] for r in results),
        "seconds": round(elapsed, 3),
        "rps": round(count / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) / 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) / 1000, 3),
        "mean_ms": round(sum(latencies) / count / 1000, 3) if count else None,
        "server_cpu_us_per_request": round((cpu1 - cpu0) / count * 1e6, 1) if count else None,
        "client_sign_p50_us": round(percentile(signing, 0.5), 1) if signing else None,
    }
    print(
        f"  {name:<34} {row['rps']:>8.1f} req/s  p50 {row['p50_ms']:.2f} ms  "
        f"p99 {row['p99_ms']:.2f} ms  errors {row['errors']}",
        flush=True,
    )
    return row


# --- signature micro-benchmarks -----------------------------------------------------------


def signature_costs(signing: dict[str, str], url: str, rounds: int) -> dict[str, float]:
    """Per-call µs of: ocibv's verify_request, its Authenticator (header decoding + verify),
    the bare RSA verify inside it, and the SDK signing one GET (the client's share)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from starlette.requests import Request

    from ocibv.api.auth import Authenticator
    from ocibv.api.signature import SignedRequest, verify_request

    signer = make_signer(signing)
    assert signer is not None
    private = signer.private_key
    public = private.public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()

    def timed(fn: Any, n: int) -> float:
        for _ in range(min(50, n)):
            fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6

    def sign_one() -> requests.PreparedRequest:
        return requests.Request("GET", url, headers=SDK_HEADERS, auth=signer).prepare()

    prepared = sign_one()
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    signed = SignedRequest("GET", prepared.path_url, headers, b"")
    scope = {
        "type": "http",
        "method": "GET",
        "path": prepared.path_url.split("?")[0],
        "raw_path": prepared.path_url.split("?")[0].encode(),
        "query_string": b"",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
    }
    auth = Authenticator(lambda tenancy, user, fingerprint: public_pem)
    message = os.urandom(200)
    signature = private.sign(message, padding.PKCS1v15(), hashes.SHA256())
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    return {
        "verify_request_us": round(
            timed(lambda: verify_request(signed, lambda k: public), rounds), 1
        ),
        "authenticate_us": round(timed(lambda: auth.authenticate(Request(scope), b""), rounds), 1),
        "rsa_verify_us": round(
            timed(lambda: public.verify(signature, message, pkcs1, sha256), rounds), 1
        ),
        "client_sign_us": round(timed(sign_one, max(50, rounds // 10)), 1),
    }


# --- main ---------------------------------------------------------------------------------


def print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'operation':<12} {'target':<26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'srv CPU µs/req':>15} {'sign µs':>8} {'errors':>6}"
    )
    for r in rows:
        sign = f"{r['client_sign_p50_us']:.0f}" if r["client_sign_p50_us"] else "-"
        print(
            f"{r['operation']:<12} {r['target']:<26} {r['rps']:>8.1f} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['server_cpu_us_per_request']:>15.0f} {sign:>8} "
            f"{r['errors']:>6}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--volumes", type=int, default=110, help="volumes to seed (>= 100)")
    parser.add_argument("--rounds", type=int, default=2000, help="micro-benchmark rounds")
    parser.add_argument("--no-sign-each", action="store_true", help="skip the per-request run")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    args = parser.parse_args()

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="ocibv-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ocibv_port, floor_port = free_port(), free_port()
        data_dir = work / "data"
        print(f"ocibv serve on 127.0.0.1:{ocibv_port}, data dir {data_dir}", flush=True)
        ocibv = start(
            [OCIBV, "serve", "--data-dir", str(data_dir), "--port", str(ocibv_port),
             "--log-level", "warning"],
            ocibv_port, work / "ocibv.log", "ocibv serve",
        )  # fmt: skip
        procs.append(ocibv)
        endpoint = f"http://127.0.0.1:{ocibv_port}"
        config = oci.config.from_file(str(data_dir / "oci" / "config"))
        t0 = time.monotonic()
        compartment, ids = seed(config, endpoint, args.volumes)
        print(f"seeded {len(ids)} volumes in {time.monotonic() - t0:.1f} s", flush=True)

        signing = {k: config[k] for k in ("tenancy", "user", "fingerprint", "key_file")}
        session = requests.Session()
        sample = session.send(
            session.prepare_request(
                requests.Request(
                    "GET", f"{endpoint}{API}/volumes/{ids[0]}", headers=SDK_HEADERS,
                    auth=make_signer(signing),
                )
            )
        )  # fmt: skip
        sample.raise_for_status()
        volume_json = work / "volume.json"
        volume_json.write_bytes(sample.content)
        floor = start(
            [sys.executable, str(BENCH_DIR / "floor_app.py"), "--port", str(floor_port),
             "--volume-json", str(volume_json)],
            floor_port, work / "floor.log", "floor app",
        )  # fmt: skip
        procs.append(floor)
        floor_url = f"http://127.0.0.1:{floor_port}"

        def urls(base: str, operation: str) -> list[str]:
            if operation == "GetVolume":
                return [f"{base}{API}/volumes/{i}" for i in ids]
            return [f"{base}{API}/volumes?compartmentId={compartment}&limit=100"]

        plan: list[tuple[str, str, str, bool]] = [  # operation, target, base, sign each
            ("GetVolume", "floor", floor_url, False),
            ("GetVolume", "ocibv", endpoint, False),
            ("ListVolumes", "floor", floor_url, False),
            ("ListVolumes", "ocibv", endpoint, False),
        ]
        if not args.no_sign_each:
            plan.append(("GetVolume", "ocibv (signed per request)", endpoint, True))
        rows = []
        print(f"load: {args.clients} clients x {args.seconds:g} s per run", flush=True)
        for operation, target, base, sign_each in plan:
            spec = {
                "operation": operation,
                "target": target,
                "urls": urls(base, operation),
                "signing": None if target == "floor" else signing,
                "sign_each": sign_each,
                "seconds": args.seconds,
            }
            pid = (floor if target == "floor" else ocibv).pid
            rows.append(run_load(f"{operation} {target}", spec, args.clients, pid))

        print("signature micro-benchmarks ...", flush=True)
        costs = signature_costs(signing, f"{endpoint}{API}/volumes/{ids[0]}", args.rounds)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    def rps(operation: str, target: str) -> float:
        return next(r["rps"] for r in rows if r["operation"] == operation and r["target"] == target)

    def cpu(operation: str, target: str) -> float:
        return float(
            next(
                r["server_cpu_us_per_request"]
                for r in rows
                if r["operation"] == operation and r["target"] == target
            )
        )

    operations = ("GetVolume", "ListVolumes")
    ratios = {op: round(rps(op, "ocibv") / rps(op, "floor"), 3) for op in operations}
    # What the ratio would be if the server, not the clients, were the bottleneck.
    cpu_ratios = {op: round(cpu(op, "floor") / cpu(op, "ocibv"), 3) for op in operations}
    print_table(rows)
    print()
    for op in operations:
        verdict = "meets" if ratios[op] >= 0.5 else "BELOW"
        print(
            f"{op}: ocibv / floor req/s = {ratios[op]:.2f} ({verdict} the 0.5 goal); "
            f"server CPU per request floor / ocibv = {cpu_ratios[op]:.2f}"
        )
    print(
        f"signature: verify_request {costs['verify_request_us']:.0f} µs/call "
        f"(Authenticator.authenticate {costs['authenticate_us']:.0f} µs, of which RSA verify "
        f"{costs['rsa_verify_us']:.0f} µs); the client's SDK signing "
        f"{costs['client_sign_us']:.0f} µs/request"
    )
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": load_at_start,
        },
        "settings": {
            "seconds": args.seconds,
            "clients": args.clients,
            "volumes": args.volumes,
            "list_limit": 100,
        },
        "results": rows,
        "ratios_ocibv_over_floor_rps": ratios,
        "ratios_floor_over_ocibv_server_cpu": cpu_ratios,
        "signature_us": costs,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"api-{datetime.now().strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path.relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    main()
