"""Storage backends for the backup store.

A backend stores opaque objects under '/'-separated keys (:class:`Backend`, in ``base``).
Backends are chosen by URL scheme through :func:`open_backend`; each parses its own URL:

- ``file:///abs/dir`` — :class:`LocalBackend`, one file per object (the default store);
- ``memory://`` — :class:`MemoryBackend`, a dict (tests);
- ``s3://bucket/prefix`` — :class:`~ocibv.engine.backends.s3.S3Backend`, S3-compatible
  object storage (boto3 is imported only when such a store is opened).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from ocibv.engine.backends.base import Backend, ObjectInfo, validate_key
from ocibv.engine.backends.local import LocalBackend
from ocibv.engine.backends.memory import MemoryBackend
from ocibv.engine.errors import BackendError

__all__ = [
    "Backend",
    "LocalBackend",
    "MemoryBackend",
    "ObjectInfo",
    "child_url",
    "open_backend",
    "validate_key",
]


def _open_file(url: str) -> Backend:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise BackendError(f"file URL must name a local directory: {url}")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise BackendError(f"file URL must hold an absolute path: {url}")
    return LocalBackend(Path(path))


def _open_memory(url: str) -> Backend:
    parts = urlsplit(url)
    if parts.netloc or parts.path not in ("", "/"):
        raise BackendError(f"memory URL takes no location: {url}")
    return MemoryBackend()


def _open_s3(url: str) -> Backend:
    from ocibv.engine.backends.s3 import S3Backend

    return S3Backend(url)


_SCHEMES: dict[str, Callable[[str], Backend]] = {
    "file": _open_file,
    "memory": _open_memory,
    "s3": _open_s3,
}


def child_url(url: str, name: str) -> str:
    """The URL of the sub-store ``name`` (one key component) below ``url``: the same
    backend with ``name/`` added to its path (query parameters are kept)."""
    validate_key(name)
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/" + name
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def open_backend(url: str) -> Backend:
    """Open the backend a URL names; raise :class:`BackendError` for an unknown scheme.

    ``memory://`` returns a new, empty store on every call.
    """
    scheme = urlsplit(url).scheme.lower()
    opener = _SCHEMES.get(scheme)
    if opener is None:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise BackendError(f"unknown backup store URL scheme in {url!r} (known: {known})")
    return opener(url)
