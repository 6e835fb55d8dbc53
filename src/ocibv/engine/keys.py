"""Every object key of the backup store, built in one place (see docs/design.md, "Keys").

Store root: :data:`STORE_CONFIG` and :func:`tenancy_marker`. Inside a repository (one per
tenancy, under ``<tenancy ocid>/``): the config, packs, index objects, manifests, group
manifests, GC plans, catalog records and the identity document. Helpers that parse keys back
return ``None`` for keys that are not of their kind.
"""

from __future__ import annotations

import re

CONFIG = "config"
STORE_CONFIG = "config"
TENANCY_PREFIX = "tenancies/"
PACK_PREFIX = "packs/"
INDEX_PREFIX = "index/"
MANIFEST_PREFIX = "manifests/"
GROUP_MANIFEST_PREFIX = "group-manifests/"
PLAN_PREFIX = "gc/"
CATALOG_PREFIX = "catalog/"
IDENTITY = "identity.json"
LEGACY_CHUNK_PREFIX = "chunks/"
"""Pre-v1 layout: one object per chunk (read only by the migration)."""

_HEX = frozenset("0123456789abcdef")
_ID_RE = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,254}")


def is_hex(text: str, length: int) -> bool:
    """Whether ``text`` is exactly ``length`` lowercase hex digits."""
    return len(text) == length and _HEX.issuperset(text)


def valid_id(name: str) -> bool:
    """Whether ``name`` can name a manifest, catalog record or tenancy (one key component)."""
    return isinstance(name, str) and bool(_ID_RE.fullmatch(name))


def tenancy_marker(tenancy_id: str) -> str:
    return f"{TENANCY_PREFIX}{tenancy_id}"


def pack_key(pack_id: str) -> str:
    return f"{PACK_PREFIX}{pack_id[:2]}/{pack_id}"


def pack_id_from_key(key: str) -> str | None:
    pack_id = key.rpartition("/")[2]
    return pack_id if is_hex(pack_id, 32) and key == pack_key(pack_id) else None


def index_key(index_id: str) -> str:
    return f"{INDEX_PREFIX}{index_id}.json"


def manifest_key(backup_id: str) -> str:
    return f"{MANIFEST_PREFIX}{backup_id}.json"


def group_manifest_key(group_backup_id: str) -> str:
    return f"{GROUP_MANIFEST_PREFIX}{group_backup_id}.json"


def plan_key(plan_id: str) -> str:
    return f"{PLAN_PREFIX}{plan_id}.json"


def catalog_key(backup_id: str) -> str:
    return f"{CATALOG_PREFIX}{backup_id}.json"


def legacy_chunk_key(digest: str) -> str:
    return f"{LEGACY_CHUNK_PREFIX}{digest[:2]}/{digest}"


def json_name(key: str, prefix: str) -> str | None:
    """``<name>`` of a key ``<prefix><name>.json`` (one component), else None."""
    if not key.startswith(prefix) or not key.endswith(".json"):
        return None
    name = key[len(prefix) : -len(".json")]
    return name if name and "/" not in name else None
