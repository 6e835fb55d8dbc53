"""Resource kinds: the ``kind`` of a resource row and the type word of its OCID, defined once."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """A kind of OCI resource ocibv keeps (the value is the OCID's resource type)."""

    VOLUME = "volume"
    VOLUME_GROUP = "volumegroup"
    VOLUME_BACKUP = "volumebackup"
    VOLUME_GROUP_BACKUP = "volumegroupbackup"
    COMPARTMENT = "compartment"
    VOLUME_BACKUP_POLICY = "volumebackuppolicy"
    VOLUME_BACKUP_POLICY_ASSIGNMENT = "volumebackuppolicyassignment"

    @property
    def label(self) -> str:
        """How error messages name the kind ("Volume group backup")."""
        return _LABELS[self]


_LABELS = {
    Kind.VOLUME: "Volume",
    Kind.VOLUME_GROUP: "Volume group",
    Kind.VOLUME_BACKUP: "Volume backup",
    Kind.VOLUME_GROUP_BACKUP: "Volume group backup",
    Kind.COMPARTMENT: "Compartment",
    Kind.VOLUME_BACKUP_POLICY: "Volume backup policy",
    Kind.VOLUME_BACKUP_POLICY_ASSIGNMENT: "Volume backup policy assignment",
}


def label(kind: str) -> str:
    """The label of a kind given as its string value (any other string is returned as is)."""
    try:
        return Kind(kind).label
    except ValueError:
        return kind
