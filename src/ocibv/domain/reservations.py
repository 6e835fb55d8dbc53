"""Reservations: who holds a resource, and why (the typed replacement of free-text busy marks).

A reservation names the resource held, the reason, and the holder: the resource whose job needs
it (a backup fixing its point in time, a volume being cloned or restored) or a process (an
offline import or export, an NBD attachment). Conflicting work is refused with a message
built from the reservation. A job's reservation ends in the same transaction as the job's final
state change; a process's ends when the process ends, or when it is found dead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    BACKUP = "backup"  # a backup's point in time: nothing writes until it has read the volume
    CLONE_SOURCE = "clone_source"  # a volume being cloned from
    RESTORE_SOURCE = "restore_source"  # a backup being restored from
    IMPORT = "import"  # ``ocibv volume import`` replacing the volume's bytes
    EXPORT = "export"  # ``ocibv volume export`` reading them
    ATTACH = "attach"  # attached over NBD, read-write
    ATTACH_READ_ONLY = "attach_read_only"  # attached over NBD, read-only


# Which reasons may hold one resource together (symmetric; any pair not listed conflicts).
# Readers of a stable image (clone and restore sources) share with each other and with a
# backup; a backup shares with an attachment because it reads through a copy-before-write
# snapshot; an import or a read-write attachment is a writer and shares with nothing else.
_COMPATIBLE = frozenset(
    frozenset(pair)
    for pair in (
        (Reason.CLONE_SOURCE, Reason.CLONE_SOURCE),
        (Reason.CLONE_SOURCE, Reason.RESTORE_SOURCE),
        (Reason.RESTORE_SOURCE, Reason.RESTORE_SOURCE),
        (Reason.CLONE_SOURCE, Reason.BACKUP),
        (Reason.CLONE_SOURCE, Reason.EXPORT),
        (Reason.CLONE_SOURCE, Reason.ATTACH_READ_ONLY),
        (Reason.RESTORE_SOURCE, Reason.BACKUP),
        (Reason.BACKUP, Reason.ATTACH),
        (Reason.BACKUP, Reason.ATTACH_READ_ONLY),
        (Reason.EXPORT, Reason.ATTACH_READ_ONLY),
        (Reason.ATTACH_READ_ONLY, Reason.ATTACH_READ_ONLY),
    )
)


def conflicts(held: Reason, wanted: Reason) -> bool:
    """Whether a resource held for ``held`` refuses a new reservation for ``wanted``."""
    return frozenset((held, wanted)) not in _COMPATIBLE


@dataclass(frozen=True)
class Reservation:
    resource_id: str
    reason: Reason
    holder_id: str  # the holding job's resource OCID, or the holding process's id
    process_id: str | None = None  # set when a process (not a job) holds it
    pid: int | None = None
    created_us: int = 0

    def describe(self) -> str:
        """What holds the resource, for a 409 message: "being backed up by ocid1...."."""
        by_process = f"process {self.pid}" if self.pid else f"process {self.holder_id}"
        return {
            Reason.BACKUP: f"being backed up by {self.holder_id}",
            Reason.CLONE_SOURCE: f"being cloned into {self.holder_id}",
            Reason.RESTORE_SOURCE: f"being restored into {self.holder_id}",
            Reason.IMPORT: f"being imported into by {by_process}",
            Reason.EXPORT: f"being exported by {by_process}",
            Reason.ATTACH: f"attached over NBD (read-write) by {by_process}",
            Reason.ATTACH_READ_ONLY: f"attached over NBD (read-only) by {by_process}",
        }[self.reason]
