"""Offline access to volume data for ``ocibv volume import|export``: the volume is marked busy
in the database (so the running server sees it) for the whole copy."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ocibv.domain import limits
from ocibv.domain.errors import (
    Conflict,
    IncorrectState,
    InvalidParameter,
    NotAuthorizedOrNotFound,
)
from ocibv.domain.lifecycle import AVAILABLE, TERMINATED
from ocibv.domain.ocid import is_ocid
from ocibv.engine import volume_files
from ocibv.services.context import ServiceContext
from ocibv.store import resources as repo


def _busy_is_stale(busy: str) -> bool:
    """A busy mark names its process (``"import pid 123"``); a dead process holds nothing."""
    _, _, pid = busy.rpartition(" pid ")
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class VolumeDataAccess:
    """Offline data access for the ``ocibv volume import|export`` commands: the volume is
    marked busy (in the database, so the running server sees it) for the whole copy."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    @staticmethod
    def data_bytes(path: Path) -> int:
        return volume_files.allocated_bytes(path)

    def volume_path(self, volume_id: str) -> Path:
        if not is_ocid(volume_id, "volume"):
            raise NotAuthorizedOrNotFound(f"{volume_id!r} is not a volume OCID.")
        return self.ctx.settings.volume_path(volume_id)

    def acquire(self, volume_id: str, purpose: str) -> repo.Resource:
        self.volume_path(volume_id)
        with self.ctx.db.write() as conn:
            res = repo.get(conn, volume_id, "volume")
            if res is None or res.lifecycle_state == TERMINATED:
                raise NotAuthorizedOrNotFound(f"Volume {volume_id} not found.")
            if res.busy and not _busy_is_stale(res.busy):
                raise Conflict(f"Volume {volume_id} is busy ({res.busy}); try again later.")
            if res.lifecycle_state != AVAILABLE:
                raise IncorrectState(
                    f"Volume {volume_id} is {res.lifecycle_state}; it must be AVAILABLE."
                )
            copies = repo.being_copied_from(conn, volume_id)
            if purpose == "import" and copies:
                raise Conflict(
                    f"Volume {volume_id} is being cloned into {copies[0].id}; try again later."
                )
            repo.update(conn, res, busy=f"{purpose} pid {os.getpid()}")
            return res

    def release(self, volume_id: str) -> None:
        with self.ctx.db.write() as conn:
            res = repo.get(conn, volume_id, "volume")
            if res is not None:
                repo.update(conn, res, busy=None)

    def import_volume(
        self, volume_id: str, image: Path, progress: Callable[[int], None] | None = None
    ) -> int:
        """Replace the volume's bytes with ``image`` (zeros after it); returns bytes written."""
        path = self.volume_path(volume_id)
        res = self.acquire(volume_id, "import")
        try:
            size = int(res.attrs["size_in_gbs"]) * limits.GIB
            if image.stat().st_size > size:
                raise InvalidParameter(
                    f"{image} is {image.stat().st_size} bytes, larger than volume {volume_id} "
                    f"({res.attrs['size_in_gbs']} GB)."
                )
            # All or nothing: a killed import leaves the volume's old bytes, never half.
            staging = path.with_name(path.name + ".import")
            try:
                written = volume_files.copy_sparse(image, staging, size=size, progress=progress)
                volume_files.replace_image(staging, path)
            finally:
                volume_files.remove_image(staging)
            return written
        finally:
            self.release(volume_id)

    def export_volume(
        self, volume_id: str, dest: Path, progress: Callable[[int], None] | None = None
    ) -> int:
        """Write the whole volume to ``dest`` keeping holes; returns bytes of data written."""
        path = self.volume_path(volume_id)
        self.acquire(volume_id, "export")
        try:
            return volume_files.copy_sparse(path, dest, progress=progress)
        finally:
            self.release(volume_id)

    def clear_stale_marks(self) -> None:
        with self.ctx.db.write() as conn:
            for res in repo.busy_resources(conn):
                if res.busy and _busy_is_stale(res.busy):
                    repo.update(conn, res, busy=None)
                    path = self.ctx.settings.volume_path(res.id)
                    volume_files.remove_image(path.with_name(path.name + ".import"))
