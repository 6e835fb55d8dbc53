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
import threading
import uuid
from collections.abc import Iterable, Iterator

from ocibv.engine import keys
from ocibv.engine.backends.base import Backend
from ocibv.engine.errors import IntegrityError, ObjectNotFound
from ocibv.engine.pack import Location

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


class PackIndex:
    """In-memory union of the index objects read so far; thread-safe."""

    def __init__(self) -> None:
        self._primary: dict[str, Location] = {}
        self._extra: dict[str, list[Location]] = {}
        self._read: set[str] = set()
        self._packs_of: dict[str, set[str]] = {}  # index object read → the pack ids it lists
        self._lock = threading.Lock()
        self.damaged: set[str] = set()
        """Index objects that could not be parsed (skipped; ``scrub`` reports them)."""

    def add(self, digest: str, loc: Location, *, prefer: bool = False) -> None:
        with self._lock:
            first = self._primary.get(digest)
            if first is None:
                self._primary[digest] = loc
            elif first != loc:
                extra = self._extra.setdefault(digest, [])
                if loc in extra:
                    return
                if prefer:
                    self._primary[digest] = loc
                    extra.insert(0, first)
                else:
                    extra.append(loc)

    def add_packs(self, packs: PackEntries, *, prefer: bool = False) -> None:
        for entries in packs.values():
            for digest, loc in entries:
                self.add(digest, loc, prefer=prefer)

    def remove_pack_entries(self, entries: Iterable[tuple[str, Location]]) -> None:
        """Forget locations (of a pack that could not be written)."""
        with self._lock:
            for digest, loc in entries:
                extra = self._extra.get(digest, [])
                if self._primary.get(digest) == loc:
                    if extra:
                        self._primary[digest] = extra.pop(0)
                    else:
                        del self._primary[digest]
                elif loc in extra:
                    extra.remove(loc)
                if not extra:
                    self._extra.pop(digest, None)

    def mark_read(self, key: str, packs: Iterable[str] = ()) -> None:
        """Note that index object ``key`` (written by this process, listing ``packs``) is
        already merged."""
        with self._lock:
            self._read.add(key)
            self._packs_of[key] = set(packs)

    def forget_packs(self, packs: set[str]) -> None:
        """Drop every location in ``packs`` (collected by GC)."""
        if not packs:
            return
        with self._lock:
            for digest in [d for d, loc in self._primary.items() if loc.pack in packs] + [
                d for d, extra in self._extra.items() if any(x.pack in packs for x in extra)
            ]:
                kept = [
                    loc
                    for loc in (self._primary.get(digest), *self._extra.get(digest, ()))
                    if loc is not None and loc.pack not in packs
                ]
                self._extra.pop(digest, None)
                self._primary.pop(digest, None)
                if kept:
                    self._primary[digest] = kept[0]
                    if len(kept) > 1:
                        self._extra[digest] = kept[1:]

    def locations(self, digest: str) -> list[Location]:
        with self._lock:
            first = self._primary.get(digest)
            if first is None:
                return []
            return [first, *self._extra.get(digest, ())]

    def __contains__(self, digest: object) -> bool:
        return digest in self._primary

    def __len__(self) -> int:
        return len(self._primary)

    def digests(self) -> Iterator[str]:
        with self._lock:
            names = list(self._primary)
        yield from names

    def refresh(self, backend: Backend) -> int:
        """Read the index objects not read yet; return how many. Objects that vanish
        meanwhile (consolidated by GC) are skipped: their content is in a newer one. The
        packs of objects read before and gone now are forgotten unless a listed object
        names them (GC writes the consolidated object before deleting the old ones, so a
        listing without an old object holds every pack of it that still exists)."""
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
