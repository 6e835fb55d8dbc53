"""A real ``ocibv serve`` process on a free loopback port, and the official clients for it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oci

VENV_BIN = Path(sys.executable).parent
OCIBV = str(VENV_BIN / "ocibv")
OCI_CLI = str(VENV_BIN / "oci")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_url(self) -> str:
        return self.env.get("OCIBV_STORE_URL") or (self.data_dir / "store").resolve().as_uri()

    def store(self) -> Any:
        """The server's backup store root, opened with ocibv's own backend (local or S3)."""
        from ocibv.engine.backends import open_backend

        return open_backend(self.store_url)

    @property
    def config_file(self) -> Path:
        return self.data_dir / "oci" / "config"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OCIBV_DATA_DIR=str(self.data_dir),
            OCI_CLI_CONFIG_FILE=str(self.config_file),
            OCI_CLI_ENDPOINT=self.endpoint,
            OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING="True",
            SUPPRESS_LABEL_WARNING="True",
        )
        env.update(self.env)
        return env

    def start(self) -> Server:
        log = open(self.data_dir.parent / f"{self.data_dir.name}-serve.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [OCIBV, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
             "--log-level", "warning"],
            env=self._env(), stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ocibv serve exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ocibv serve did not start listening within 30 s")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    # --- official clients -------------------------------------------------------------------

    def config(self, profile: str = "DEFAULT") -> dict[str, Any]:
        return oci.config.from_file(str(self.config_file), profile)

    def blockstorage(self, profile: str = "DEFAULT", **kwargs: Any) -> oci.core.BlockstorageClient:
        return oci.core.BlockstorageClient(
            self.config(profile), service_endpoint=self.endpoint, **kwargs
        )

    def identity(self, profile: str = "DEFAULT") -> oci.identity.IdentityClient:
        return oci.identity.IdentityClient(self.config(profile), service_endpoint=self.endpoint)

    def cli(self, *args: str, check: bool = True, profile: str = "DEFAULT") -> CliResult:
        """Run the official ``oci`` CLI against this server."""
        proc = subprocess.run(
            [OCI_CLI, "--profile", profile, *args],
            env=self._env(), capture_output=True, text=True, timeout=300,
        )
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"oci {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return result

    def ocibv(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run an ``ocibv`` admin command on this server's data dir."""
        proc = subprocess.run(
            [OCIBV, *args], env=self._env(), capture_output=True, text=True, timeout=600
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"ocibv {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error(self) -> dict[str, Any]:
        """The ServiceError JSON the CLI prints on stderr."""
        text = self.stderr[self.stderr.index("{"):]
        return json.loads(text[: text.rindex("}") + 1])
