"""Helpers shared by the ``ocibv`` commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ocibv.config import Settings
from ocibv.domain.errors import OciError
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


def describe(exc: BaseException) -> str:
    """One line naming an unexpected error: the driver's own error for a wrapped one (a
    SQLAlchemy error carries the sqlite3 error as ``orig``), without SQL or traceback."""
    inner = getattr(exc, "orig", None)
    shown = inner if isinstance(inner, BaseException) else exc
    text = " ".join(str(shown).split()) or "no details"
    return f"{type(shown).__name__}: {text[:500]}"


class OcibvGroup(click.Group):
    """The command group: any failure of a command ends as one line on stderr and exit 1.

    An OCI error prints its message; any other exception ``describe``'s line. Set
    ``OCIBV_DEBUG=1`` to get the traceback instead.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except OciError as exc:
            fail(exc.message)
        except Exception as exc:
            if os.environ.get("OCIBV_DEBUG"):
                raise
            fail(f"error: {describe(exc)}")
