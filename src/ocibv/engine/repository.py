"""The repository ``config`` object: format, version and parameters (docs/design.md, "Config").

A repository is created by writing ``config`` first (conditionally, so two processes that
create it at once agree on one); it is never rewritten. Opening refuses an unknown format or
version, and a pre-v1 store (chunk objects or manifests without a config) with a message
that names ``ocibv store migrate``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from ocibv.engine import keys
from ocibv.engine.backends.base import Backend
from ocibv.engine.errors import ObjectNotFound, StoreFormatError

FORMAT = "ocibv-repository"
VERSION = 1
STORE_FORMAT = "ocibv-store"
DEFAULT_CHUNK_SIZE = 256 * 1024
DEFAULT_PACK_SIZE = 8 * 1024 * 1024


def now_iso() -> str:
    """Now, ISO 8601 UTC with milliseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_legacy(backend: Backend) -> bool:
    """Whether the backend holds a pre-v1 repository (objects but no ``config``)."""
    if backend.exists(keys.CONFIG):
        return False
    for prefix in (keys.LEGACY_CHUNK_PREFIX, keys.MANIFEST_PREFIX, keys.CATALOG_PREFIX):
        if next(iter(backend.list(prefix)), None) is not None:
            return True
    return False


def check_config(doc: Any, where: str) -> dict[str, Any]:
    """Return ``doc`` if it is a config this code reads, else raise StoreFormatError."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StoreFormatError(f"{where}: not an ocibv backup repository")
    if doc.get("version") != VERSION:
        raise StoreFormatError(
            f"{where}: repository format version {doc.get('version')!r} is not supported by "
            f"this ocibv (it reads version {VERSION}); use a matching ocibv release"
        )
    return doc


def new_config(chunk_size: int = DEFAULT_CHUNK_SIZE, pack_size: int = DEFAULT_PACK_SIZE) -> bytes:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "id": uuid.uuid4().hex,
        "created_at": now_iso(),
        "chunk_size": chunk_size,
        "hash": "blake3-256",
        "compression": "zstd",
        "pack_size": pack_size,
    }
    return json.dumps(doc, indent=1).encode()


def open_repository(backend: Backend, *, create: bool = True) -> dict[str, Any]:
    """The repository's config, created when the repository is new and ``create`` is set.

    StoreFormatError for an unknown format or version, for a pre-v1 store (run ``ocibv
    store migrate``), and for a missing repository when ``create`` is False.
    """
    where = backend.url
    try:
        raw = backend.get(keys.CONFIG)
    except ObjectNotFound:
        if is_legacy(backend):
            raise StoreFormatError(
                f"{where}: backup store in the pre-v1 format; stop the server and run "
                "`ocibv store migrate` to convert it"
            ) from None
        if not create:
            raise StoreFormatError(f"{where}: no backup repository here") from None
        backend.put_if_absent(keys.CONFIG, new_config())
        backend.sync()
        raw = backend.get(keys.CONFIG)
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise StoreFormatError(f"{where}: config is not JSON ({exc})") from exc
    return check_config(doc, where)


def open_store_root(backend: Backend) -> None:
    """Create the store-level ``config`` if absent; refuse a store of another format."""
    try:
        doc = json.loads(backend.get(keys.STORE_CONFIG))
    except ObjectNotFound:
        body = {"format": STORE_FORMAT, "version": VERSION, "created_at": now_iso()}
        backend.put_if_absent(keys.STORE_CONFIG, json.dumps(body).encode())
        return
    except ValueError as exc:
        raise StoreFormatError(f"{backend.url}: store config is not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
        raise StoreFormatError(f"{backend.url}: not an ocibv backup store")
    if doc.get("version") != VERSION:
        raise StoreFormatError(f"{backend.url}: store version {doc.get('version')!r} unknown")
