"""A real S3 server (moto) on a loopback port, for the S3 backend's tests and the e2e store
parameter. Started once per test session by the ``s3_server`` fixture (tests/conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, log: Path) -> S3Server:
        port = _free_port()
        handle = open(log, "ab")  # noqa: SIM115 - the server keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **DUMMY_CREDENTIALS},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode} (see {log})")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return cls(f"http://127.0.0.1:{port}", proc)
            except OSError:
                time.sleep(0.05)
        proc.kill()
        raise RuntimeError("moto server did not start within 30 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def env(self) -> dict[str, str]:
        """Environment for a process using this server (credentials are dummies)."""
        return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def new_url(self, label: str = "t") -> str:
        """A URL of a fresh bucket (created on first use by the backend)."""
        return f"s3://{label}-{uuid.uuid4().hex[:12]}/store?endpoint={self.endpoint}"
