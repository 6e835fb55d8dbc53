"""A manifest's chunk entries in compact form, and what is computed over all of them at once.

A :class:`ChunkTable` holds entries as packed 48-byte records (in memory while small, then in
an anonymous temporary file). The whole-table work a backup does — the distinct stored
bytes, the 64-bit digest keys the unique-size tables take, the JSON text of the entries — is
done on blocks of records as numpy arrays, so it costs tens of nanoseconds an entry, not the
microseconds of a Python loop: an INCREMENTAL of a volume of a million chunks pays that per
entry even when only a few changed.
"""

from __future__ import annotations

import binascii
import bisect
import os
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, NamedTuple, overload

import numpy as np
import numpy.typing as npt


class ChunkEntry(NamedTuple):
    """Chunk ``chunk_index`` (from byte ``chunk_index * chunk_size``) holds chunk ``digest``."""

    chunk_index: int
    digest: str
    size: int
    stored_size: int


_RECORD = struct.Struct("<Q32sII")
"""A chunk entry in a :class:`ChunkTable`: index, binary digest, size, stored size."""
RECORD_DTYPE = np.dtype([
    ("index", "<u8"), ("d0", "<u8"), ("d1", "<u8"), ("d2", "<u8"), ("d3", "<u8"),
    ("size", "<u4"), ("stored", "<u4"),
])
"""The same record as a numpy structured type (the digest as four 64-bit words)."""
assert RECORD_DTYPE.itemsize == _RECORD.size
_INDEX = struct.Struct("<Q")
"""The chunk index at the start of a record."""
SPOOL_BYTES = 1 << 20
"""Bytes of entries a :class:`ChunkTable` keeps in memory before it moves to a temp file."""
_READ_RECORDS = 4096
BLOCK_RECORDS = 8192
"""Records read at once for whole-table work (384 KiB; the JSON of a block takes ~6 MiB of
temporary arrays, 65,536 took ~45 MiB)."""

Keys = npt.NDArray[np.uint64]
Sizes = npt.NDArray[np.uint32]
Records = npt.NDArray[np.void]


class ChunkTable(Sequence[ChunkEntry]):
    """The chunk entries of a manifest in compact form: 48 bytes per entry (binary digest)
    in memory up to ``SPOOL_BYTES``, then in an anonymous temporary file — so a manifest of
    a million chunks costs no memory to hold, and a backup or a reader streams through it.
    Append-only; thread-safe."""

    def __init__(self, entries: Iterable[ChunkEntry] = ()) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - lives with the table
        self._count = 0
        self._lock = threading.Lock()
        self._shared = False
        self.extend(entries)

    @classmethod
    def adopt(cls, fd: int, count: int) -> ChunkTable:
        """A read-only table of the ``count`` entries in the file open as ``fd`` (another
        process's table, :meth:`fileno`; taken over: closed with the table). Read with
        ``pread`` only, so the other process's file position is never moved."""
        table = cls()
        table._file = open(fd, "rb", buffering=0)  # noqa: SIM115 - lives with the table
        table._count, table._shared = count, True
        return table

    def fileno(self) -> int:
        """The descriptor of the file holding the entries (moved out of memory first)."""
        return self._file.fileno()

    def append(self, entry: ChunkEntry) -> None:
        self.extend((entry,))

    def extend(self, entries: Iterable[ChunkEntry]) -> None:
        pack = _RECORD.pack
        out = []
        for index, digest, size, stored in entries:
            out.append(pack(index, bytes.fromhex(digest), size, stored))
        self.extend_records(b"".join(out), len(out))

    def extend_records(self, records: bytes, count: int) -> None:
        """Append ``count`` packed records."""
        if not count:
            return
        if self._shared:
            raise ValueError("an adopted chunk table is read-only")
        with self._lock:
            self._file.seek(self._count * _RECORD.size)
            self._file.write(records)
            self._count += count

    def __len__(self) -> int:
        return self._count

    def _records(self, first: int, count: int) -> bytes:
        if self._shared:
            return os.pread(self._file.fileno(), count * _RECORD.size, first * _RECORD.size)
        with self._lock:
            self._file.seek(first * _RECORD.size)
            return self._file.read(count * _RECORD.size)

    def records(self, first: int, stop: int) -> bytes:
        """Entries ``first`` up to ``stop`` packed (for :meth:`extend_records`)."""
        return self._records(first, stop - first)

    def index_at(self, position: int) -> int:
        """The chunk index of entry ``position``."""
        return int(_INDEX.unpack_from(self._records(position, 1))[0])

    def position_of(self, chunk_index: int, lo: int = 0) -> int:
        """The first position at or after ``lo`` whose entry's chunk index is at least
        ``chunk_index`` (``len`` if none). Entries are sorted by distinct chunk indices, so
        the answer is within ``chunk_index - index_at(lo)`` of ``lo``: a search near ``lo``
        reads a few records, never the table."""
        if lo >= self._count:
            return self._count
        first = self.index_at(lo)
        if first >= chunk_index:
            return lo
        hi = min(self._count, lo + chunk_index - first)  # index_at(hi) >= chunk_index
        lo += 1
        while hi - lo > _READ_RECORDS:  # narrow down a record at a time...
            mid = (lo + hi) // 2
            if self.index_at(mid) < chunk_index:
                lo = mid + 1
            else:
                hi = mid
        # ...then search the few left in one read
        block = np.frombuffer(self._records(lo, hi - lo), dtype=RECORD_DTYPE)
        return lo + int(np.searchsorted(block["index"], chunk_index))

    def rows(self) -> Iterator[tuple[int, bytes, int, int]]:
        """``(index, binary digest, size, stored size)`` of every entry, in order, read a
        block at a time."""
        position = 0
        while position < self._count:
            block = self._records(position, min(_READ_RECORDS, self._count - position))
            yield from _RECORD.iter_unpack(block)
            position += len(block) // _RECORD.size

    def blocks(
        self, records: int = BLOCK_RECORDS, first: int = 0, stop: int | None = None
    ) -> Iterator[Records]:
        """Entries ``first`` up to ``stop`` (default: every entry), in order, as numpy arrays
        of ``RECORD_DTYPE`` of up to ``records`` entries (views of the bytes read: nothing
        is held between blocks)."""
        position, stop = first, self._count if stop is None else min(stop, self._count)
        while position < stop:
            block = self._records(position, min(records, stop - position))
            yield np.frombuffer(block, dtype=RECORD_DTYPE)
            position += len(block) // _RECORD.size

    def __iter__(self) -> Iterator[ChunkEntry]:
        for index, digest, size, stored in self.rows():
            yield ChunkEntry(index, digest.hex(), size, stored)

    def __reduce__(self) -> tuple[Callable[[bytes], ChunkTable], tuple[bytes]]:
        """Pickled as its packed entries (48 bytes each): a backup helper sends a small
        manifest back whole."""
        return _table_of_records, (self._records(0, self._count),)

    @overload
    def __getitem__(self, item: int) -> ChunkEntry: ...

    @overload
    def __getitem__(self, item: slice) -> list[ChunkEntry]: ...

    def __getitem__(self, item: int | slice) -> ChunkEntry | list[ChunkEntry]:
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(self._count))]
        if item < 0:
            item += self._count
        if not 0 <= item < self._count:
            raise IndexError("chunk table index out of range")
        index, digest, size, stored = _RECORD.unpack(self._records(item, 1))
        return ChunkEntry(index, digest.hex(), size, stored)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<ChunkTable of {self._count} entries>"

    def close(self) -> None:
        self._file.close()


ChunkList = list[ChunkEntry] | ChunkTable


def entries_between(chunks: ChunkList, first: int, stop: int) -> dict[int, ChunkEntry]:
    """The entries of ``chunks`` (sorted by chunk index) for chunks ``first`` up to
    ``stop``, by chunk index: a table is read only around them."""
    if isinstance(chunks, ChunkTable):
        lo = chunks.position_of(first)
        hi = chunks.position_of(stop, lo)
        rows = _RECORD.iter_unpack(chunks.records(lo, hi))
        return {index: ChunkEntry(index, digest.hex(), size, stored)
                for index, digest, size, stored in rows}
    lo = bisect.bisect_left(chunks, first, key=lambda entry: entry.chunk_index)
    hi = bisect.bisect_left(chunks, stop, lo, key=lambda entry: entry.chunk_index)
    return {entry.chunk_index: entry for entry in chunks[lo:hi]}


def _table_of_records(records: bytes) -> ChunkTable:
    table = ChunkTable()
    table.extend_records(records, len(records) // _RECORD.size)
    return table


def records_of(entries: Iterable[ChunkEntry]) -> Records:
    """``entries`` as one array of ``RECORD_DTYPE``."""
    table = b"".join(_RECORD.pack(i, bytes.fromhex(d), n, s) for i, d, n, s in entries)
    return np.frombuffer(table, dtype=RECORD_DTYPE)


def record_blocks(chunks: Sequence[ChunkEntry]) -> Iterator[Records]:
    """The entries of ``chunks`` as blocks of ``RECORD_DTYPE`` (a list in one block)."""
    if isinstance(chunks, ChunkTable):
        yield from chunks.blocks()
    elif chunks:
        yield records_of(chunks)


def binary_digests(chunks: Sequence[ChunkEntry]) -> Iterator[bytes]:
    """The binary digest of each entry of ``chunks``, in order (no hex for a table)."""
    if isinstance(chunks, ChunkTable):
        return (digest for _index, digest, _size, _stored in chunks.rows())
    return (bytes.fromhex(e.digest) for e in chunks)


def block_keys(block: Records) -> Keys:
    """The 64-bit key of each record's digest: the XOR of its four 64-bit words."""
    return block["d0"] ^ block["d1"] ^ block["d2"] ^ block["d3"]


def _keys_and_sizes(chunks: Sequence[ChunkEntry]) -> tuple[Keys, Sizes]:
    """Each entry's digest key and stored size, in two arrays (12 bytes an entry)."""
    keys = np.empty(len(chunks), dtype=np.uint64)
    sizes = np.empty(len(chunks), dtype=np.uint32)
    at = 0
    for block in record_blocks(chunks):
        keys[at : at + len(block)] = block_keys(block)
        sizes[at : at + len(block)] = block["stored"]
        at += len(block)
    return keys, sizes


def digest_keys(chunks: Sequence[ChunkEntry]) -> tuple[Keys, Sizes]:
    """Sorted distinct 64-bit keys of the digests of ``chunks`` and each one's stored size
    (one of its entries': the copies of a chunk are alike). Two distinct digests sharing a
    key (odds about n²/2⁶⁵: 3·10⁻⁸ at a million chunks) count as one: callers use this for
    sizes they report, never to decide what is kept."""
    return distinct(*_keys_and_sizes(chunks))


def union(parts: Sequence[tuple[Keys, Sizes]]) -> tuple[Keys, Sizes]:
    """:func:`distinct` of several ``(keys, sizes)`` together."""
    return distinct(np.concatenate([k for k, _ in parts]), np.concatenate([s for _, s in parts]))


def distinct(keys: Keys, sizes: Sizes) -> tuple[Keys, Sizes]:
    """The distinct ``keys``, sorted, each with the size of one of its places in ``sizes``."""
    order = np.argsort(keys)  # np.unique(return_index=True) sorts stably: 4x slower
    ordered = keys[order]
    first = np.empty(len(ordered), dtype=np.bool_)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first], sizes[order[first]]


def distinct_stored_bytes(chunks: Sequence[ChunkEntry]) -> int:
    """Sum of ``stored_size`` over the distinct digests of ``chunks`` (a report: digests
    are told apart by their 64-bit keys, as in :func:`digest_keys`), in ~21 bytes of memory
    an entry while it runs: the sum of all, less the repeats of the few repeated."""
    keys, sizes = _keys_and_sizes(chunks)
    total = int(sizes.sum(dtype=np.int64))
    ordered = np.sort(keys)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return total
    twice = np.isin(keys, repeated)
    _once, each = distinct(keys[twice], sizes[twice])
    return total - int(sizes[twice].sum(dtype=np.int64)) + int(each.sum(dtype=np.int64))


# --- the entries as manifest JSON ---------------------------------------------------------

Text = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]


_POWERS = np.array([10**k for k in range(1, 20)], dtype=np.uint64)


def _decimal_into(values: npt.NDArray[Any], text: Text, used: Mask) -> None:
    """Write ``values`` in ASCII decimal into the columns of ``text``, right-aligned, and
    mark in ``used`` the columns each value takes (JSON allows no leading zeros)."""
    width = text.shape[1]
    kind = np.uint32 if width <= 9 else np.uint64  # 32-bit division is the faster
    powers: npt.NDArray[Any] = np.array([10**k for k in range(width - 1, -1, -1)], dtype=kind)
    wide: npt.NDArray[Any] = values.astype(kind)[:, None]
    text[:] = (wide // powers[None, :]) % 10 + 48
    digits = 1 + np.searchsorted(_POWERS, values, side="right")
    used[:] = np.arange(width)[None, :] >= (width - digits)[:, None]


def _width(values: npt.NDArray[Any]) -> int:
    return len(str(int(values.max())))


_FEW_ROWS = 64


def entries_json(block: Records) -> bytes:
    """``,[index,"digest",size,stored]`` for each record of ``block``, exactly as
    ``json.dumps`` with compact separators writes an entry (each preceded by a comma).
    Built as one byte matrix, a row an entry with each number right-aligned in its column,
    and a mask of the bytes used: the rows' used bytes in order are the text."""
    rows = len(block)
    if rows <= _FEW_ROWS:  # numpy's fixed cost per call (~60 us) is more than these take
        return b"".join(
            b',[%d,"%s",%d,%d]' % (index, digest.hex().encode(), size, stored)
            for index, digest, size, stored in _RECORD.iter_unpack(block.tobytes())
        )
    words = np.stack([block["d0"], block["d1"], block["d2"], block["d3"]], axis=1)
    hex_ = np.frombuffer(binascii.hexlify(words.tobytes()), dtype=np.uint8).reshape(rows, 64)
    layout: list[bytes | str] = [b",[", "index", b',"', "hex", b'",', "size", b",", "stored", b"]"]
    widths = {"index": _width(block["index"]), "hex": 64, "size": _width(block["size"]),
              "stored": _width(block["stored"])}
    total = sum(len(p) if isinstance(p, bytes) else widths[p] for p in layout)
    text = np.empty((rows, total), dtype=np.uint8)
    used = np.ones((rows, total), dtype=np.bool_)
    at = 0
    for part in layout:
        if isinstance(part, bytes):
            text[:, at : at + len(part)] = np.frombuffer(part, dtype=np.uint8)
            at += len(part)
            continue
        width = widths[part]
        if part == "hex":
            text[:, at : at + width] = hex_
        else:
            _decimal_into(block[part], text[:, at : at + width], used[:, at : at + width])
        at += width
    return text[used].tobytes()
