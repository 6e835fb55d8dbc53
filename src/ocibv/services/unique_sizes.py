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
        refs, get = self._refs, self._refs.get  # the loop runs per digest: locals are faster
        alone = 0
        for digest, size in digests.items():
            found = get(digest)
            if found is None:
                alone += size
                refs[digest] = (1, key, size)
                continue
            count, xor, known = found
            if count == 1:
                sole = self._owners[xor]
                self.unique[sole] -= known
                self.dirty.add(sole)
            refs[digest] = (count + 1, xor ^ key, known)
        self.unique[owner] += alone

    def remove(self, owner: str, digests: Iterable[str]) -> None:
        """Forget ``owner``, which named exactly ``digests``."""
        key = _owner_key(owner)
        self.unique.pop(owner, None)
        self.dirty.discard(owner)
        refs, get = self._refs, self._refs.get
        for digest in digests:
            found = get(digest)
            if found is None:
                continue
            count, xor, size = found
            if count <= 1:
                del refs[digest]
                continue
            xor ^= key
            if count == 2:
                sole = self._owners.get(xor)
                if sole is not None and sole in self.unique:
                    self.unique[sole] += size
                    self.dirty.add(sole)
            refs[digest] = (count - 1, xor, size)
        self._owners.pop(key, None)

    def take_dirty(self) -> dict[str, int]:
        """Unique sizes changed since the last call."""
        out = {owner: self.unique[owner] for owner in self.dirty if owner in self.unique}
        self.dirty.clear()
        return out
