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

OCIBV = str(Path(sys.executable).parent / "ocibv")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [OCIBV, "serve", "--data-dir", str(data_dir), "--port", str(free_port()), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OCIBV_NBD_PORT": "0"},
    )  # fmt: skip


def test_serve_listens_for_nbd_and_refuses_plain_nbd_off_loopback(tmp_path: Path) -> None:
    refused = subprocess.run(
        [OCIBV, "serve", "--data-dir", str(tmp_path / "a"), "--nbd-host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "not loopback" in refused.stderr
    proc = serve(tmp_path / "b")
    try:
        server_json = tmp_path / "b" / "server.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server_json.exists() and "nbd" in json.loads(server_json.read_text() or "{}"):
                break
            time.sleep(0.1)
        prefix = json.loads(server_json.read_text())["nbd"]
        port = int(prefix.rsplit(":", 1)[1])
        assert prefix == f"nbd://127.0.0.1:{port}" and port != 0
        listed = run("nbdinfo", "--list", prefix)
        assert listed.returncode == 0, listed.stderr
        assert "export=" not in listed.stdout  # nothing attached yet
        # Another server on the same NBD port fails clearly instead of half-starting.
        clash = serve(tmp_path / "c", "--nbd-port", str(port))
        out, _ = clash.communicate(timeout=60)
        assert clash.returncode != 0 and "cannot listen for NBD" in out
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"NBD data plane on {prefix}/" in out
    assert proc.returncode == 0, out
