"""What the NBD server serves: a named ``Export`` looked up through ``Exports``.

The server knows nothing about volumes, reservations or the database: whoever attaches a
volume adds an export under a name and removes it on detach (``ExportTable``).
"""

from __future__ import annotations

import threading
from typing import Protocol


class Export(Protocol):
    """A block device of ``size`` bytes. Every method blocks (the server calls them from its
    thread pool) and may raise ``OSError``, which the server turns into an NBD error reply.

    Callers guarantee ``0 <= offset`` and ``offset + length <= size``; writing methods are
    never called when ``read_only`` is true.
    """

    @property
    def size(self) -> int: ...

    @property
    def read_only(self) -> bool: ...

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset`` (holes read as zeros)."""
        ...

    def read_cached(self, offset: int, length: int) -> bytes | bytearray | None:
        """The ``length`` bytes at ``offset`` if they can be had without blocking (all in
        the page cache), else None. Called on the event loop: it must never block."""
        ...

    def write(self, offset: int, data: bytes | bytearray, *, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` it is durable on return."""
        ...

    def write_now(self, offset: int, data: bytes | bytearray) -> bool:
        """``write`` without FUA if it can be done at once, else False (nothing written).
        Called on the event loop: it may wait for nothing but the write into the page
        cache."""
        ...

    def trim(self, offset: int, length: int, *, fua: bool = False) -> None:
        """Discard the range; it may then read as anything (ocibv: zeros, a hole)."""
        ...

    def zero(self, offset: int, length: int, *, may_trim: bool, fua: bool = False) -> None:
        """Make the range read as zeros; ``may_trim`` allows punching a hole."""
        ...

    def flush(self) -> None:
        """Make every completed write durable (any connection's: the export is shared)."""
        ...

    def block_status(self, offset: int, length: int) -> list[tuple[int, bool]]:
        """Consecutive ``(length, is_hole)`` extents from ``offset`` covering at least one
        byte and at most ``length`` bytes; a hole reads as zeros."""
        ...


class Exports(Protocol):
    """The set of exports a server offers, looked up on every negotiation."""

    def lookup(self, name: str) -> Export | None:
        """The export called ``name``, or None (the client gets NBD_REP_ERR_UNKNOWN)."""
        ...

    def names(self) -> list[str]:
        """Export names for NBD_OPT_LIST."""
        ...


class ExportTable:
    """A thread-safe ``Exports``: the attach/detach seam. ``add`` and ``remove`` may be
    called from any thread while the server runs; connections already open keep the
    ``Export`` object they negotiated until they close."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exports: dict[str, Export] = {}

    def add(self, name: str, export: Export) -> None:
        """Offer ``export`` under ``name``; ValueError if the name is taken or invalid."""
        encoded = name.encode("utf-8")
        if not name or len(encoded) > 4096 or "\x00" in name:
            raise ValueError(f"invalid export name {name!r}")
        with self._lock:
            if name in self._exports:
                raise ValueError(f"export {name!r} already exists")
            self._exports[name] = export

    def remove(self, name: str) -> Export | None:
        """Stop offering ``name`` (new negotiations are refused); returns the export."""
        with self._lock:
            return self._exports.pop(name, None)

    def lookup(self, name: str) -> Export | None:
        with self._lock:
            return self._exports.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._exports)
