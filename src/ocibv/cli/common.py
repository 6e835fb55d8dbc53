"""Helpers shared by the ``ocibv`` commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ocibv.config import Settings
from ocibv.services.container import Services

data_dir_option = click.option(
    "--data-dir",
    envvar="OCIBV_DATA_DIR",
    default=".ocibv",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where ocibv keeps its database, volumes, backups and keys.",
)


def open_services(data_dir: Path, **overrides: Any) -> Services:
    """The services of a data dir, schema migrated, without starting workers."""
    services = Services(Settings.load(data_dir, **overrides))
    services.migrate()
    return services


def fail(message: str) -> NoReturn:
    click.echo(f"ocibv: {message}", err=True)
    sys.exit(1)
