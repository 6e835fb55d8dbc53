"""Attaching volumes as network block devices (NBD): ``attach_volume`` / ``detach_volume``.

An attachment is a reservation (``Reason.ATTACH`` or ``ATTACH_READ_ONLY``) held by the process
that serves the NBD export, under the export's unguessable name: while it lasts the volume
cannot be deleted, imported into, cloned or resized (409), and it ends with a detach or with
the process. Backups of attached volumes read through a copy-before-write snapshot.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ocibv.domain.errors import Conflict, IncorrectState
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE
from ocibv.domain.reservations import Reason
from ocibv.engine.changed_blocks import ChangedBlocks
from ocibv.engine.live_volume import LiveVolume
from ocibv.services.common import get_visible
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.reservations import release, reserve
from ocibv.services.seams import DataPlane
from ocibv.store import reservations as reservation_rows

ATTACHED = (Reason.ATTACH, Reason.ATTACH_READ_ONLY)


@dataclass(frozen=True)
class Attachment:
    volume_id: str
    export_name: str
    uri: str
    read_only: bool


class AttachmentService:
    def __init__(self, ctx: ServiceContext, process_id: str) -> None:
        self.ctx = ctx
        self.process_id = process_id
        self.plane: DataPlane | None = None

    def use_data_plane(self, plane: DataPlane) -> None:
        """This process serves NBD: attachments are made here (``ocibv serve``)."""
        self.plane = plane

    def attach_volume(self, caller: Caller, volume_id: str, read_only: bool) -> Attachment:
        plane = self._plane()
        export_name = secrets.token_urlsafe(24)
        reason = Reason.ATTACH_READ_ONLY if read_only else Reason.ATTACH
        with self.ctx.db.write() as conn:
            res = get_visible(conn, caller, Kind.VOLUME, volume_id)
            if res.lifecycle_state != AVAILABLE:
                raise IncorrectState(
                    f"Volume {volume_id} is {res.lifecycle_state}; attach it when AVAILABLE."
                )
            reserve(
                conn, res, reason, export_name, Conflict, "detach it or wait",
                process_id=self.process_id,
            )
        try:
            uri = plane.attach(
                volume_id, self.ctx.settings.volume_path(volume_id), export_name, read_only
            )
        except BaseException:
            with self.ctx.db.write() as conn:
                release(conn, export_name)
            raise
        return Attachment(volume_id, export_name, uri, read_only)

    def detach_volume(self, caller: Caller, volume_id: str) -> None:
        plane = self._plane()
        with self.ctx.db.read() as conn:
            res = get_visible(conn, caller, Kind.VOLUME, volume_id)
            held = [r for r in reservation_rows.on(conn, [res.id]) if r.reason in ATTACHED]
        if not held:
            raise Conflict(f"Volume {volume_id} is not attached.")
        attachment = held[0]
        if attachment.process_id != self.process_id:
            raise Conflict(
                f"Volume {volume_id} is attached through another ocibv process (pid "
                f"{attachment.pid}); detach it there."
            )
        plane.detach(volume_id)
        with self.ctx.db.write() as conn:
            release(conn, attachment.holder_id)

    def live_volume(self, volume_id: str) -> LiveVolume | None:
        """The volume's live image if it is attached in this process."""
        return self.plane.live(volume_id) if self.plane is not None else None

    def requests_served(self) -> int:
        """How many block requests clients have made of the volumes attached here."""
        return self.plane.requests_served() if self.plane is not None else 0

    def forget_changes(self, volume_id: str) -> None:
        """The image changed by other means (import, restore): its changed-block record no
        longer tells what changed since the last backup."""
        ChangedBlocks.invalidate(self.ctx.settings.volume_path(volume_id))

    def _plane(self) -> DataPlane:
        if self.plane is None:
            raise Conflict(
                "This ocibv process serves no NBD data plane (--role worker); attach through "
                "a process that does."
            )
        return self.plane
