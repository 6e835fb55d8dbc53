"""Offline access to volume data for ``ocibv volume import|export``: for the whole copy the
volume is reserved in the database (so a running server sees it) by this process, which
keeps a heartbeat; if the process dies, its reservation and staging file are released."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ocibv.domain import limits
from ocibv.domain.errors import Conflict, IncorrectState, InvalidParameter, NotAuthorizedOrNotFound
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE, TERMINATED
from ocibv.domain.ocid import is_ocid
from ocibv.domain.reservations import Reason, Reservation
from ocibv.engine import volume_files
from ocibv.jobs.runner import DeadProcessHandler, ProcessLife
from ocibv.services.context import ServiceContext
from ocibv.services.reservations import release, reserve
from ocibv.store import resources as repo

Progress = Callable[[int], None]


def staging_path(image: Path) -> Path:
    """Where an import writes before it replaces the image (all or nothing)."""
    return image.with_name(image.name + ".import")


class VolumeDataAccess:
    def __init__(self, ctx: ServiceContext, on_dead: DeadProcessHandler) -> None:
        self.ctx = ctx
        self.on_dead = on_dead

    @staticmethod
    def data_bytes(path: Path) -> int:
        return volume_files.allocated_bytes(path)

    def volume_path(self, volume_id: str) -> Path:
        if not is_ocid(volume_id, Kind.VOLUME):
            raise NotAuthorizedOrNotFound(f"{volume_id!r} is not a volume OCID.")
        return self.ctx.settings.volume_path(volume_id)

    @contextmanager
    def _held(self, volume_id: str, reason: Reason) -> Iterator[repo.Resource]:
        """Reserve the volume for this process (registered with a heartbeat) while the
        caller works; always released at the end."""
        self.volume_path(volume_id)
        life = ProcessLife(self.ctx.db, role=f"volume {reason.value}", on_dead=self.on_dead)
        life.start()
        life.reap()  # what a killed importer left behind is freed first
        try:
            with self.ctx.db.write() as conn:
                res = repo.get(conn, volume_id, Kind.VOLUME)
                if res is None or res.lifecycle_state == TERMINATED:
                    raise NotAuthorizedOrNotFound(f"Volume {volume_id} not found.")
                if res.lifecycle_state != AVAILABLE:
                    raise IncorrectState(
                        f"Volume {volume_id} is {res.lifecycle_state}; it must be AVAILABLE."
                    )
                reserve(
                    conn, res, reason, life.id, Conflict, "try again later", process_id=life.id
                )
            try:
                yield res
            finally:
                with self.ctx.db.write() as conn:
                    release(conn, life.id)
        finally:
            life.stop()

    def import_volume(self, volume_id: str, image: Path, progress: Progress | None = None) -> int:
        """Replace the volume's bytes with ``image`` (zeros after it); returns bytes written."""
        path = self.volume_path(volume_id)
        with self._held(volume_id, Reason.IMPORT) as res:
            size = res.size_in_gbs * limits.GIB
            if image.stat().st_size > size:
                raise InvalidParameter(
                    f"{image} is {image.stat().st_size} bytes, larger than volume {volume_id} "
                    f"({res.size_in_gbs} GB)."
                )
            # All or nothing: a killed import leaves the volume's old bytes, never half.
            staging = staging_path(path)
            try:
                written = volume_files.copy_sparse(image, staging, size=size, progress=progress)
                volume_files.replace_image(staging, path)
            finally:
                volume_files.remove_image(staging)
            return written

    def export_volume(self, volume_id: str, dest: Path, progress: Progress | None = None) -> int:
        """Write the whole volume to ``dest`` keeping holes; returns bytes of data written."""
        path = self.volume_path(volume_id)
        with self._held(volume_id, Reason.EXPORT):
            return volume_files.copy_sparse(path, dest, progress=progress)

    def clean_up_after(self, ended: list[Reservation]) -> None:
        """Remove what dead importers left (their staging files)."""
        for reservation in ended:
            if reservation.reason == Reason.IMPORT:
                path = self.ctx.settings.volume_path(reservation.resource_id)
                volume_files.remove_image(staging_path(path))
