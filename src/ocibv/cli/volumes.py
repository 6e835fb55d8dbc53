"""``ocibv volume import|export`` and ``ocibv jobs``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from ocibv.cli import signed_client
from ocibv.cli.common import data_dir_option, fail, open_services
from ocibv.config import Settings
from ocibv.domain.errors import OciError
from ocibv.engine.errors import VolumeImageError


@click.group()
def volume() -> None:
    """Copy raw bytes into and out of volumes (sparse-aware), while the server runs."""


@volume.command("import")
@data_dir_option
@click.argument("volume_id")
@click.argument("image_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def volume_import(data_dir: Path, volume_id: str, image_file: Path) -> None:
    """Replace the contents of VOLUME_ID with IMAGE_FILE (the rest of the volume reads zeros)."""
    services = open_services(data_dir)
    try:
        total = services.volume_data.data_bytes(image_file)
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="import",
            leave=False,
            disable=not sys.stderr.isatty(),
        ) as bar:
            written = services.volume_data.import_volume(volume_id, image_file, bar.update)
    except (OciError, VolumeImageError) as exc:
        fail(getattr(exc, "message", str(exc)))
    click.echo(f"imported {image_file} into {volume_id} ({written} bytes of data)")


@volume.command("export")
@data_dir_option
@click.argument("volume_id")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def volume_export(data_dir: Path, volume_id: str, file: Path) -> None:
    """Write the whole of VOLUME_ID to FILE (holes stay holes)."""
    services = open_services(data_dir)
    try:
        path = services.volume_data.volume_path(volume_id)
        # No image: an unknown, deleted or unprovisioned volume; export_volume says which.
        total = services.volume_data.data_bytes(path) if path.exists() else 0
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="export",
            leave=False,
            disable=not sys.stderr.isatty(),
        ) as bar:
            written = services.volume_data.export_volume(volume_id, file, bar.update)
    except (OciError, VolumeImageError, FileNotFoundError) as exc:
        fail(getattr(exc, "message", str(exc)))
    click.echo(f"exported {volume_id} to {file} ({written} bytes of data)")


@click.command()
@data_dir_option
@click.option("--limit", default=20, show_default=True)
def jobs(data_dir: Path, limit: int) -> None:
    """Recent jobs: state, percent done and throughput."""
    services = open_services(data_dir)
    click.echo(f"{'ID':>5} {'KIND':<28} {'STATE':<8} {'DONE':>6} {'MB/s':>8}  RESOURCE")
    for job in services.jobs_overview(limit):
        click.echo(
            f"{job.id:>5} {job.kind:<28} {job.state:<8} {job.percent:>5.0f}% "
            f"{job.mb_per_second:>8.1f}  {job.resource_id}"
        )
        if job.note:
            click.echo(f"      note: {job.note}")


@volume.command("attach")
@data_dir_option
@click.argument("volume_id")
@click.option("--read-only", is_flag=True, help="Attach without write access.")
def volume_attach(data_dir: Path, volume_id: str, read_only: bool) -> None:
    """Attach VOLUME_ID as a network block device; prints its NBD URI (for qemu-img, nbdcopy,
    nbdinfo, QEMU or nbd-client). It stays attached until `ocibv volume detach`."""
    settings = Settings.load(data_dir)
    try:
        answer = signed_client.call(
            settings, "POST", f"/ocibv/volumes/{volume_id}/actions/attach",
            {"isReadOnly": read_only},
        )
    except signed_client.ServerError as exc:
        fail(exc.message)
    click.echo(answer["uri"])


@volume.command("detach")
@data_dir_option
@click.argument("volume_id")
def volume_detach(data_dir: Path, volume_id: str) -> None:
    """Detach VOLUME_ID: its NBD export ends (requests in flight are answered first)."""
    settings = Settings.load(data_dir)
    try:
        signed_client.call(settings, "POST", f"/ocibv/volumes/{volume_id}/actions/detach", {})
    except signed_client.ServerError as exc:
        fail(exc.message)
    click.echo(f"detached {volume_id}")
