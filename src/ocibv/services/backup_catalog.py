"""The backup store as the services see it: one deduplicating chunk store per tenancy, the
manifests in it, and catalog entries so that the store describes itself (``recover``).

Layout inside a tenancy's part of the store (beside what the engine keeps):
``catalog/<backup ocid>.json`` — the backup's resource row (as JSON), written when the backup
becomes AVAILABLE; ``identity.json`` — the tenancy, its users' public keys and compartments.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ocibv.engine import manifest as manifests
from ocibv.engine.backends import open_backend
from ocibv.engine.backends.base import Backend
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.errors import ObjectNotFound
from ocibv.engine.manifest import Manifest
from ocibv.store.resources import Resource

# A parsed JSON document of the store (catalog records, identity); their fields are documented
# in docs/design.md and read by name.
JsonObject = dict[str, Any]

class BackupCatalog:
    """Chunk stores by tenancy, with an in-memory cache of (immutable) manifests."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url.rstrip("/")
        self._stores: dict[str, ChunkStore] = {}
        self._manifests: dict[str, Manifest] = {}
        self._lock = threading.Lock()

    def backend(self, tenancy_id: str) -> Backend:
        return self.chunk_store(tenancy_id).backend

    def chunk_store(self, tenancy_id: str) -> ChunkStore:
        with self._lock:
            store = self._stores.get(tenancy_id)
            if store is None:
                store = ChunkStore(open_backend(f"{self.store_url}/{tenancy_id}"))
                self._stores[tenancy_id] = store
            return store

    def tenancy_ids(self) -> list[str]:
        """Tenancies that have a part of the store (a directory each, in a local store)."""
        parts = urlsplit(self.store_url)
        if parts.scheme != "file":
            return sorted(self._stores)
        root = Path(unquote(parts.path))
        if not root.is_dir():
            return []
        return sorted(
            p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("ocid1.tenancy.")
        )

    # --- manifests --------------------------------------------------------------------------

    def manifest(self, tenancy_id: str, backup_id: str) -> Manifest:
        cached = self._manifests.get(backup_id)
        if cached is None:
            cached = manifests.load_manifest(self.backend(tenancy_id), backup_id)
            self._manifests[backup_id] = cached
        return cached

    def has_manifest(self, tenancy_id: str, backup_id: str) -> bool:
        if backup_id in self._manifests:
            return True
        try:
            self.manifest(tenancy_id, backup_id)
        except ObjectNotFound:
            return False
        return True

    def forget(self, tenancy_id: str, backup_id: str) -> None:
        """Delete a volume backup's manifest and catalog entry (its chunks go at the next GC)."""
        manifests.delete_manifest(self.backend(tenancy_id), backup_id)
        self._manifests.pop(backup_id, None)
        self.forget_entry(tenancy_id, backup_id)

    def forget_entry(self, tenancy_id: str, backup_id: str) -> None:
        """Delete a backup's catalog entry."""
        self.backend(tenancy_id).delete(f"catalog/{backup_id}.json")

    def live_manifests(self, tenancy_id: str) -> list[Manifest]:
        backend = self.backend(tenancy_id)
        return [self.manifest(tenancy_id, b) for b in manifests.list_manifests(backend)]

    # --- catalog entries --------------------------------------------------------------------

    def save_entry(self, tenancy_id: str, res: Resource) -> None:
        entry = {k: v for k, v in res.__dict__.items() if k != "purge_after_us"}
        self.backend(tenancy_id).put(
            f"catalog/{res.id}.json", json.dumps(entry, sort_keys=True).encode()
        )

    def entries(self, tenancy_id: str) -> list[JsonObject]:
        backend = self.backend(tenancy_id)
        out = []
        for key in backend.list("catalog/"):
            try:
                out.append(json.loads(backend.get(key)))
            except (ObjectNotFound, ValueError):
                continue
        return out

    def save_identity(self, tenancy_id: str, identity: JsonObject) -> None:
        self.backend(tenancy_id).put("identity.json", json.dumps(identity).encode())

    def load_identity(self, tenancy_id: str) -> JsonObject | None:
        try:
            return dict(json.loads(self.backend(tenancy_id).get("identity.json")))
        except ObjectNotFound:
            return None


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
