"""``ocibv`` commands. Every command takes ``--data-dir`` (or ``OCIBV_DATA_DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ocibv.bootstrap import ensure_bootstrapped, env_lines, write_profile
from ocibv.cli.clock import clock
from ocibv.cli.common import OcibvGroup, data_dir_option, fail, open_services
from ocibv.cli.db import db
from ocibv.cli.serve import serve
from ocibv.cli.store import gc, recover, scrub, store
from ocibv.cli.volumes import jobs, volume
from ocibv.config import Settings
from ocibv.domain.errors import OciError


@click.group(cls=OcibvGroup)
def main() -> None:
    """ocibv: the OCI Block Volume service, self-hosted."""


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


for command in (serve, volume, jobs, gc, scrub, recover, store, clock, db):
    main.add_command(command)
