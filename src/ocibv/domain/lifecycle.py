"""Lifecycle states (OCI's exact strings) and the allowed transitions, defined once."""

from __future__ import annotations

from typing import Final

PROVISIONING: Final = "PROVISIONING"
RESTORING: Final = "RESTORING"
AVAILABLE: Final = "AVAILABLE"
TERMINATING: Final = "TERMINATING"
TERMINATED: Final = "TERMINATED"
FAULTY: Final = "FAULTY"
UPDATE_PENDING: Final = "UPDATE_PENDING"
REQUEST_RECEIVED: Final = "REQUEST_RECEIVED"
CREATING: Final = "CREATING"
COMMITTED: Final = "COMMITTED"
ACTIVE: Final = "ACTIVE"
DELETING: Final = "DELETING"
DELETED: Final = "DELETED"

VOLUME_STATES: Final = (PROVISIONING, RESTORING, AVAILABLE, TERMINATING, TERMINATED, FAULTY)
VOLUME_GROUP_STATES: Final = (
    PROVISIONING,
    AVAILABLE,
    TERMINATING,
    TERMINATED,
    FAULTY,
    UPDATE_PENDING,
)
VOLUME_BACKUP_STATES: Final = (
    CREATING,
    AVAILABLE,
    TERMINATING,
    TERMINATED,
    FAULTY,
    REQUEST_RECEIVED,
)
COMPARTMENT_STATES: Final = ("CREATING", ACTIVE, "INACTIVE", DELETING, DELETED)

# kind -> state -> states it may move to.
TRANSITIONS: Final[dict[str, dict[str, frozenset[str]]]] = {
    "volume": {
        PROVISIONING: frozenset({AVAILABLE, FAULTY, TERMINATING}),
        RESTORING: frozenset({AVAILABLE, FAULTY, TERMINATING}),
        AVAILABLE: frozenset({TERMINATING}),
        FAULTY: frozenset({TERMINATING}),
        TERMINATING: frozenset({TERMINATED}),
        TERMINATED: frozenset(),
    },
    "volumegroup": {
        PROVISIONING: frozenset({AVAILABLE, FAULTY, TERMINATING}),
        AVAILABLE: frozenset({UPDATE_PENDING, TERMINATING}),
        UPDATE_PENDING: frozenset({AVAILABLE, FAULTY}),
        FAULTY: frozenset({TERMINATING}),
        TERMINATING: frozenset({TERMINATED}),
        TERMINATED: frozenset(),
    },
    "volumebackup": {
        REQUEST_RECEIVED: frozenset({CREATING, FAULTY, TERMINATING}),
        CREATING: frozenset({AVAILABLE, FAULTY}),
        AVAILABLE: frozenset({TERMINATING}),  # AVAILABLE is final: it stays restorable
        FAULTY: frozenset({TERMINATING}),
        TERMINATING: frozenset({TERMINATED}),
        TERMINATED: frozenset(),
    },
    "volumegroupbackup": {
        REQUEST_RECEIVED: frozenset({CREATING, FAULTY, TERMINATING}),
        CREATING: frozenset({COMMITTED, FAULTY}),
        COMMITTED: frozenset({AVAILABLE, FAULTY}),
        AVAILABLE: frozenset({TERMINATING}),
        FAULTY: frozenset({TERMINATING}),
        TERMINATING: frozenset({TERMINATED}),
        TERMINATED: frozenset(),
    },
    "compartment": {
        ACTIVE: frozenset({DELETING}),
        DELETING: frozenset({DELETED}),
        DELETED: frozenset(),
    },
}


def sources_of(kind: str, target: str) -> tuple[str, ...]:
    """Every state of ``kind`` from which ``target`` may be reached."""
    return tuple(s for s, nxt in TRANSITIONS[kind].items() if target in nxt)
