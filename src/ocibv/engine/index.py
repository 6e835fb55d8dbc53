"""The pack index: digest → locations, read from ``index/*.json`` objects, and GC plans.

Index objects are immutable and named by a random id; :class:`PackIndex` remembers which it
has read, so :meth:`PackIndex.refresh` reads only new ones, and forgets the packs of the
ones GC consolidated away that no listed object names any more (deleted packs). A digest
may have several locations (a repair, concurrent writers, a repack); the newest written by
this process comes first. See docs/design.md ("Chunks and packs", "Garbage collection").
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ocibv.engine import keys
from ocibv.engine.backends.base import Backend
from ocibv.engine.digest_filter import DigestFilter
from ocibv.engine.errors import IntegrityError, ObjectNotFound
from ocibv.engine.pack import Location
from ocibv.engine.parallel import batched

log = logging.getLogger("ocibv.engine.index")

INDEX_VERSION = 1
PLAN_VERSION = 1

PackEntries = dict[str, list[tuple[str, Location]]]
"""pack id → its blobs as (digest, location)."""


def read_index_object(backend: Backend, key: str) -> PackEntries:
    """The packs an index object lists; ObjectNotFound if gone, IntegrityError if malformed."""
    raw = backend.get(key)
    try:
        doc = json.loads(raw)
        if doc["version"] != INDEX_VERSION:
            raise ValueError(f"version {doc['version']}")
        out: PackEntries = {}
        for pack in doc["packs"]:
            pid = str(pack["id"])
            if not keys.is_hex(pid, 32):
                raise ValueError(f"pack id {pid!r}")
            out[pid] = [
                (str(d), Location(pid, int(o), int(n), int(s))) for d, o, n, s in pack["chunks"]
            ]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"index object {key} is malformed ({exc})") from exc
    return out


def write_index_object(backend: Backend, packs: PackEntries) -> str:
    """Write a new index object listing ``packs``; return its key."""
    doc = {
        "version": INDEX_VERSION,
        "packs": [
            {"id": pid, "chunks": [[d, loc.offset, loc.length, loc.size] for d, loc in entries]}
            for pid, entries in packs.items()
        ],
    }
    key = keys.index_key(uuid.uuid4().hex)
    backend.put(key, json.dumps(doc, separators=(",", ":")).encode("ascii"))
    return key


def index_keys(backend: Backend) -> list[str]:
    return [k for k in backend.list(keys.INDEX_PREFIX) if keys.json_name(k, keys.INDEX_PREFIX)]


def plan_keys(backend: Backend) -> list[str]:
    return [k for k in backend.list(keys.PLAN_PREFIX) if keys.json_name(k, keys.PLAN_PREFIX)]


def read_plan(backend: Backend, key: str) -> set[str]:
    """Pack ids a GC plan condemns (empty if the plan is gone meanwhile)."""
    try:
        doc = json.loads(backend.get(key))
        return {str(p) for p in doc["packs"]}
    except ObjectNotFound:
        return set()
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"GC plan {key} is malformed ({exc})") from exc


def condemned_packs(backend: Backend) -> set[str]:
    """Every pack some GC plan condemns (listing ``gc/`` now)."""
    out: set[str] = set()
    for key in plan_keys(backend):
        out |= read_plan(backend, key)
    return out


def existing_packs(backend: Backend) -> set[str]:
    """Ids of every pack stored now."""
    out = set()
    for key in backend.list(keys.PACK_PREFIX):
        pid = keys.pack_id_from_key(key)
        if pid is not None:
            out.add(pid)
    return out


INDEX_CACHE_KIB = 8192
"""Page cache of the index's SQLite table (the rest stays in its temporary file)."""
_IN_CLAUSE = 500
FILTER_BLOCK = 65536
"""Digests added to a rebuilt filter at once (2 MiB of them)."""


def _binary_keys(digests: Iterable[str | bytes]) -> tuple[dict[bytes, str], set[str]]:
    """The distinct ``digests`` (hex, or binary as a chunk table holds them) by their
    binary form, each with its hex name; and the malformed ones."""
    wanted: dict[bytes, str] = {}
    malformed: set[str] = set()
    for digest in digests:
        if isinstance(digest, bytes):
            wanted[digest] = ""  # named only if missing
            continue
        try:
            wanted.setdefault(bytes.fromhex(digest), digest)
        except ValueError:
            malformed.add(digest)
    return wanted, malformed


_CHECK_SLICE = 32768


class PackIndex:
    """The union of the index objects read so far, plus what this process wrote; thread-safe.

    Held in a private temporary SQLite database on disk (``sqlite3.connect("")``): one row
    per location — binary digest, pack number, offset, length, size, rank — and a page cache
    of ``INDEX_CACHE_KIB``, so the memory it takes does not grow with the number of chunks
    (a Python dict of hex digests and ``Location`` objects took ~350 bytes per chunk). The
    rank orders a digest's locations: the newest written by this process (``prefer``) first,
    then the others in the order they were added. A ``DigestFilter`` answers for most
    digests that are not there without a query."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        for pragma in (f"cache_size=-{INDEX_CACHE_KIB}", "journal_mode=OFF", "synchronous=OFF",
                       "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(
            "CREATE TABLE loc (digest BLOB NOT NULL, pack INTEGER NOT NULL, "
            "off INTEGER NOT NULL, len INTEGER NOT NULL, size INTEGER NOT NULL, "
            "rank INTEGER NOT NULL, PRIMARY KEY (digest, pack, off)) WITHOUT ROWID"
        )
        self._pack_ids: list[str] = []
        self._pack_no: dict[str, int] = {}
        self._rank = 0
        self._read: set[str] = set()
        self._packs_of: dict[str, set[str]] = {}  # index object read → the pack ids it lists
        self._lock = threading.RLock()
        self._filter = DigestFilter()
        self._refresh_lock = threading.Lock()
        self.damaged: set[str] = set()
        """Index objects that could not be parsed (skipped; ``scrub`` reports them)."""

    def _number(self, pack: str) -> int:
        number = self._pack_no.get(pack)
        if number is None:
            number = self._pack_no[pack] = len(self._pack_ids)
            self._pack_ids.append(pack)
        return number

    def add(self, digest: str, loc: Location, *, prefer: bool = False) -> None:
        self.add_many([(digest, loc)], prefer=prefer)

    def add_many(self, entries: Iterable[tuple[str, Location]], *, prefer: bool = False) -> None:
        """Add locations (a location already known keeps its place)."""
        with self._lock:
            rows = []
            for digest, loc in entries:
                self._rank += 1
                rows.append((bytes.fromhex(digest), self._number(loc.pack), loc.offset,
                             loc.length, loc.size, -self._rank if prefer else self._rank))
            # first: a lookup that finds the row always passes the filter
            self._filter.add_many([row[0] for row in rows])
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR IGNORE INTO loc VALUES (?, ?, ?, ?, ?, ?)", rows)
            finally:
                self._db.execute("COMMIT")
            if self._filter.full:
                self._rebuild_filter()

    def _rebuild_filter(self) -> None:
        """A filter with room for twice the digests (forgotten ones dropped); under the lock."""
        fresh = DigestFilter(self._filter.count)
        rows = self._db.execute("SELECT digest FROM loc")
        while block := rows.fetchmany(FILTER_BLOCK):
            fresh.add_many([digest for (digest,) in block])
        self._filter = fresh

    def add_packs(self, packs: PackEntries, *, prefer: bool = False) -> None:
        for entries in packs.values():
            self.add_many(entries, prefer=prefer)

    def remove_pack_entries(self, entries: Iterable[tuple[str, Location]]) -> None:
        """Forget locations (of a pack that could not be written)."""
        with self._lock:
            rows = [
                (bytes.fromhex(digest), self._pack_no[loc.pack], loc.offset)
                for digest, loc in entries
                if loc.pack in self._pack_no
            ]
            self._db.executemany(
                "DELETE FROM loc WHERE digest = ? AND pack = ? AND off = ?", rows
            )

    def mark_read(self, key: str, packs: Iterable[str] = ()) -> None:
        """Note that index object ``key`` (written by this process, listing ``packs``) is
        already merged."""
        with self._lock:
            self._read.add(key)
            self._packs_of[key] = set(packs)

    def _query_in(self, sql: str, values: list[Any]) -> Iterator[tuple[Any, ...]]:
        """The rows of ``sql`` (an IN list written ``{marks}``) over ``values``,
        ``_IN_CLAUSE`` values per statement."""
        for start in range(0, len(values), _IN_CLAUSE):
            part = values[start : start + _IN_CLAUSE]
            with self._lock:
                rows = self._db.execute(sql.format(marks=",".join("?" * len(part))), part)
                fetched = rows.fetchall()
            yield from fetched

    def forget_packs(self, packs: set[str]) -> None:
        """Drop every location in ``packs`` (collected by GC)."""
        with self._lock:
            numbers = [self._pack_no[p] for p in packs if p in self._pack_no]
            for _ in self._query_in("DELETE FROM loc WHERE pack IN ({marks})", numbers):
                pass

    def locations(self, digest: str) -> list[Location]:
        try:
            key = bytes.fromhex(digest)
        except ValueError:
            return []
        if key not in self._filter:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT pack, off, len, size FROM loc WHERE digest = ? ORDER BY rank", (key,)
            ).fetchall()
            ids = self._pack_ids
            return [Location(ids[pack], off, length, size) for pack, off, length, size in rows]

    def locations_many(self, digests: list[str]) -> dict[str, list[Location]]:
        """:meth:`locations` of several digests in one query; unknown ones are absent."""
        wanted, _malformed = _binary_keys(digests)
        known = self._filter
        wanted = {key: digest for key, digest in wanted.items() if key in known}
        out: dict[str, list[Location]] = {}
        if not wanted:
            return out
        ids = self._pack_ids  # append-only: the numbers of rows read stay valid
        for key, pack, off, length, size in self._query_in(
            "SELECT digest, pack, off, len, size FROM loc WHERE digest IN ({marks}) "
            "ORDER BY digest, rank",
            list(wanted),
        ):
            location = Location(ids[pack], off, length, size)
            out.setdefault(wanted[key] or key.hex(), []).append(location)
        return out

    def without_usable_copy(
        self,
        digests: Iterable[str | bytes],
        usable: Callable[[str], bool],
        found_in: set[str] | None = None,
    ) -> set[str]:
        """The distinct ``digests`` (hex or binary) none of whose locations is in a pack
        ``usable`` accepts, as hex (unknown or malformed digests included): one query per
        ``_IN_CLAUSE`` of them, ``_CHECK_SLICE`` digests held at a time (a manifest of a
        million entries is never a set in memory). ``found_in`` gets a usable pack of each
        of the others."""
        out: set[str] = set()
        verdict: dict[int, bool] = {}
        packs: set[int] = set()
        ids = self._pack_ids
        for part in batched(digests, _CHECK_SLICE):
            wanted, malformed = _binary_keys(part)
            out |= malformed
            found: set[bytes] = set()
            for key, pack in self._query_in(
                "SELECT DISTINCT digest, pack FROM loc WHERE digest IN ({marks})", list(wanted)
            ):
                ok = verdict.get(pack)
                if ok is None:
                    ok = verdict[pack] = usable(ids[pack])
                if ok and key not in found:
                    found.add(key)
                    packs.add(pack)
            out.update(digest or key.hex() for key, digest in wanted.items() if key not in found)
        if found_in is not None:
            found_in.update(ids[pack] for pack in packs)
        return out

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, str):
            return False
        try:
            key = bytes.fromhex(digest)
        except ValueError:
            return False
        if key not in self._filter:
            return False
        with self._lock:
            row = self._db.execute("SELECT 1 FROM loc WHERE digest = ? LIMIT 1", (key,))
            return row.fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM (SELECT DISTINCT digest FROM loc)"
            ).fetchone()
            return int(count)

    def digests(self) -> Iterator[str]:
        """Every indexed digest, in digest order, read a page at a time."""
        last = b""
        while True:
            with self._lock:
                page = self._db.execute(
                    "SELECT DISTINCT digest FROM loc WHERE digest > ? ORDER BY digest "
                    "LIMIT 4096", (last,)
                ).fetchall()
            if not page:
                return
            for (digest,) in page:
                yield digest.hex()
            last = page[-1][0]

    def refresh(self, backend: Backend) -> int:
        """Read the index objects not read yet; return how many. Objects that vanish
        meanwhile (consolidated by GC) are skipped: their content is in a newer one. The
        packs of objects read before and gone now are forgotten unless a listed object
        names them (GC writes the consolidated object before deleting the old ones, so a
        listing without an old object holds every pack of it that still exists). One
        refresh runs at a time: threads that ask together read each object once."""
        with self._refresh_lock:
            return self._refresh(backend)

    def _refresh(self, backend: Backend) -> int:
        found = 0
        with self._lock:
            known = set(self._read)  # an object written while listing is not "vanished"
        listed = set(index_keys(backend))
        for key in sorted(listed):
            with self._lock:
                if key in self._read:
                    continue
            try:
                packs = read_index_object(backend, key)
            except ObjectNotFound:
                continue
            except IntegrityError:
                log.warning("skipping damaged index object %s", key)
                with self._lock:
                    self.damaged.add(key)
                    self._read.add(key)
                continue
            self.add_packs(packs)
            with self._lock:
                self._read.add(key)
                self._packs_of[key] = set(packs)
            found += 1
        self._forget_vanished(known - listed)
        return found

    def _forget_vanished(self, vanished: set[str]) -> None:
        with self._lock:
            if not vanished:
                return
            gone: set[str] = set()
            for key in vanished:
                self._read.discard(key)
                self.damaged.discard(key)
                gone |= self._packs_of.pop(key, set())
            for packs in self._packs_of.values():
                gone -= packs
        self.forget_packs(gone)
