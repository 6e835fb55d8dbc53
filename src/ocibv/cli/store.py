"""``ocibv gc``, ``ocibv scrub`` and ``ocibv recover``: housekeeping of the backup store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ocibv.cli.common import data_dir_option, fail, open_services
from ocibv.config import Settings
from ocibv.engine.errors import BackendError, StoreFormatError
from ocibv.services.container import Services
from ocibv.services.housekeeping import migrate_store

store_url_option = click.option(
    "--store-url", envvar="OCIBV_STORE_URL", default=None,
    help="The backup store: file:///dir or s3://bucket/prefix[?endpoint=URL&region=R] "
    "(default: <data dir>/store).",
)


def open_store_services(data_dir: Path, store_url: str | None, **overrides: Any) -> Services:
    """:func:`open_services` with the store URL, failing with one clear line (a pre-v1 store
    names ``ocibv store migrate``; an unreachable bucket names itself)."""
    try:
        return open_services(data_dir, store_url_option=store_url, **overrides)
    except (StoreFormatError, BackendError) as exc:
        fail(str(exc))


@click.command()
@data_dir_option
@click.option(
    "--grace-seconds",
    type=float,
    default=None,
    help="Keep unreferenced chunks younger than this (default: the server's setting).",
)
@store_url_option
def gc(data_dir: Path, grace_seconds: float | None, store_url: str | None) -> None:
    """Delete chunks that no backup references (safe while backups run)."""
    services = open_store_services(data_dir, store_url)
    totals = services.store_housekeeping.collect_garbage(grace_seconds)
    click.echo(
        f"gc: {totals['deleted_packs']} pack(s) deleted, "
        f"{totals['freed_bytes']} bytes freed, {totals['condemned_packs']} pack(s) planned for "
        f"deletion in {totals['tenancies']} tenancy store(s)"
    )


@click.command()
@data_dir_option
@store_url_option
def scrub(data_dir: Path, store_url: str | None) -> None:
    """Re-verify every stored chunk; name the backups a damaged chunk affects."""
    services = open_store_services(data_dir, store_url)
    result = services.store_housekeeping.scrub()
    click.echo(f"scrub: {result.chunks_checked} chunk(s) checked, {len(result.damaged)} damaged")
    for digest in result.damaged:
        click.echo(f"  damaged chunk {digest}")
    for backup_id, kind, name in result.affected:
        click.echo(f"  affected {kind} {backup_id} ({name})")
    if result.damaged:
        click.echo("scrub: run a FULL backup of the affected volumes to repair the store", err=True)
        sys.exit(1)


@click.command()
@data_dir_option
@store_url_option
def recover(data_dir: Path, store_url: str | None) -> None:
    """Rebuild the backup catalog from the store alone (after the database is lost).

    Run it with the server stopped; then start the server again.
    """
    services = open_store_services(data_dir, store_url)
    result = services.store_housekeeping.recover()
    click.echo(
        f"recover: {result.tenancies} tenancy(ies), {result.compartments} compartment(s), "
        f"{result.backups} backup(s) restored to the catalog"
    )
    for line in result.skipped:
        click.echo(f"  skipped {line}")


@click.group()
def store() -> None:
    """The backup store itself (format, migration)."""


@store.command()
@data_dir_option
@store_url_option
def migrate(data_dir: Path, store_url: str | None) -> None:
    """Convert a pre-v1 backup store to format v1 in place (server stopped; resumable)."""
    url = store_url or Settings.load(data_dir).store_url
    result = migrate_store(url)
    click.echo(
        f"migrate: {result.tenancies} tenancy store(s), {result.chunks_copied} chunk(s) packed, "
        f"{result.records_rewritten} catalog record(s) rewritten"
    )
    for digest in result.damaged:
        click.echo(f"  damaged chunk {digest} left out (run scrub after starting)")
