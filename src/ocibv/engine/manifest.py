"""Manifests: what a backup is made of, stored in the backup store so it describes itself.

A volume backup's :class:`Manifest` lists, for every chunk of the volume that is not all
zeros, its index and the chunk that holds it; absent indices restore as zeros (holes). Every
manifest is complete on its own: FULL and INCREMENTAL differ in what was read, not in what a
restore needs.

Stored as ``manifests/<backup_id>.json``, the bytes
``{"checksum":"<64 hex>","manifest":BODY}`` where BODY is a JSON object and the checksum
is BLAKE3-256 of exactly the BODY bytes. See ``docs/design.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import blake3

from ocibv.engine import keys
from ocibv.engine.backends.base import Backend
from ocibv.engine.errors import BackendError, IntegrityError, ObjectNotFound

MANIFEST_FORMAT = 1
MANIFEST_PREFIX = keys.MANIFEST_PREFIX
KIND_VOLUME = "volume_backup"


class BackupType(StrEnum):
    """What a backup read: every allocated chunk (FULL) or what changed (INCREMENTAL). One
    form from the API request to the manifest; a restore needs the same either way."""

    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"


FULL = BackupType.FULL
INCREMENTAL = BackupType.INCREMENTAL

_ID_RE = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,254}")
_HEAD = b'{"checksum":"'
_MID = b'","manifest":'
_HEAD_LEN = len(_HEAD) + 64 + len(_MID)


class ChunkEntry(NamedTuple):
    """Chunk ``chunk_index`` (from byte ``chunk_index * chunk_size``) holds chunk ``digest``."""

    chunk_index: int
    digest: str
    size: int
    stored_size: int


@dataclass
class Manifest:
    """One volume backup. ``chunks`` is sorted by index and holds non-zero chunks only."""

    backup_id: str
    volume_id: str
    volume_size: int
    chunk_size: int
    created_at: str
    type: BackupType
    chunks: list[ChunkEntry] = field(default_factory=list)
    group_backup_id: str | None = None
    format: int = MANIFEST_FORMAT

    def digests(self) -> set[str]:
        """The distinct chunks this backup needs."""
        return {entry.digest for entry in self.chunks}

    @property
    def chunk_count(self) -> int:
        """Number of chunk slots of the volume (stored or zero)."""
        return -(-self.volume_size // self.chunk_size)

    @property
    def data_bytes(self) -> int:
        """Plaintext bytes of the non-zero chunks (what a restore writes)."""
        return sum(entry.size for entry in self.chunks)

    @property
    def stored_bytes(self) -> int:
        """Stored bytes of the distinct chunks this backup needs."""
        return sum({e.digest: e.stored_size for e in self.chunks}.values())


def validate_id(backup_id: str) -> str:
    """Return ``backup_id`` if it can name a manifest object, else raise BackendError."""
    if not isinstance(backup_id, str) or not _ID_RE.fullmatch(backup_id):
        raise BackendError(f"invalid backup id {backup_id!r}")
    return backup_id


def manifest_key(backup_id: str) -> str:
    """Store key of a volume backup's manifest."""
    return keys.manifest_key(validate_id(backup_id))


def _seal(body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    digest = blake3.blake3(data).hexdigest().encode("ascii")
    return _HEAD + digest + _MID + data + b"}"


def _unseal(blob: bytes, what: str) -> dict[str, Any]:
    if len(blob) < _HEAD_LEN + 2 or not blob.startswith(_HEAD) or not blob.endswith(b"}"):
        raise IntegrityError(f"{what}: not a manifest document")
    if blob[len(_HEAD) + 64 : _HEAD_LEN] != _MID:
        raise IntegrityError(f"{what}: not a manifest document")
    expected = blob[len(_HEAD) : len(_HEAD) + 64].decode("ascii", "replace")
    body = blob[_HEAD_LEN:-1]
    if blake3.blake3(body).hexdigest() != expected:
        raise IntegrityError(f"{what}: checksum mismatch")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise IntegrityError(f"{what}: invalid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise IntegrityError(f"{what}: unsupported manifest format")
    return doc


def encode_manifest(manifest: Manifest) -> bytes:
    """The stored bytes of ``manifest``."""
    return _seal(
        {
            "format": manifest.format,
            "kind": KIND_VOLUME,
            "backup_id": manifest.backup_id,
            "volume_id": manifest.volume_id,
            "volume_size": manifest.volume_size,
            "chunk_size": manifest.chunk_size,
            "created_at": manifest.created_at,
            "type": manifest.type,
            "group_backup_id": manifest.group_backup_id,
            "chunks": [list(entry) for entry in manifest.chunks],
        }
    )


def decode_manifest(blob: bytes, *, what: str = "manifest") -> Manifest:
    """Parse and check stored manifest bytes; raise IntegrityError if they are not sound."""
    doc = _unseal(blob, what)
    try:
        if doc["kind"] != KIND_VOLUME:
            raise ValueError(f"kind {doc['kind']!r}")
        manifest = Manifest(
            backup_id=str(doc["backup_id"]),
            volume_id=str(doc["volume_id"]),
            volume_size=int(doc["volume_size"]),
            chunk_size=int(doc["chunk_size"]),
            created_at=str(doc["created_at"]),
            type=BackupType(doc["type"]),
            chunks=[ChunkEntry(int(i), str(d), int(s), int(t)) for i, d, s, t in doc["chunks"]],
            group_backup_id=doc["group_backup_id"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{what}: malformed ({exc})") from exc
    check_manifest(manifest, what=what)
    return manifest


def check_manifest(manifest: Manifest, *, what: str = "manifest") -> None:
    """Raise IntegrityError unless entries are sorted, in range and sized like their slot."""
    if manifest.chunk_size <= 0 or manifest.volume_size < 0:
        raise IntegrityError(f"{what}: bad chunk or volume size")
    previous = -1
    for entry in manifest.chunks:
        if entry.chunk_index <= previous:
            raise IntegrityError(f"{what}: chunk indices not strictly increasing")
        start = entry.chunk_index * manifest.chunk_size
        if start >= manifest.volume_size:
            raise IntegrityError(f"{what}: chunk {entry.chunk_index} beyond the volume")
        if entry.size != min(manifest.chunk_size, manifest.volume_size - start):
            raise IntegrityError(f"{what}: chunk {entry.chunk_index} has size {entry.size}")
        if len(entry.digest) != 64:
            raise IntegrityError(f"{what}: chunk {entry.chunk_index} has a malformed digest")
        previous = entry.chunk_index


def _ids(backend: Backend, prefix: str) -> list[str]:
    ids = []
    for key in backend.list(prefix):
        name = key[len(prefix) :]
        if name.endswith(".json") and "/" not in name:
            ids.append(name[: -len(".json")])
    return sorted(ids)


def save_manifest(backend: Backend, manifest: Manifest) -> None:
    """Store ``manifest`` (replacing one with the same id); durable on return.

    Callers save a manifest last, after every chunk it names is durable (``backend.sync()``).
    """
    check_manifest(manifest, what=f"manifest {manifest.backup_id}")
    backend.put(manifest_key(manifest.backup_id), encode_manifest(manifest))
    backend.sync()


def load_manifest(backend: Backend, backup_id: str) -> Manifest:
    """The manifest of ``backup_id``; ObjectNotFound if there is none, IntegrityError if damaged."""
    blob = backend.get(manifest_key(backup_id))
    return decode_manifest(blob, what=f"manifest {backup_id}")


def list_manifests(backend: Backend) -> list[str]:
    """Backup ids of every stored volume backup manifest, sorted."""
    return _ids(backend, MANIFEST_PREFIX)


def iter_manifests(backend: Backend, backup_ids: Iterable[str] | None = None) -> Iterator[Manifest]:
    """Load the given manifests (default: all); ones deleted meanwhile are skipped."""
    for backup_id in list_manifests(backend) if backup_ids is None else backup_ids:
        try:
            yield load_manifest(backend, backup_id)
        except ObjectNotFound:
            continue


def delete_manifest(backend: Backend, backup_id: str) -> None:
    """Remove a backup's manifest (missing is fine); durable on return. Chunks stay for GC."""
    backend.delete(manifest_key(backup_id))
    backend.sync()


