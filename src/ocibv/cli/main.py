"""``ocibv`` commands. Every command takes ``--data-dir`` (or ``OCIBV_DATA_DIR``)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import sys
from pathlib import Path

import click

from ocibv.bootstrap import ensure_bootstrapped, env_lines, write_profile
from ocibv.cli.common import data_dir_option, fail, open_services
from ocibv.cli.store import gc, recover, scrub
from ocibv.cli.volumes import jobs, volume
from ocibv.config import DEFAULT_HOST, DEFAULT_PORT, Settings
from ocibv.domain.errors import OciError
from ocibv.nbd import ExportTable, NbdServer
from ocibv.nbd.server import DEFAULT_HOST as NBD_HOST
from ocibv.nbd.server import DEFAULT_PORT as NBD_PORT
from ocibv.nbd.server import is_loopback


@click.group()
def main() -> None:
    """ocibv: the OCI Block Volume service, self-hosted."""


@main.command()
@data_dir_option
@click.option("--host", default=DEFAULT_HOST, show_default=True, envvar="OCIBV_HOST")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, envvar="OCIBV_PORT")
@click.option("--log-level", default="info", show_default=True)
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
    nbd_host: str,
    nbd_port: int,
    nbd_tls_cert: Path | None,
    nbd_tls_key: Path | None,
) -> None:
    """Start the API server (and its job workers) on HOST:PORT, and the NBD data plane on
    NBD_HOST:NBD_PORT, on one event loop."""
    import uvicorn

    from ocibv.api.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    tls = _nbd_tls_context(nbd_tls_cert, nbd_tls_key)
    if tls is None and not is_loopback(nbd_host):
        fail(
            f"--nbd-host {nbd_host} is not loopback: NBD has no authentication, give --nbd-tls-cert"
        )
    # Volumes are attached by adding to this table (the seam for `ocibv volume attach`):
    # exports.add(name, LiveVolume(image_path)); on detach exports.remove(name), then
    # nbd.disconnect(name) and close the LiveVolume.
    exports = ExportTable()
    nbd = NbdServer(exports, host=nbd_host, port=nbd_port, tls=tls)
    services = open_services(data_dir, host=host, port=port)
    principal = ensure_bootstrapped(services)
    settings = services.settings
    server_file = settings.data_dir / "server.json"
    server_file.write_text(json.dumps({"endpoint": f"http://{host}:{port}"}))
    if principal is not None:
        click.echo(f"ocibv: created tenancy {principal.tenancy_id}")
        click.echo(f"ocibv: admin user {principal.user_id}, key {principal.fingerprint}")
    click.echo(f"ocibv: serving http://{host}:{port} from {settings.data_dir}")
    click.echo("ocibv: point the oci CLI at it with:")
    for line in env_lines(settings):
        click.echo(f"  {line}")
    sys.stdout.flush()
    config = uvicorn.Config(
        create_app(services), host=host, port=port, log_level="warning", access_log=False
    )

    async def run_servers() -> None:
        try:
            await nbd.start()
        except OSError as exc:
            fail(f"cannot listen for NBD on {nbd_host}:{nbd_port} ({exc}); see --nbd-port")
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
            await nbd.close()

    # uvicorn re-raises a captured SIGTERM once it has shut down; as SystemExit it unwinds
    # through the finally blocks, so attached volumes and the job workers close cleanly
    # (the changed-block records are saved clean only then).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    services.start()
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(run_servers())
    finally:
        services.stop()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


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


@main.command()
@data_dir_option
def env(data_dir: Path) -> None:
    """Print the export lines that point the oci CLI and SDK at this ocibv."""
    settings = Settings.load(data_dir)
    endpoint = None
    server_file = settings.data_dir / "server.json"
    if server_file.exists():
        endpoint = json.loads(server_file.read_text())["endpoint"]
    if not settings.oci_config_path.exists():
        fail(f"no OCI config at {settings.oci_config_path}; run `ocibv serve` once first")
    for line in env_lines(settings, endpoint):
        click.echo(line)


@main.group()
def tenancy() -> None:
    """Tenancies: each has its own admin user, key and config profile."""


@tenancy.command("create")
@data_dir_option
@click.option("--name", required=True, help="Tenancy name; also the config profile name.")
def tenancy_create(data_dir: Path, name: str) -> None:
    services = open_services(data_dir)
    ensure_bootstrapped(services)
    try:
        principal = services.identity.create_tenancy(name)
    except OciError as exc:
        fail(exc.message)
    write_profile(services.settings, name, principal)
    click.echo(f"tenancy {principal.tenancy_id}")
    click.echo(f"user {principal.user_id}")
    click.echo(f"profile [{name}] in {services.settings.oci_config_path}")


@main.group()
def key() -> None:
    """API signing keys."""


@key.command("add")
@data_dir_option
@click.option("--user", "user_id", required=True, help="The user OCID.")
@click.argument("public_key_pem", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def key_add(data_dir: Path, user_id: str, public_key_pem: Path) -> None:
    """Register an existing public key (PEM) for a user."""
    services = open_services(data_dir)
    try:
        fingerprint = services.identity.add_api_key(user_id, public_key_pem.read_bytes())
    except OciError as exc:
        fail(exc.message)
    click.echo(f"fingerprint {fingerprint}")


for command in (volume, jobs, gc, scrub, recover):
    main.add_command(command)
