"""Unique sizes, kept up to date incrementally: adding or removing one backup costs what
that backup names, not what the tenancy's history holds.

A :class:`RefTable` maps each digest to (number of owners naming it, XOR of the owners'
63-bit keys, stored size). When exactly one owner names a digest, the XOR *is* that owner's
key, so the table knows whom a digest becomes unique to when the second-to-last owner goes —
without a list of owners per digest. ``unique[owner]`` is the stored bytes only that owner
names (what deleting it alone frees).

The table lives in a private temporary SQLite database on disk (binary digests, a small
page cache), so its memory does not grow with the number of distinct chunks a tenancy
holds; each add or remove is a few set operations over the backup's own digests.

Owners: every volume backup for per-backup sizes; a standalone volume backup or a whole
volume group backup (its members' digests together) for the group-level sizes.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping

Digest = str | bytes
"""A chunk digest, hex or binary (32 bytes)."""
CACHE_KIB = 2048
"""Page cache of one table's database."""


def _owner_key(owner: str) -> int:
    digest = hashlib.blake2b(owner.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: SQLite integers are signed


class RefTable:
    """Reference counts with sole-owner recovery by XOR; not thread-safe (callers lock)."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for pragma in (f"cache_size=-{CACHE_KIB}", "journal_mode=OFF", "synchronous=OFF"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(
            "CREATE TABLE refs (digest BLOB PRIMARY KEY, count INTEGER NOT NULL, "
            "xor INTEGER NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE TABLE cur (digest BLOB PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID"
        )
        self._owners: dict[int, str] = {}
        self.unique: dict[str, int] = {}
        self.dirty: set[str] = set()

    def __contains__(self, owner: object) -> bool:
        return owner in self.unique

    def owners(self) -> set[str]:
        return set(self.unique)

    def _load(self, pairs: Iterable[tuple[Digest, int]]) -> None:
        """Fill ``cur`` with the distinct digests of ``pairs`` (a digest's first size)."""
        self._db.execute("DELETE FROM cur")
        rows = (
            (digest if isinstance(digest, bytes) else bytes.fromhex(digest), size)
            for digest, size in pairs
        )
        self._db.executemany("INSERT OR IGNORE INTO cur VALUES (?, ?)", rows)

    def _sole_sizes(self) -> Iterator[tuple[int, int]]:
        """(sole owner's key, stored bytes) of the ``cur`` digests exactly one owner names."""
        yield from self._db.execute(
            "SELECT r.xor, SUM(r.size) FROM cur JOIN refs r USING (digest) "
            "WHERE r.count = 1 GROUP BY r.xor"
        )

    def add(
        self, owner: str, digests: Mapping[Digest, int] | Iterable[tuple[Digest, int]]
    ) -> None:
        """Count ``owner`` (not counted yet) as naming ``digests`` (digest → stored size, or
        ``(digest, stored size)`` pairs; repeats count once; digests hex or binary)."""
        key = _owner_key(owner)
        self._owners[key] = owner
        self.unique.setdefault(owner, 0)
        self.dirty.add(owner)
        pairs = digests.items() if isinstance(digests, Mapping) else digests
        db = self._db
        db.execute("BEGIN")
        try:
            self._load(pairs)
            for sole_key, size in self._sole_sizes():  # they are no longer unique
                sole = self._owners[sole_key]
                self.unique[sole] -= size
                self.dirty.add(sole)
            (new,) = db.execute(
                "SELECT COALESCE(SUM(c.size), 0) FROM cur c LEFT JOIN refs r USING (digest) "
                "WHERE r.digest IS NULL"
            ).fetchone()
            self.unique[owner] += int(new)
            db.execute(
                "INSERT INTO refs SELECT digest, 1, ?, size FROM cur WHERE true "
                "ON CONFLICT (digest) DO UPDATE SET count = count + 1, "
                "xor = (xor | excluded.xor) - (xor & excluded.xor)",
                (key,),
            )
            db.execute("DELETE FROM cur")
        finally:
            db.execute("COMMIT")

    def remove(self, owner: str, digests: Iterable[Digest]) -> None:
        """Forget ``owner``, which named exactly ``digests`` (repeats count once)."""
        key = _owner_key(owner)
        self.unique.pop(owner, None)
        self.dirty.discard(owner)
        db = self._db
        db.execute("BEGIN")
        try:
            self._load((digest, 0) for digest in digests)
            db.execute(
                "UPDATE refs SET count = count - 1, xor = (xor | ?1) - (xor & ?1) "
                "WHERE digest IN (SELECT digest FROM cur)",
                (key,),
            )
            db.execute(  # by key: a scan of the whole table would grow with the history
                "DELETE FROM refs WHERE digest IN (SELECT digest FROM cur) AND count <= 0"
            )
            for sole_key, size in self._sole_sizes():  # now unique to their last owner
                sole = self._owners.get(sole_key)
                if sole is not None and sole in self.unique:
                    self.unique[sole] += size
                    self.dirty.add(sole)
            db.execute("DELETE FROM cur")
        finally:
            db.execute("COMMIT")
        self._owners.pop(key, None)

    def __len__(self) -> int:
        """Distinct digests counted."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM refs").fetchone()
        return int(count)

    def take_dirty(self) -> dict[str, int]:
        """Unique sizes changed since the last call."""
        out = {owner: self.unique[owner] for owner in self.dirty if owner in self.unique}
        self.dirty.clear()
        return out
