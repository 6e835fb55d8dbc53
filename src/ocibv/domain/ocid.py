"""OCIDs: ``ocid1.<type>.<realm>.<region>.<unique>`` (region empty for global resources)."""

from __future__ import annotations

import re
import secrets

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_OCID_RE = re.compile(r"^ocid1\.([a-z0-9]+)\.oc1\.([a-z0-9-]*)\.([a-z0-9]{8,80})$")


def new_ocid(resource_type: str, region_key: str = "") -> str:
    """A fresh OCID; ``region_key`` is the short region (``phx``) or empty for global types."""
    unique = "aaaaaaaa" + "".join(secrets.choice(_ALPHABET) for _ in range(52))
    return f"ocid1.{resource_type}.oc1.{region_key}.{unique}"


def ocid_type(value: str) -> str | None:
    """The resource type of a well-formed OCID, or None when ``value`` is not one.

    Only strings of ``[a-z0-9.-]`` can pass, so an OCID can never act as a path.
    """
    match = _OCID_RE.match(value)
    return match.group(1) if match else None


def is_ocid(value: object, resource_type: str | None = None) -> bool:
    if not isinstance(value, str):
        return False
    kind = ocid_type(value)
    return kind is not None and (resource_type is None or kind == resource_type)
