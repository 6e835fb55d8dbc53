"""``ocibv serve``: the API server and the NBD data plane on one event loop, and the job
workers — or one side of it (``--role``) when several processes share a database."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any, Literal

import click

from ocibv.bootstrap import ensure_bootstrapped, env_lines
from ocibv.cli.common import data_dir_option, fail
from ocibv.cli.store import open_store_services, store_url_option
from ocibv.config import DEFAULT_HOST, DEFAULT_PORT
from ocibv.nbd import ExportTable, NbdServer
from ocibv.nbd.data_plane import NbdDataPlane
from ocibv.nbd.server import DEFAULT_HOST as NBD_HOST
from ocibv.nbd.server import DEFAULT_PORT as NBD_PORT
from ocibv.nbd.server import is_loopback
from ocibv.services.container import Services


@click.command()
@data_dir_option
@click.option("--host", default=DEFAULT_HOST, show_default=True, envvar="OCIBV_HOST")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, envvar="OCIBV_PORT")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--role",
    type=click.Choice(["all", "api", "worker"]),
    default="all",
    show_default=True,
    envvar="OCIBV_ROLE",
    help="api: requests and NBD only; worker: jobs and periodic work only; all: both.",
)
@store_url_option
@click.option("--nbd-host", default=NBD_HOST, show_default=True, envvar="OCIBV_NBD_HOST")
@click.option("--nbd-port", default=NBD_PORT, show_default=True, type=int, envvar="OCIBV_NBD_PORT")
@click.option(
    "--nbd-tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate (chain) for NBD_OPT_STARTTLS; required off loopback.",
)
@click.option(
    "--nbd-tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key of --nbd-tls-cert (default: in the certificate file).",
)
def serve(
    data_dir: Path,
    host: str,
    port: int,
    log_level: str,
    role: str,
    store_url: str | None,
    nbd_host: str,
    nbd_port: int,
    nbd_tls_cert: Path | None,
    nbd_tls_key: Path | None,
) -> None:
    """Start the API server on HOST:PORT, the NBD data plane on NBD_HOST:NBD_PORT (one event
    loop) and the job workers; or one side of it (--role)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    tls = _nbd_tls_context(nbd_tls_cert, nbd_tls_key)
    if tls is None and not is_loopback(nbd_host):
        fail(f"--nbd-host {nbd_host} is not loopback: NBD has no authentication, give "
             "--nbd-tls-cert")
    services = open_store_services(data_dir, store_url, host=host, port=port)
    principal = ensure_bootstrapped(services)
    if principal is not None:
        click.echo(f"ocibv: created tenancy {principal.tenancy_id}")
        click.echo(f"ocibv: admin user {principal.user_id}, key {principal.fingerprint}")
    # uvicorn re-raises a captured SIGTERM once it has shut down; as SystemExit it unwinds
    # through the finally blocks, so attached volumes and the job workers close cleanly
    # (the changed-block records are saved clean only then).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    services.start(workers=role != "api")
    try:
        if role == "worker":
            click.echo(f"ocibv: running jobs and periodic work for {services.settings.data_dir}")
            sys.stdout.flush()
            _wait_for_stop()
        else:
            exports = ExportTable()
            nbd = NbdServer(exports, host=nbd_host, port=nbd_port, tls=tls)
            plane = NbdDataPlane(exports, nbd)
            services.attachments.use_data_plane(plane)
            _serve_api_and_nbd(services, host, port, nbd, plane)
    finally:
        services.stop()


def api_server_config(
    services: Services, host: str, port: int, *, lifespan: Literal["auto", "off"] = "auto"
) -> Any:
    """The uvicorn configuration of the API server (the tests' in-process server uses it too,
    so both run the same app with the same HTTP protocol class)."""
    import uvicorn

    from ocibv.api.app import create_app
    from ocibv.api.protocol import OciHttpToolsProtocol

    return uvicorn.Config(
        create_app(services),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=OciHttpToolsProtocol,
        lifespan=lifespan,
    )


def _serve_api_and_nbd(
    services: Services, host: str, port: int, nbd: NbdServer, plane: NbdDataPlane
) -> None:
    import uvicorn

    settings = services.settings
    server_file = settings.data_dir / "server.json"
    server_file.write_text(json.dumps({"endpoint": f"http://{host}:{port}"}))
    click.echo(f"ocibv: serving http://{host}:{port} from {settings.data_dir}")
    click.echo("ocibv: point the oci CLI at it with:")
    for line in env_lines(settings):
        click.echo(f"  {line}")
    sys.stdout.flush()
    config = api_server_config(services, host, port)

    async def run_servers() -> None:
        try:
            await nbd.start()
        except OSError as exc:
            fail(f"cannot listen for NBD on {nbd.host}:{nbd.port} ({exc}); see --nbd-port")
        plane.loop = asyncio.get_running_loop()
        # "nbd" is the URI prefix of attached volumes, "<nbd>/<export name>" (port 0 binds
        # a free port: known only now).
        server_file.write_text(
            json.dumps({"endpoint": f"http://{host}:{port}", "nbd": nbd.uri("").rstrip("/")})
        )
        click.echo(f"ocibv: NBD data plane on {nbd.uri('<export>')}")
        sys.stdout.flush()
        try:
            await uvicorn.Server(config).serve()
        finally:
            await nbd.close()  # every connection ends; then the volumes close cleanly
            plane.loop = None
            plane.detach_all()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(run_servers())


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _wait_for_stop() -> None:
    """Block until SIGTERM or SIGINT (a worker-only process has no server loop)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(3600):
        pass


def _nbd_tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None:
        if key is not None:
            fail("--nbd-tls-key needs --nbd-tls-cert")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        fail(f"cannot load the NBD TLS certificate: {exc}")
    return context
