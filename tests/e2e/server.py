"""An ocibv server on a free loopback port, and the official clients for it.

``Server`` is a real ``ocibv serve`` process (what restarts and ``kill -9`` need);
``InProcessServer`` runs the same services and ASGI app under uvicorn in a thread of the test
process: the SDK and CLI still talk real, signed HTTP to it, without the cost of a spawn."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oci
import uvicorn
from click.testing import CliRunner
from oci_cli.cli import cli as oci_cli_command
from oci_cli.dynamic_loader import load_service_from_command

# Importing oci_cli sets OCI_PYTHON_SDK_NO_SERVICE_IMPORTS in os.environ: a process started
# after that (an xdist worker, when e2e paths are given on the command line) would get an
# ``oci`` without its lazily imported services (``oci.core``). The CLI runs in process with
# its own environment (``cli_env``), so the variable is not needed here.
os.environ.pop("OCI_PYTHON_SDK_NO_SERVICE_IMPORTS", None)

from ocibv.bootstrap import ensure_bootstrapped
from ocibv.cli.main import main as ocibv_command
from ocibv.cli.serve import api_server_config
from ocibv.config import Settings
from ocibv.services.container import Services

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
            OCIBV_NBD_PORT="0",  # any free port: several servers (and test runs) at once
        )
        env.update(self.env)
        return env

    def start(self) -> Server:
        log = open(self.data_dir.parent / f"{self.data_dir.name}-serve.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [OCIBV, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
             "--log-level", self.env.get("OCIBV_LOG_LEVEL", "warning")],
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

    def cli_env(self) -> dict[str, str]:
        """What points the ``oci`` CLI at this server."""
        return {
            "OCI_CLI_CONFIG_FILE": str(self.config_file),
            "OCI_CLI_ENDPOINT": self.endpoint,
            "OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING": "True",
            "SUPPRESS_LABEL_WARNING": "True",
        }

    def cli(
        self, *args: str, check: bool = True, profile: str = "DEFAULT", spawn: bool = False
    ) -> CliResult:
        """Run the official ``oci`` CLI against this server: its own click command, in this
        process (as oci-cli's own test suite runs it), or with ``spawn`` the installed ``oci``
        program in a process of its own. In process saves the CLI's ~1.5 s of start-up."""
        argv = ["--profile", profile, *args]
        if spawn:
            proc = subprocess.run(
                [OCI_CLI, *argv], env=self._env(), capture_output=True, text=True, timeout=300
            )
            result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        else:
            load_service_from_command(argv)  # what the `oci` program does with its sys.argv
            outcome = CliRunner().invoke(oci_cli_command, argv, env=self.cli_env())
            crash = outcome.exception
            if crash is not None and not isinstance(crash, SystemExit):
                raise AssertionError(f"oci {' '.join(args)} crashed") from crash
            stdout, stderr = outcome.stdout, outcome.stderr
            if isinstance(crash, SystemExit) and isinstance(crash.code, str):
                # sys.exit("message"): the interpreter prints it on stderr (CliRunner on stdout)
                stdout = stdout.removesuffix(f"{crash.code}\n")
                stderr += f"{crash.code}\n"
            result = CliResult(outcome.exit_code, stdout, stderr)
        if check and result.returncode != 0:
            raise AssertionError(
                f"oci {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            )
        return result

    def ocibv(
        self, *args: str, check: bool = True, spawn: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run an ``ocibv`` admin command on this server's data dir: its click command in this
        process, or with ``spawn`` the installed ``ocibv`` program in a process of its own (when
        being another process is the point). An unexpected exception in process is reported as
        the interpreter would: exit status 1 and the traceback on stderr."""
        if spawn:
            proc = subprocess.run(
                [OCIBV, *args], env=self._env(), capture_output=True, text=True, timeout=600
            )
        else:
            env = {"OCIBV_DATA_DIR": str(self.data_dir), **self.env}
            outcome = CliRunner().invoke(ocibv_command, list(args), env=env)
            stdout, stderr, code = outcome.stdout, outcome.stderr, outcome.exit_code
            crash = outcome.exception
            if crash is not None and not isinstance(crash, SystemExit):
                stderr += "".join(traceback.format_exception(crash))
                code = 1
            proc = subprocess.CompletedProcess([OCIBV, *args], code, stdout, stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"ocibv {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc


# ``OCIBV_*`` variables a test may give a server, and the setting each one sets.
SETTINGS_FROM_ENV = {
    "OCIBV_JOB_DELAY_SECONDS": "job_delay_seconds",
    "OCIBV_TOMBSTONE_SECONDS": "tombstone_seconds",
    "OCIBV_GC_INTERVAL_SECONDS": "gc_interval_seconds",
    "OCIBV_GC_GRACE_SECONDS": "gc_grace_seconds",
}


@dataclass
class InProcessServer(Server):
    """The server ``ocibv serve`` runs, inside this process: ``Services`` and the ASGI app under
    uvicorn in a background thread. Takes the same ``env`` as ``Server`` (the ``OCIBV_*``
    settings become ``Settings`` overrides; ``ocibv`` admin commands get them too). It cannot be
    killed with SIGKILL; restart tests use ``Server``."""

    services: Services | None = None
    _uvicorn: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def settings(self) -> Settings:
        overrides: dict[str, object] = {"host": "127.0.0.1", "port": self.port}
        for name, value in self.env.items():
            if name == "OCIBV_AVAILABILITY_DOMAINS":
                overrides["availability_domains"] = [a.strip() for a in value.split(",")]
            elif name in SETTINGS_FROM_ENV:
                overrides[SETTINGS_FROM_ENV[name]] = float(value)
            elif name == "OCIBV_STORE_URL":
                overrides["store_url_option"] = value
            elif name == "OCIBV_DATABASE_URL":
                overrides["database_url_option"] = value
            elif name.startswith("OCIBV_"):
                raise ValueError(f"InProcessServer does not know {name}")
        return Settings.load(self.data_dir, **overrides)

    def start(self) -> InProcessServer:
        services = Services(self.settings())
        services.migrate()
        ensure_bootstrapped(services)
        (self.data_dir / "server.json").write_text(json.dumps({"endpoint": self.endpoint}))
        services.start()
        config = api_server_config(services, "127.0.0.1", self.port, lifespan="off")
        self.services, self._uvicorn = services, uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, name="ocibv-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the in-process server did not start listening")
            time.sleep(0.01)
        return self

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            raise TypeError("an in-process server cannot be killed; use Server for kill -9")
        if self._uvicorn is not None and self._thread is not None:
            self._uvicorn.should_exit = True
            self._thread.join(15)
        if self.services is not None:
            self.services.stop()
        self.services = self._uvicorn = self._thread = None


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
