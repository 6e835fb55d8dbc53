"""``ocibv db migrate-to URL``: move the catalog from this data dir's database (SQLite by
default) into another, e.g. PostgreSQL, when outgrowing one machine."""

from __future__ import annotations

from pathlib import Path

import click

from ocibv.cli.common import data_dir_option, fail
from ocibv.config import Settings
from ocibv.store.copy import copy_catalog
from ocibv.store.database import Database


@click.group()
def db() -> None:
    """The metadata database."""


@db.command("migrate-to")
@data_dir_option
@click.argument("url")
def db_migrate_to(data_dir: Path, url: str) -> None:
    """Copy the whole catalog into the empty database at URL (stop the server first), e.g.
    postgresql+psycopg://ocibv@127.0.0.1:5432/ocibv; then start serve with
    OCIBV_DATABASE_URL=URL."""
    source = Database(Settings.load(data_dir).database_url)
    source.migrate()
    try:
        counts = copy_catalog(
            source, Database(url), lambda table, n: click.echo(f"  {table}: {n} row(s)")
        )
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"copied {sum(counts.values())} row(s); now run: OCIBV_DATABASE_URL='{url}' "
               "ocibv serve")
