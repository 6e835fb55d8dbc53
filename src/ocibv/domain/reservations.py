"""Reservations: who holds a resource, and why (the typed replacement of free-text busy marks).

A reservation names the resource held, the reason, and the holder: the resource whose job needs
it (a backup fixing its point in time, a volume being cloned or restored) or a process (an
offline import or export; later an NBD attachment). Conflicting work is refused with a message
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


# Reasons that exclude each other on one resource (a holder of one refuses the others). Readers
# of a stable image (clone and restore sources) share with everything but a writer.
_EXCLUSIVE = frozenset({Reason.BACKUP, Reason.IMPORT, Reason.EXPORT})
_WRITERS = frozenset({Reason.IMPORT})


def conflicts(held: Reason, wanted: Reason) -> bool:
    """Whether a resource held for ``held`` refuses a new reservation for ``wanted``."""
    if held in _WRITERS or wanted in _WRITERS:
        return True
    return held in _EXCLUSIVE and wanted in _EXCLUSIVE


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
        }[self.reason]
