"""Content-addressed chunk store on packs (docs/design.md, "Chunks and packs").

A chunk is named by the BLAKE3-256 digest (lowercase hex) of its plaintext and stored once as
a blob inside a pack; packs are written whole, then an index object names them. Every read is
verified against the name. :meth:`ChunkStore.put_chunk` buffers blobs until a pack is full
(the thread that fills it writes it); :meth:`ChunkStore.flush` writes the partial pack and
the index and syncs — a backup calls it before saving its manifest (rule W1).
:meth:`ChunkStore.missing` is the verification of rule W2.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from ocibv.engine import keys
from ocibv.engine.backends.base import Backend
from ocibv.engine.errors import ChunkNotFound, IntegrityError, ObjectNotFound
from ocibv.engine.index import (
    PackEntries,
    PackIndex,
    condemned_packs,
    existing_packs,
    write_index_object,
)
from ocibv.engine.pack import Buffer, Codec, Location, chunk_digest, pack_trailer
from ocibv.engine.repository import DEFAULT_CHUNK_SIZE, DEFAULT_PACK_SIZE, open_repository

__all__ = ["DEFAULT_CHUNK_SIZE", "ChunkRef", "ChunkStore", "chunk_digest"]

_Blob = tuple[str, tuple[Buffer, ...], int, int]  # digest, blob parts, blob size, plaintext size
_Pending = list[_Blob]
MAX_UPLOADS = 4
"""Full packs written at once (each holds ``pack_size`` bytes of memory until written)."""
MAX_PACK_BLOBS = 16384
"""Blobs per pack at most: a pack of tiny blobs (sparse chunks compress to a few dozen
bytes) would otherwise hold ~100,000 entries in memory and in its trailer."""
LOOKUP_CHUNKS = 1
"""Chunks a writer looks up in the index with one query, holding their plaintexts meanwhile
(measured: 4 saved no time on a busy 2-core machine and held 3 more chunks per thread)."""
INDEX_BATCH = 32768
"""Index entries a writer holds before it writes an index object for them (a backup of
a million chunks writes ~30 index objects as it goes, not one at the end)."""


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """A stored chunk: its name, plaintext size and size of the stored blob."""

    digest: str
    size: int
    stored_size: int


def check_digest(digest: str) -> str:
    if not keys.is_hex(digest, 64):
        raise IntegrityError(f"malformed chunk digest {digest!r}")
    return digest


class ChunkStore:
    """Put and get verified chunks of one repository. Thread-safe.

    Opening creates the repository (its ``config``) when the backend is empty and refuses a
    pre-v1 or unknown-version store (StoreFormatError). ``level`` is the zstd level of new
    blobs; ``pack_size`` the target size of new packs (default: the repository config's).
    """

    def __init__(
        self, backend: Backend, *, level: int = 1, pack_size: int | None = None,
        create: bool = True, config: dict[str, Any] | None = None,
    ) -> None:
        self._backend = backend
        # ``config`` given: use it without reading or writing one (the migration's commit
        # point is writing the config, so it works on a repository that has none yet).
        self.config: dict[str, Any] = config or open_repository(backend, create=create)
        self.pack_size = pack_size or int(self.config.get("pack_size", DEFAULT_PACK_SIZE))
        self.codec = Codec(level)
        self.index = PackIndex()
        self._condemned: set[str] = set()
        self._loaded = False
        self._load_lock = threading.Lock()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._buffer: _Pending = []
        self._buffer_bytes = 0
        self._pending: dict[str, int] = {}  # digest → blob size, buffered or being written
        self._unindexed: PackEntries = {}
        self._unindexed_count = 0
        self._busy = 0  # packs being written plus index objects being written
        self._uploads = threading.BoundedSemaphore(MAX_UPLOADS)

    @property
    def backend(self) -> Backend:
        """The backend holding the repository."""
        return self._backend

    # --- index --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read new index objects and the current GC plans (what dedup must not rely on)."""
        self._condemned = condemned_packs(self._backend)
        self.index.refresh(self._backend)
        self._loaded = True

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._load_lock:  # one thread reads the index; the others wait for it
            if not self._loaded:
                self.refresh()

    def _usable_many(self, digests: list[str]) -> dict[str, Location]:
        """:meth:`_usable` of several digests (one index query); unknown ones are absent."""
        out: dict[str, Location] = {}
        for digest, locs in self.index.locations_many(digests).items():
            for loc in locs:
                if loc.pack not in self._condemned:
                    out[digest] = loc
                    break
        return out

    def _usable(self, digest: str) -> Location | None:
        for loc in self.index.locations(digest):
            if loc.pack not in self._condemned:
                return loc
        return None

    # --- writing ------------------------------------------------------------------------

    def put_chunk(
        self,
        data: bytes | bytearray | memoryview,
        *,
        digest: str | None = None,
        verify_existing: bool = False,
        force: bool = False,
    ) -> ChunkRef:
        """Store ``data`` unless its chunk is already stored (or buffered); return its ref.

        ``digest``, when given, must be :func:`chunk_digest` of ``data``. With
        ``verify_existing`` a stored copy is read back and verified, and a damaged one gets
        a new good copy (that is how a FULL backup repairs the store); ``force`` always
        writes a new copy. The blob is durable once :meth:`flush` returns.
        """
        return self.put_chunks([bytes(data)], digests=[digest],
                               verify_existing=verify_existing, force=force)[0]

    def put_chunks(
        self,
        datas: Iterable[bytes | bytearray],
        *,
        digests: list[str | None] | None = None,
        verify_existing: bool = False,
        force: bool = False,
    ) -> list[ChunkRef]:
        """:meth:`put_chunk` of several chunks; the new blobs go into the pack together, so
        neighbours in a volume are neighbours in a pack (one ranged read restores them).
        ``datas`` is consumed lazily: ``LOOKUP_CHUNKS`` plaintexts at a time are held while
        the index is asked about them at once; the encoded blobs are held until the end."""
        self._ensure_loaded()
        refs: list[ChunkRef] = []
        new: _Pending = []
        group: list[tuple[str, bytes | bytearray]] = []

        def settle() -> None:
            if not group:
                return
            # one index query per few chunks: each query releases and retakes the GIL
            known = {} if force else self._usable_many([digest for digest, _data in group])
            for digest, data in group:
                if not force:
                    with self._lock:
                        buffered = self._pending.get(digest)
                    if buffered is not None:
                        refs.append(ChunkRef(digest, len(data), buffered))
                        continue
                    loc = known.get(digest)
                    if loc is not None and (not verify_existing or self._read_ok(digest, loc)):
                        refs.append(ChunkRef(digest, len(data), loc.length))
                        continue
                header, payload = self.codec.encode_parts(data)  # raw: no copy of ``data``
                stored = len(header) + len(payload)
                new.append((digest, (header, payload), stored, len(data)))
                refs.append(ChunkRef(digest, len(data), stored))
            group.clear()

        for n, data in enumerate(datas):
            group.append(((digests[n] if digests else None) or chunk_digest(data), data))
            if len(group) >= LOOKUP_CHUNKS:
                settle()
        settle()
        if new:
            self._append(new, force)
        return refs

    def copy_blob(self, digest: str, loc: Location) -> None:
        """Store again, verbatim, the blob of chunk ``digest`` at ``loc`` once it verifies
        (repack: no decompression and compression again; zstd was a third of a repack)."""
        self._ensure_loaded()
        blob, _ = self._read_blob(digest, loc)  # IntegrityError or ObjectNotFound otherwise
        self._append([(digest, (blob,), len(blob), loc.size)], True)

    def put_blob(self, digest: str, blob: bytes, size: int) -> ChunkRef:
        """Store an already encoded and verified blob of chunk ``digest`` (plaintext
        ``size`` bytes) unless the chunk is stored (the migration copies blobs verbatim)."""
        self._ensure_loaded()
        loc = self._usable(digest)
        if loc is not None:
            return ChunkRef(digest, size, loc.length)
        self._append([(digest, (blob,), len(blob), size)], False)
        return ChunkRef(digest, size, len(blob))

    def _append(self, blobs: _Pending, force: bool) -> None:
        full: list[_Pending] = []
        with self._lock:
            for item in blobs:
                digest, stored = item[0], item[2]
                if not force and digest in self._pending:
                    continue  # another thread buffered it a moment ago
                self._pending[digest] = stored
                self._buffer.append(item)
                self._buffer_bytes += stored
                if self._buffer_bytes >= self.pack_size or len(self._buffer) >= MAX_PACK_BLOBS:
                    full.append(self._buffer)
                    self._buffer, self._buffer_bytes = [], 0
                    self._busy += 1
        for n, pack in enumerate(full):
            try:
                with self._uploads:
                    self._write_pack(pack)
            except BaseException:
                # the packs not written yet were counted in ``_busy``: uncount them, or the
                # next ``flush`` of this store waits for ever
                with self._lock:
                    for rest in full[n + 1 :]:
                        for item in rest:
                            self._pending.pop(item[0], None)
                        self._busy -= 1
                    self._cond.notify_all()
                raise

    def abandon_buffer(self) -> int:
        """Drop the blobs buffered for the next pack (after a failed backup); return how
        many. Blobs already in written packs stay (indexed at the next :meth:`flush`)."""
        with self._lock:
            dropped, self._buffer, self._buffer_bytes = self._buffer, [], 0
            for item in dropped:
                self._pending.pop(item[0], None)
        return len(dropped)

    def _read_ok(self, digest: str, loc: Location) -> bool:
        try:
            self._read_at(digest, loc)
            return True
        except (IntegrityError, ObjectNotFound):
            return False

    def _write_pack(self, blobs: _Pending) -> None:
        """Write one pack (``_busy`` already counts it) and index its blobs in memory."""
        pack_id = uuid.uuid4().hex
        parts: list[Buffer] = []
        entries: list[tuple[str, Location]] = []
        offset = 0
        for digest, blob_parts, stored, size in blobs:
            parts.extend(blob_parts)
            entries.append((digest, Location(pack_id, offset, stored, size)))
            offset += stored
        parts.append(pack_trailer([(d, loc.offset, loc.length, loc.size) for d, loc in entries]))
        try:
            self._backend.put_parts(keys.pack_key(pack_id), parts)
        except BaseException:
            with self._lock:
                for item in blobs:
                    self._pending.pop(item[0], None)
                self._busy -= 1
                self._cond.notify_all()
            raise
        self.index.add_many(entries, prefer=True)
        index_now: PackEntries = {}
        with self._lock:
            for item in blobs:
                self._pending.pop(item[0], None)
            self._unindexed[pack_id] = entries
            self._unindexed_count += len(entries)
            if self._unindexed_count >= INDEX_BATCH:  # a large backup: index as it goes
                index_now, self._unindexed, self._unindexed_count = self._unindexed, {}, 0
            else:
                self._busy -= 1
                self._cond.notify_all()
        if index_now:
            self._write_index(index_now)  # ends this pack's ``_busy`` count

    def _write_index(self, packs: PackEntries) -> None:
        """Write an index object for ``packs`` (``_busy`` already counts it)."""
        try:
            key = write_index_object(self._backend, packs)
            self.index.mark_read(key, packs)
        except BaseException:
            with self._lock:
                self._unindexed.update(packs)
                self._unindexed_count += sum(len(e) for e in packs.values())
            raise
        finally:
            with self._lock:
                self._busy -= 1
                self._cond.notify_all()

    def flush(self) -> None:
        """Write the partial pack and an index object for every pack written so far, wait
        for other threads' packs and indexes, then ``sync``: every chunk :meth:`put_chunk`
        returned before this call is durable and indexed in the store on return."""
        with self._lock:
            blobs, self._buffer, self._buffer_bytes = self._buffer, [], 0
            if blobs:
                self._busy += 1
        if blobs:
            self._write_pack(blobs)
        with self._lock:
            while self._busy:
                self._cond.wait()
            packs, self._unindexed, self._unindexed_count = self._unindexed, {}, 0
            if packs:
                self._busy += 1
        if packs:
            self._write_index(packs)
        self._backend.sync()

    # --- reading ------------------------------------------------------------------------

    def _read_at(self, digest: str, loc: Location) -> bytes:
        return self._read_blob(digest, loc)[1]

    def _read_blob(self, digest: str, loc: Location) -> tuple[bytes, bytes]:
        """The blob at ``loc`` and its verified plaintext."""
        blob = self._backend.get_range(keys.pack_key(loc.pack), loc.offset, loc.length)
        if len(blob) != loc.length:
            raise IntegrityError(f"chunk {digest}: pack {loc.pack} is truncated")
        data = self.codec.decode(digest, blob)
        if len(data) != loc.size:
            raise IntegrityError(f"chunk {digest}: {len(data)} bytes, the index says {loc.size}")
        return blob, data

    def get_chunk(self, digest: str) -> bytes:
        """The verified plaintext of chunk ``digest``, from any of its locations.

        ChunkNotFound if no stored copy exists; IntegrityError (naming the digest) if every
        copy found is damaged.
        """
        check_digest(digest)
        self._ensure_loaded()
        damage: IntegrityError | None = None
        for attempt in range(2):
            for loc in self.index.locations(digest):
                try:
                    return self._read_at(digest, loc)
                except ObjectNotFound:
                    continue
                except IntegrityError as exc:
                    damage = exc
            if attempt == 0:
                self.index.refresh(self._backend)  # a pack was collected or repacked
        if damage is not None:
            raise damage
        raise ChunkNotFound(f"chunk {digest} is not in the store")

    def plan_reads(self, digests: Iterable[str], span: int) -> list[list[str]]:
        """``digests`` grouped into reads: blobs of one pack whose stored bytes lie within
        ``span`` bytes of each other form one group (one ranged read, see
        :meth:`iter_group`); digests without a known copy form groups of their own."""
        self._ensure_loaded()
        by_pack: dict[str, list[tuple[int, str]]] = {}
        groups: list[list[str]] = []
        for digest in dict.fromkeys(digests):
            loc = self._usable(digest)
            if loc is None:
                groups.append([digest])
            else:
                by_pack.setdefault(loc.pack, []).append((loc.offset, digest))
        for entries in by_pack.values():
            entries.sort()
            group: list[str] = []
            first = 0
            for offset, digest in entries:
                if group and offset - first >= span:
                    groups.append(group)
                    group = []
                if not group:
                    first = offset
                group.append(digest)
            groups.append(group)
        return groups

    def iter_group(self, digests: list[str]) -> Iterator[tuple[str, Buffer]]:
        """``(digest, verified plaintext)`` of a group from :meth:`plan_reads`: one ranged
        read of the pack, decoded one blob at a time; a blob that fails (damaged, pack
        gone) is read again with :meth:`get_chunk`, which tries every copy. A raw blob's
        plaintext is a view into the span read (no copy): use it before the next item."""
        locs = [self._usable(d) for d in digests]
        known = [loc for loc in locs if loc is not None]
        span = memoryview(b"")
        start = 0
        if known and len({loc.pack for loc in known}) == 1:
            start = min(loc.offset for loc in known)
            end = max(loc.offset + loc.length for loc in known)
            try:
                span = memoryview(
                    self._backend.get_range(keys.pack_key(known[0].pack), start, end - start)
                )
            except ObjectNotFound:
                span = memoryview(b"")
        for digest, loc in zip(digests, locs, strict=True):
            if loc is not None and span:
                blob = span[loc.offset - start : loc.offset - start + loc.length]
                try:
                    if len(blob) != loc.length:
                        raise IntegrityError(f"chunk {digest}: pack {loc.pack} is truncated")
                    data = self.codec.decode_view(digest, blob)
                    if len(data) == loc.size:
                        yield digest, data
                        continue
                except IntegrityError:
                    pass
            yield digest, self.get_chunk(digest)

    def has_chunk(self, digest: str) -> bool:
        """Whether chunk ``digest`` is indexed (not whether its copy is intact)."""
        self._ensure_loaded()
        return digest in self.index

    def iter_digests(self) -> Iterator[str]:
        """Digests of every indexed chunk, in no order."""
        self._ensure_loaded()
        yield from self.index.digests()

    def missing(self, digests: Iterable[str | bytes]) -> set[str]:
        """The ``digests`` (hex or binary) that fail :meth:`verify`, in hex."""
        return self.verify(digests).missing

    def verify(
        self, digests: Iterable[str | bytes], *, vouched: frozenset[str] | None = None
    ) -> Verified:
        """The verification of rule W2: the ``digests`` (hex, or binary as a chunk table
        holds them; named in hex in the result) without a location in a pack that exists
        and no GC plan condemns. Lists ``gc/`` first, then ``packs/``, then reads new index
        objects — in that order (see the safety argument in docs/design.md).

        ``vouched``: packs in which an earlier verification found every *other* digest of
        the backup (an INCREMENTAL's entries kept from its base). Packs are immutable, so
        while each of them exists and no plan condemns it, those digests pass W2 without
        being looked up one by one; when one does not, ``Verified.vouched`` is False and
        the caller verifies every digest."""
        condemned = condemned_packs(self._backend)
        existing = existing_packs(self._backend)
        self.index.refresh(self._backend)
        self._condemned = condemned
        if vouched is not None and not vouched <= existing - condemned:
            return Verified(set(), frozenset(), vouched=False)
        found_in: set[str] = set(vouched or ())
        missing = self.index.without_usable_copy(
            digests, lambda pack: pack in existing and pack not in condemned, found_in
        )
        return Verified(missing, frozenset(found_in))


class Verified(NamedTuple):
    """The outcome of :meth:`ChunkStore.verify`."""

    missing: set[str]
    """Digests without a usable copy (empty: the backup is whole)."""
    packs: frozenset[str]
    """Packs holding a usable copy of every other digest (for ``vouched`` next time)."""
    vouched: bool = True
    """False when a ``vouched`` pack is gone or condemned: nothing was checked."""
