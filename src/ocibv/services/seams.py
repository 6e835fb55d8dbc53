"""The contracts between services that are bound late (each named once, the way Starlette's
``types.py`` names its callables): the container builds the providers first and hands them to
the services that need them, so no service imports another's class to call it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from ocibv.engine.live_volume import LiveVolume
from ocibv.jobs.context import JobContext
from ocibv.services.context import Caller
from ocibv.services.requests import VolumeGroupSource
from ocibv.store.resources import Resource


class BackupRestorer(Protocol):
    """What CreateVolume needs to restore a volume backup (``VolumeBackupService``)."""

    def restore_source(
        self, conn: sa.Connection, caller: Caller, backup_id: str, field: str
    ) -> Resource:
        """The AVAILABLE backup named in the request (else 400 naming ``field``, or 409)."""
        ...

    def hold_for_restore(self, conn: sa.Connection, backup: Resource, volume_id: str) -> None:
        """Reserve ``backup`` as the source of ``volume_id`` until that volume is settled."""
        ...

    def restore_image(self, job: JobContext, volume_id: str, backup_id: str) -> None:
        """Write the backup's bytes into the volume's image."""
        ...


class GroupBackupRestorer(Protocol):
    """What CreateVolumeGroup needs to restore a volume group backup."""

    def restore_group(
        self, conn: sa.Connection, caller: Caller, group: Resource, source: VolumeGroupSource
    ) -> list[Resource]:
        """New RESTORING volumes (unsaved), one per member backup, each already holding the
        backup it restores (reserved in ``conn``)."""
        ...


class DataPlane(Protocol):
    """Volumes attached as block devices in this process (``nbd.data_plane.NbdDataPlane``)."""

    def attach(self, volume_id: str, path: Path, export_name: str, read_only: bool) -> str:
        """Offer the volume's image as ``export_name``; returns its URI."""
        ...

    def detach(self, volume_id: str) -> bool:
        """Stop offering it and close it; False when it is not attached here."""
        ...

    def live(self, volume_id: str) -> LiveVolume | None:
        """Its live image, when it is attached here (backups read it through a snapshot)."""
        ...

    def requests_served(self) -> int:
        """How many block requests clients have made so far, over every attachment (a
        counter; a backup leaves a CPU to the clients while it moves)."""
        ...


class PolicyAssigner(Protocol):
    """What CreateVolume's ``backupPolicyId`` needs (``VolumeBackupPolicyAssignmentService``)."""

    def assign(
        self,
        conn: sa.Connection,
        caller: Caller,
        asset_id: str,
        policy_id: str,
        policy_field: str = "policyId",
    ) -> Resource:
        """Assign ``policy_id`` to the asset in the caller's transaction (a 400 for an
        unknown policy names ``policy_field``)."""
        ...
