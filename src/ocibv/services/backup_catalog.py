"""The backup store as the services see it: one repository (deduplicating chunk store) per
tenancy, the manifests in it, and catalog records so that the store describes itself.

Store root (docs/design.md, "Keys and layout"): ``config`` and a ``tenancies/<ocid>`` marker
per tenancy — :meth:`BackupCatalog.tenancy_ids` lists those markers, so every backend and
every process (after a restart too) sees every tenancy. Inside a tenancy's repository:
``catalog/<backup ocid>.json`` — a catalog record in its own schema (:func:`record_from_row`),
written when the backup becomes AVAILABLE and after every update; ``identity.json`` — the
tenancy, its users' public keys and compartments.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from ocibv.domain.kinds import Kind
from ocibv.engine import keys
from ocibv.engine import manifest as manifests
from ocibv.engine.backends import child_url, open_backend
from ocibv.engine.backends.base import Backend
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.errors import IntegrityError, ObjectNotFound, StoreFormatError
from ocibv.engine.manifest import ChunkEntry, Manifest
from ocibv.engine.repository import STORE_FORMAT, open_store_root
from ocibv.store.resources import Resource

# A parsed JSON document of the store (catalog records, identity); their fields are documented
# in docs/design.md and read by name.
JsonObject = dict[str, Any]

RECORD_SCHEMA = "ocibv-catalog-record"
IDENTITY_SCHEMA = "ocibv-identity"
SCHEMA_VERSION = 1
_KIND_NAMES = {Kind.VOLUME_BACKUP: "volume_backup", Kind.VOLUME_GROUP_BACKUP: "volume_group_backup"}
_KINDS = {name: kind for kind, name in _KIND_NAMES.items()}
MANIFEST_CACHE_ENTRIES = 32
"""Manifests kept in memory (LRU): the cache is bounded, whatever the history."""


# The attributes a catalog record keeps, by kind: the API attributes of the backup that are
# not record members of their own (docs/design.md, "Catalog records"). Nothing else of the
# database row reaches the store; derived values (unique sizes) are recomputed on recover.
_RETENTION = (
    "retention_period",
    "retention_expires_us",
    "is_retention_lock_enabled",
    "is_prevent_deletion_enabled",
    "is_indefinite_retention_enabled",
)
_COMMON = (
    "type",
    "source_type",
    "expiration_us",
    "size_in_gbs",
    "time_request_received_us",
    "requested_type",
    "freeform_tags",
    "defined_tags",
    "system_tags",
    *_RETENTION,
)
RECORD_ATTRIBUTES: dict[Kind, tuple[str, ...]] = {
    Kind.VOLUME_BACKUP: (
        *_COMMON,
        "base_backup_id",
        "volume_group_backup_id",
        "kms_key_id",
        "stored_bytes",
    ),
    Kind.VOLUME_GROUP_BACKUP: (*_COMMON, "volume_backup_ids", "member_volume_ids"),
}


def record_from_row(res: Resource) -> JsonObject:
    """The catalog record of a volume or volume group backup (schema v1, docs/design.md)."""
    kind = Kind(res.kind)
    return {
        "schema": RECORD_SCHEMA,
        "version": SCHEMA_VERSION,
        "kind": _KIND_NAMES[kind],
        "id": res.id,
        "tenancy_id": res.tenancy_id,
        "compartment_id": res.compartment_id,
        "display_name": res.display_name,
        "availability_domain": res.availability_domain,
        "source_id": res.parent_id,
        "copied_from": res.source_id,
        "created_at_us": res.created_us,
        "updated_at_us": res.updated_us,
        "attributes": {k: res.attrs[k] for k in RECORD_ATTRIBUTES[kind] if k in res.attrs},
    }


def row_from_record(record: JsonObject) -> Resource:
    """An AVAILABLE resource row from a catalog record (v1, or a pre-v1 row dump)."""
    if record.get("schema") != RECORD_SCHEMA:  # pre-v1: the row itself
        names = {f.name for f in fields(Resource)}
        return Resource(**{k: v for k, v in record.items() if k in names})
    if record.get("version") != SCHEMA_VERSION:
        raise StoreFormatError(f"catalog record {record.get('id')}: unknown version")
    kind = _KINDS[record["kind"]]
    given = record.get("attributes") or {}
    attrs = {k: given[k] for k in RECORD_ATTRIBUTES[kind] if k in given}  # unknown: ignored
    if kind == Kind.VOLUME_BACKUP:
        attrs["volume_id"] = record.get("source_id")
    attrs["unique_bytes"] = 0  # recomputed from the manifests by recover
    return Resource(
        id=record["id"],
        kind=kind,
        tenancy_id=record["tenancy_id"],
        compartment_id=record["compartment_id"],
        display_name=record["display_name"],
        lifecycle_state="AVAILABLE",
        availability_domain=record.get("availability_domain") or "",
        created_us=int(record["created_at_us"]),
        updated_us=int(record.get("updated_at_us") or record["created_at_us"]),
        etag=uuid.uuid4().hex,
        parent_id=record.get("source_id"),
        source_id=record.get("copied_from"),
        attrs=attrs,
    )


def compartment_record(res: Resource) -> JsonObject:
    """A compartment as ``identity.json`` lists it (schema v1, docs/design.md)."""
    return {
        "id": res.id,
        "parent_id": res.compartment_id,
        "name": res.display_name,
        "description": res.attrs.get("description") or "",
        "lifecycle_state": res.lifecycle_state,
        "created_at_us": res.created_us,
        "freeform_tags": res.attrs.get("freeform_tags") or {},
        "defined_tags": res.attrs.get("defined_tags") or {},
    }


def compartment_from_record(tenancy_id: str, entry: JsonObject) -> Resource:
    """A compartment row from ``identity.json`` (v1, or a pre-v1 row dump: unknown fields of
    the dump are ignored, so documents written by older versions still load)."""
    if "kind" in entry:  # pre-v1: the row itself
        names = {f.name for f in fields(Resource)}
        return Resource(**{k: v for k, v in entry.items() if k in names})
    return Resource(
        id=entry["id"],
        kind=Kind.COMPARTMENT,
        tenancy_id=tenancy_id,
        compartment_id=entry["parent_id"],
        display_name=entry["name"],
        lifecycle_state=entry.get("lifecycle_state") or "ACTIVE",
        created_us=int(entry.get("created_at_us") or 0),
        updated_us=int(entry.get("created_at_us") or 0),
        etag=uuid.uuid4().hex,
        attrs={
            "description": entry.get("description") or "",
            "freeform_tags": dict(entry.get("freeform_tags") or {}),
            "defined_tags": dict(entry.get("defined_tags") or {}),
        },
    )


def record_kind(record: JsonObject) -> str:
    """The resource kind of a record (v1 or pre-v1)."""
    if record.get("schema") == RECORD_SCHEMA:
        return _KINDS[record["kind"]]
    return str(record["kind"])


class BackupCatalog:
    """Chunk stores by tenancy, with a bounded cache of (immutable) manifests."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url.rstrip("/")
        self.root = open_backend(self.store_url)
        check_store(self.root)
        open_store_root(self.root)
        self._stores: dict[str, ChunkStore] = {}
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()
        self._forgotten: dict[str, Sequence[ChunkEntry]] = {}
        self._identities: dict[str, bytes] = {}  # identity.json as this process last wrote it
        self._lock = threading.Lock()

    def backend(self, tenancy_id: str) -> Backend:
        return self.chunk_store(tenancy_id).backend

    def chunk_store(self, tenancy_id: str) -> ChunkStore:
        with self._lock:
            store = self._stores.get(tenancy_id)
        if store is None:
            marker = keys.tenancy_marker(tenancy_id)
            if not self.root.exists(marker):  # before the repository: listing finds it
                self.root.put(marker, tenancy_id.encode())
                self.root.sync()
            store = ChunkStore(open_backend(child_url(self.store_url, tenancy_id)))
            with self._lock:
                store = self._stores.setdefault(tenancy_id, store)
        return store

    def tenancy_ids(self) -> list[str]:
        """Every tenancy with a repository in the store (from the root's markers)."""
        out = []
        for key in self.root.list(keys.TENANCY_PREFIX):
            name = key[len(keys.TENANCY_PREFIX) :]
            if keys.valid_id(name):
                out.append(name)
        return sorted(out)

    # --- manifests --------------------------------------------------------------------------

    def manifest(self, tenancy_id: str, backup_id: str) -> Manifest:
        with self._lock:
            cached = self._manifests.get(backup_id)
            if cached is not None:
                self._manifests.move_to_end(backup_id)
                return cached
        loaded = manifests.load_manifest(self.backend(tenancy_id), backup_id)
        self.remember(loaded)
        return loaded

    def remember(self, manifest: Manifest) -> None:
        """Cache a manifest this process has just saved (a backup's): the next backup of the
        volume builds on it and the unique sizes read it, so it is not read back and parsed."""
        with self._lock:
            self._manifests[manifest.backup_id] = manifest
            self._manifests.move_to_end(manifest.backup_id)
            while len(self._manifests) > MANIFEST_CACHE_ENTRIES:
                self._manifests.popitem(last=False)

    def has_manifest(self, tenancy_id: str, backup_id: str) -> bool:
        with self._lock:
            if backup_id in self._manifests:
                return True
        return self.backend(tenancy_id).exists(manifests.manifest_key(backup_id))

    def forget(self, tenancy_id: str, backup_id: str) -> None:
        """Delete a volume backup's manifest and catalog entry (its chunks go at the next GC).

        The digests it named are kept (:meth:`pop_forgotten`) for the unique-size tables."""
        try:
            gone = self.manifest(tenancy_id, backup_id)
            with self._lock:
                self._forgotten[backup_id] = gone.chunks  # compact, on disk when large
        except (ObjectNotFound, IntegrityError):
            pass
        manifests.delete_manifest(self.backend(tenancy_id), backup_id)
        with self._lock:
            self._manifests.pop(backup_id, None)
        self.forget_entry(tenancy_id, backup_id)

    def pop_forgotten(self, backup_id: str) -> Sequence[ChunkEntry] | None:
        """The chunk entries of a backup :meth:`forget` deleted; None if unknown."""
        with self._lock:
            return self._forgotten.pop(backup_id, None)

    def forget_entry(self, tenancy_id: str, backup_id: str) -> None:
        """Delete a backup's catalog entry."""
        self.backend(tenancy_id).delete(keys.catalog_key(backup_id))

    def live_manifests(self, tenancy_id: str) -> list[Manifest]:
        """Every manifest of the tenancy (loaded from the store, not cached)."""
        return list(manifests.iter_manifests(self.backend(tenancy_id)))

    # --- catalog records --------------------------------------------------------------------

    def save_entry(self, tenancy_id: str, res: Resource) -> None:
        self.backend(tenancy_id).put(
            keys.catalog_key(res.id), json.dumps(record_from_row(res), sort_keys=True).encode()
        )

    def entries(self, tenancy_id: str) -> list[JsonObject]:
        backend = self.backend(tenancy_id)
        out = []
        for key in backend.list(keys.CATALOG_PREFIX):
            try:
                out.append(json.loads(backend.get(key)))
            except (ObjectNotFound, ValueError):
                continue
        return out

    def save_identity(self, tenancy_id: str, identity: JsonObject) -> None:
        """Write ``identity.json`` unless this process last wrote exactly these bytes (it is
        refreshed after every backup, and seldom changes: a durable put is an fsync)."""
        doc = {"schema": IDENTITY_SCHEMA, "version": SCHEMA_VERSION, **identity}
        data = json.dumps(doc).encode()
        with self._lock:
            if self._identities.get(tenancy_id) == data:
                return
        self.backend(tenancy_id).put(keys.IDENTITY, data)
        with self._lock:
            self._identities[tenancy_id] = data

    def load_identity(self, tenancy_id: str) -> JsonObject | None:
        try:
            doc = dict(json.loads(self.backend(tenancy_id).get(keys.IDENTITY)))
        except ObjectNotFound:
            return None
        if doc.get("schema", IDENTITY_SCHEMA) != IDENTITY_SCHEMA or doc.get("version", 1) != 1:
            raise StoreFormatError(f"identity of {tenancy_id}: unknown schema or version")
        return doc


def check_store(root: Backend) -> None:
    """Refuse a pre-v1 store (objects at the root, no ``config``) naming the command to run."""
    try:
        doc = json.loads(root.get(keys.STORE_CONFIG))
    except ObjectNotFound:
        if next(iter(root.list("")), None) is not None:
            raise StoreFormatError(
                f"backup store {root.url} is in the pre-v1 format: stop the server and run "
                "`ocibv store migrate` to convert it"
            ) from None
        return
    except ValueError as exc:
        raise StoreFormatError(f"backup store {root.url}: config is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
        raise StoreFormatError(f"backup store {root.url}: not an ocibv store")


def unique_bytes(owned: Mapping[str, Iterable[Manifest]]) -> dict[str, int]:
    """Stored bytes each owner holds that no other owner references.

    An owner is a standalone volume backup, or a volume group backup with all its members
    (a chunk shared only between members of one group backup is still unique to that group).
    """
    digests: dict[str, dict[str, int]] = {}
    for owner, owner_manifests in owned.items():
        chunks: dict[str, int] = {}
        for man in owner_manifests:
            for chunk in man.chunks:
                chunks[chunk.digest] = chunk.stored_size
        digests[owner] = chunks
    refs: Counter[str] = Counter()
    for chunks in digests.values():
        refs.update(chunks.keys())
    return {
        owner: sum(size for digest, size in chunks.items() if refs[digest] == 1)
        for owner, chunks in digests.items()
    }
