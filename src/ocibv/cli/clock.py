"""``ocibv clock``: show or move the service's *now* (never the clock signatures are checked
against), to watch retention, schedules and expiry play out in seconds."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import click

from ocibv.cli.common import data_dir_option, fail, open_services

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdwy])")


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``90m``, ``36h``, ``1d``, ``2w``, ``1y`` or ``1d12h``."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"{text!r} is not a duration (e.g. 90m, 36h, 1d, 2w, 1y)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _show(moment: datetime, offset_us: int) -> None:
    stamp = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    if offset_us:
        click.echo(f"{stamp} (real time + {offset_us / 1e6:.0f} s)")
    else:
        click.echo(f"{stamp} (real time)")


@click.group()
def clock() -> None:
    """The service clock: show it, set it, advance it, or go back to real time."""


@clock.command("show")
@data_dir_option
def clock_show(data_dir: Path) -> None:
    services = open_services(data_dir)
    _show(services.clock.now(), services.clock.offset_us())


@clock.command("advance")
@data_dir_option
@click.argument("duration")
def clock_advance(data_dir: Path, duration: str) -> None:
    """Move now forward by DURATION (90m, 36h, 1d, 2w, 1y), stopping at every instant a
    backup policy's schedule fires or a scheduled backup expires; returns when every backup
    and expiry that triggered has finished (a running server's workers may take some)."""
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        fail(str(exc))
    services = open_services(data_dir)
    services.life.start()  # jobs this process runs belong to a live process
    try:
        report = services.advance_clock(seconds)
    finally:
        services.life.stop()
    _show(services.clock.now(), services.clock.offset_us())
    click.echo(
        f"{len(report.created)} scheduled backup(s) taken, {len(report.expired)} expired"
        + (f", {len(report.kept)} kept by retention" if report.kept else "")
    )
    for backup_id, why in sorted(report.kept.items()):
        click.echo(f"kept {backup_id}: {why}")


@clock.command("set")
@data_dir_option
@click.argument("time")
def clock_set(data_dir: Path, time: str) -> None:
    """Make now TIME (RFC 3339, e.g. 2027-01-01T00:00:00Z); it may not go backward. A jump:
    the scheduled instants it skips collapse into one catch-up backup per schedule, taken by
    the server's scheduler (use ``advance`` to take every one of them)."""
    try:
        moment = datetime.fromisoformat(time.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError(f"{time!r} has no time zone (end it with Z or +00:00)")
        services = open_services(data_dir)
        _show(services.clock.set(moment), services.clock.offset_us())
    except ValueError as exc:
        fail(str(exc))


@clock.command("real")
@data_dir_option
def clock_real(data_dir: Path) -> None:
    """Go back to real time."""
    services = open_services(data_dir)
    _show(services.clock.real(), 0)
