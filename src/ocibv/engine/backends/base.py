"""The backend contract: a flat namespace of immutable-ish objects under '/'-separated keys.

Every backend (local directory, memory, later S3-compatible object storage) implements
:class:`Backend`; one contract test suite (``tests/engine/test_backends.py``) runs against
each. The chunk store, manifests and garbage collection are built only on this interface.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ocibv.engine.errors import BackendError

_KEY_RE = re.compile(r"[a-z0-9_-][a-z0-9._-]*(/[a-z0-9_-][a-z0-9._-]*)*")
MAX_KEY_LENGTH = 1024


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise :class:`BackendError`.

    A key is one or more '/'-separated components of ``[a-z0-9._-]``; no component is empty
    or starts with '.', so no key can name ``.``/``..``, a hidden file or escape the root.
    """
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not _KEY_RE.fullmatch(key):
        raise BackendError(f"invalid object key {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start a valid key ('' lists everything)."""
    if prefix == "":
        return prefix
    probe = prefix + "x" if prefix.endswith("/") else prefix
    validate_key(probe)
    return prefix


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a backend knows about one object: stored size and last-write time (epoch s)."""

    size: int
    mtime: float


class Backend(ABC):
    """Object storage for the backup store.

    Keys are validated by :func:`validate_key`. "Not found" is always
    :class:`~ocibv.engine.errors.ObjectNotFound` (a :class:`BackendError`); any other storage
    failure is a :class:`BackendError`. Methods are safe to call from several threads at once.
    """

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any previous object.

        Atomic: a concurrent or later reader sees either the previous object (or none) or all
        of ``data``, never a prefix. Visible to every reader on return. Durable once the next
        :meth:`sync` returns; until then a crash may lose the object, but never leaves it
        torn or empty under its key. Sets the object's timestamp to now.
        """

    def put_parts(self, key: str, parts: Sequence[bytes]) -> None:
        """:meth:`put` of the concatenation of ``parts`` (backends may avoid joining them)."""
        self.put(key, b"".join(parts))

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object's bytes; raise ``ObjectNotFound`` if there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key`` (never raises ``ObjectNotFound``)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with ``prefix`` (a plain string prefix), in no order.

        Objects being written (not yet visible through :meth:`get`) are never listed. Keys
        put or deleted while the iteration runs may or may not appear.
        """

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Return size and timestamp of the object; raise ``ObjectNotFound`` if absent."""

    def size(self, key: str) -> int:
        """Stored size in bytes of the object; raise ``ObjectNotFound`` if absent."""
        return self.stat(key).size

    @abstractmethod
    def touch(self, key: str) -> int | None:
        """Set the object's timestamp to now and return its size; ``None`` if it is absent.

        Garbage collection deletes only objects whose timestamp is older than its cutoff
        (:meth:`delete_if_older`), so a caller that has touched an object can rely on it
        for as long as the collector's grace period.
        """

    @abstractmethod
    def delete_if_older(self, key: str, cutoff: float) -> bool:
        """Delete the object only if its timestamp is older than ``cutoff``; True if deleted.

        Atomic with respect to :meth:`touch`: once a touch has returned a size, no call whose
        ``cutoff`` is at or before that touch deletes the object; a touch that loses the race
        returns ``None`` (the caller then writes the object again). Absent objects return
        False.
        """

    @abstractmethod
    def sync(self) -> None:
        """Make every :meth:`put` and :meth:`delete` that returned before this call durable.

        After ``sync`` returns, a crash loses none of those changes (names and contents).
        """

    def cleanup(self, cutoff: float) -> int:
        """Remove leftovers of interrupted writes older than ``cutoff``; return how many.

        Backends without such leftovers return 0.
        """
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release resources; the backend must not be used afterwards."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL this backend was opened from (see :func:`ocibv.engine.backends.open_backend`)."""
