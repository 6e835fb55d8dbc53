"""The backend contract: a flat namespace of objects under '/'-separated keys.

The contract is what every S3-compatible object store offers: put (atomic, whole object),
get, ranged get, list by prefix, stat, delete, and — where available — a conditional put
(create only if absent). There is no touch, rename or compare-and-delete: garbage collection
is built on plans and a grace period instead (``ocibv.engine.maintenance``). Every backend
(local directory, memory, S3) implements :class:`Backend`; one contract test suite
(``tests/engine/test_backends.py``) runs against each.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

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

    Capability flags (class attributes) say where backends differ: ``conditional_put``
    (:meth:`put_if_absent` is atomic), ``needs_sync`` (puts are durable only after
    :meth:`sync`), ``remote`` (each call is a network request: batch work into few objects).

    Keys are validated by :func:`validate_key`. "Not found" is always
    :class:`~ocibv.engine.errors.ObjectNotFound` (a :class:`BackendError`); any other storage
    failure is a :class:`BackendError`. Methods are safe to call from several threads at once.
    """

    conditional_put: bool = False
    needs_sync: bool = False
    remote: bool = False

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any previous object.

        Atomic: a concurrent or later reader sees either the previous object (or none) or all
        of ``data``, never a prefix. Visible to every reader on return. Durable once the next
        :meth:`sync` returns; until then a crash may lose the object, but never leaves it
        torn or empty under its key. Sets the object's timestamp to now
        (the backend's clock).
        """

    def put_parts(self, key: str, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """:meth:`put` of the concatenation of ``parts`` (backends may avoid joining them)."""
        self.put(key, b"".join(parts))

    def put_file(self, key: str, file: IO[bytes], size: int) -> None:
        """:meth:`put` of the ``size`` bytes of ``file`` from its start (backends may stream
        them instead of reading them into memory: large manifests are written this way)."""
        file.seek(0)
        self.put(key, file.read(size))

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object's bytes; raise ``ObjectNotFound`` if there is none."""

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of the object from ``offset`` (fewer only at its end);
        ``ObjectNotFound`` if there is none. Backends override this with a ranged read."""
        return self.get(key)[offset : offset + length]

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store ``data`` only if no object is stored under ``key``; True if it was stored.

        Atomic where :attr:`conditional_put` is True; elsewhere a check then a put (two
        writers may both succeed, the later one winning).
        """
        if self.exists(key):
            return False
        self.put(key, data)
        return True

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
