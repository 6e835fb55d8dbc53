"""Unique sizes, kept up to date incrementally: adding or removing one backup costs what
that backup names, not what the tenancy's history holds.

A :class:`RefTable` maps each digest to (number of owners naming it, XOR of the owners'
64-bit keys, stored size). When exactly one owner names a digest, the XOR *is* that owner's
key, so the table knows whom a digest becomes unique to when the second-to-last owner goes —
without a list of owners per digest. ``unique[owner]`` is the stored bytes only that owner
names (what deleting it alone frees).

Owners: every volume backup for per-backup sizes; a standalone volume backup or a whole
volume group backup (its members' digests together) for the group-level sizes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def _owner_key(owner: str) -> int:
    return int.from_bytes(hashlib.blake2b(owner.encode(), digest_size=8).digest(), "little")


class RefTable:
    """Reference counts with sole-owner recovery by XOR; not thread-safe (callers lock)."""

    def __init__(self) -> None:
        self._refs: dict[str, tuple[int, int, int]] = {}  # digest → (count, xor, size)
        self._owners: dict[int, str] = {}
        self.unique: dict[str, int] = {}
        self.dirty: set[str] = set()

    def __contains__(self, owner: object) -> bool:
        return owner in self.unique

    def owners(self) -> set[str]:
        return set(self.unique)

    def add(self, owner: str, digests: Mapping[str, int]) -> None:
        """Count ``owner`` (not counted yet) as naming ``digests`` (digest → stored size)."""
        key = _owner_key(owner)
        self._owners[key] = owner
        self.unique.setdefault(owner, 0)
        self.dirty.add(owner)
        for digest, size in digests.items():
            count, xor, _size = self._refs.get(digest, (0, 0, size))
            if count == 0:
                self.unique[owner] += size
            elif count == 1:
                sole = self._owners[xor]
                self.unique[sole] -= size
                self.dirty.add(sole)
            self._refs[digest] = (count + 1, xor ^ key, size)

    def remove(self, owner: str, digests: Iterable[str]) -> None:
        """Forget ``owner``, which named exactly ``digests``."""
        key = _owner_key(owner)
        self.unique.pop(owner, None)
        self.dirty.discard(owner)
        for digest in digests:
            found = self._refs.get(digest)
            if found is None:
                continue
            count, xor, size = found
            count, xor = count - 1, xor ^ key
            if count <= 0:
                del self._refs[digest]
                continue
            if count == 1:
                sole = self._owners.get(xor)
                if sole is not None and sole in self.unique:
                    self.unique[sole] += size
                    self.dirty.add(sole)
            self._refs[digest] = (count, xor, size)
        self._owners.pop(key, None)

    def take_dirty(self) -> dict[str, int]:
        """Unique sizes changed since the last call."""
        out = {owner: self.unique[owner] for owner in self.dirty if owner in self.unique}
        self.dirty.clear()
        return out
