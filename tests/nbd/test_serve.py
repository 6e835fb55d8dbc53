"""`ocibv serve` starts the NBD data plane beside the API, on one event loop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.nbd.helpers import run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_listens_for_nbd_and_refuses_plain_nbd_off_loopback(tmp_path: Path) -> None:
    ocibv = str(Path(sys.executable).parent / "ocibv")
    refused = subprocess.run(
        [ocibv, "serve", "--data-dir", str(tmp_path / "a"), "--nbd-host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "not loopback" in refused.stderr
    nbd_port = free_port()
    proc = subprocess.Popen(
        [ocibv, "serve", "--data-dir", str(tmp_path / "b"), "--port", str(free_port()),
         "--nbd-port", str(nbd_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OCIBV_GC_INTERVAL_SECONDS": "3600"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        listed = None
        while time.monotonic() < deadline:
            listed = run("nbdinfo", "--list", f"nbd://127.0.0.1:{nbd_port}")
            if listed.returncode == 0:
                break
            time.sleep(0.2)
        assert listed is not None and listed.returncode == 0, listed.stderr if listed else ""
        assert "export=" not in listed.stdout  # nothing attached yet
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"NBD data plane on nbd://127.0.0.1:{nbd_port}/" in out
    server_json = json.loads((tmp_path / "b" / "server.json").read_text())
    assert server_json["nbd"] == f"nbd://127.0.0.1:{nbd_port}"
    assert proc.returncode == 0, out
