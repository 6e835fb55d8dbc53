"""In-memory backend: a dict behind a lock. For tests and throwaway stores; nothing is durable
beyond the process, so :meth:`MemoryBackend.sync` has nothing to do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from ocibv.engine.backends.base import Backend, ObjectInfo, validate_key, validate_prefix
from ocibv.engine.errors import ObjectNotFound


class MemoryBackend(Backend):
    """Objects in a dict; thread-safe. ``clock`` supplies timestamps (tests can move time)."""

    conditional_put = True

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    @property
    def url(self) -> str:
        return "memory://"

    def put(self, key: str, data: bytes) -> None:
        validate_key(key)
        blob = bytes(data)  # own an immutable copy: the caller may reuse its buffer
        with self._lock:
            self._objects[key] = (blob, self._clock())

    def get(self, key: str) -> bytes:
        validate_key(key)
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise ObjectNotFound(f"no object {key}")
        return found[0]

    def exists(self, key: str) -> bool:
        validate_key(key)
        with self._lock:
            return key in self._objects

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        with self._lock:
            keys = [k for k in self._objects if k.startswith(prefix)]
        yield from keys

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise ObjectNotFound(f"no object {key}")
        return ObjectInfo(size=len(found[0]), mtime=found[1])

    def put_if_absent(self, key: str, data: bytes) -> bool:
        validate_key(key)
        with self._lock:
            if key in self._objects:
                return False
            self._objects[key] = (bytes(data), self._clock())
            return True

    def sync(self) -> None:
        return None

    def set_mtime(self, key: str, mtime: float) -> None:
        """Set an object's timestamp (test support: age objects without waiting)."""
        validate_key(key)
        with self._lock:
            found = self._objects.get(key)
            if found is None:
                raise ObjectNotFound(f"no object {key}")
            self._objects[key] = (found[0], mtime)
