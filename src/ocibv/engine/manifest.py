"""Manifests: what a backup is made of, stored in the backup store so it describes itself.

A volume backup's :class:`Manifest` lists, for every chunk of the volume that is not all
zeros, its index and the chunk that holds it; absent indices restore as zeros (holes). Every
manifest is complete on its own: FULL and INCREMENTAL differ in what was read, not in what a
restore needs.

Stored as ``manifests/<backup_id>.json``, the bytes
``{"checksum":"<64 hex>","manifest":BODY}`` where BODY is a JSON object and the checksum
is BLAKE3-256 of exactly the BODY bytes. See ``docs/design.md``.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any, NamedTuple

import blake3
import numpy as np

from ocibv.engine import keys
from ocibv.engine.backends.base import Backend
from ocibv.engine.chunk_table import (
    _RECORD,
    SPOOL_BYTES,
    ChunkEntry,
    ChunkList,
    ChunkTable,
    Records,
    distinct_stored_bytes,
    entries_json,
    record_blocks,
)
from ocibv.engine.errors import BackendError, IntegrityError, ObjectNotFound
from ocibv.engine.manifest_reuse import BaseBody

log = logging.getLogger("ocibv.engine.manifest")

MANIFEST_FORMAT = 1
MANIFEST_PREFIX = keys.MANIFEST_PREFIX
KIND_VOLUME = "volume_backup"


class BackupType(StrEnum):
    """What a backup read: every allocated chunk (FULL) or what changed (INCREMENTAL). One
    form from the API request to the manifest; a restore needs the same either way."""

    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"


FULL = BackupType.FULL
INCREMENTAL = BackupType.INCREMENTAL

_ID_RE = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,254}")
_HEAD = b'{"checksum":"'
_MID = b'","manifest":'
_HEAD_LEN = len(_HEAD) + 64 + len(_MID)


@dataclass
class Manifest:
    """One volume backup. ``chunks`` is sorted by index and holds non-zero chunks only: a
    list, or (when written by a backup or read from the store) a :class:`ChunkTable`."""

    backup_id: str
    volume_id: str
    volume_size: int
    chunk_size: int
    created_at: str
    type: BackupType
    chunks: ChunkList = field(default_factory=list)
    group_backup_id: str | None = None
    format: int = MANIFEST_FORMAT
    compact: bool = field(default=False, compare=False, repr=False)
    """Not stored: the stored body is known to be laid out as ocibv writes it (this process
    saved it, or read it with the streaming reader) — an INCREMENTAL may copy its text."""
    verified_packs: frozenset[str] | None = field(default=None, compare=False, repr=False)
    """Not stored: when this process verified the backup (rule W2), packs holding a usable
    copy of each of its chunks — what lets an INCREMENTAL built on it verify the entries it
    keeps pack by pack instead of chunk by chunk (``ChunkStore.verify``)."""

    def digests(self) -> set[str]:
        """The distinct chunks this backup needs."""
        return {entry.digest for entry in self.chunks}

    @property
    def chunk_count(self) -> int:
        """Number of chunk slots of the volume (stored or zero)."""
        return -(-self.volume_size // self.chunk_size)

    @property
    def data_bytes(self) -> int:
        """Plaintext bytes of the non-zero chunks (what a restore writes)."""
        return sum(entry.size for entry in self.chunks)

    @property
    def stored_bytes(self) -> int:
        """Stored bytes of the distinct chunks this backup needs."""
        return distinct_stored_bytes(self.chunks)


def validate_id(backup_id: str) -> str:
    """Return ``backup_id`` if it can name a manifest object, else raise BackendError."""
    if not isinstance(backup_id, str) or not _ID_RE.fullmatch(backup_id):
        raise BackendError(f"invalid backup id {backup_id!r}")
    return backup_id


def manifest_key(backup_id: str) -> str:
    """Store key of a volume backup's manifest."""
    return keys.manifest_key(validate_id(backup_id))


def _seal_checksum(head: bytes, what: str) -> str:
    """The checksum a document starting with ``head`` (at least ``_HEAD_LEN`` bytes) states
    for its BODY; IntegrityError if it does not start as a manifest document does."""
    if not head.startswith(_HEAD) or head[len(_HEAD) + 64 : _HEAD_LEN] != _MID:
        raise IntegrityError(f"{what}: not a manifest document")
    return head[len(_HEAD) : len(_HEAD) + 64].decode("ascii", "replace")


def _unseal(blob: bytes, what: str) -> dict[str, Any]:
    if len(blob) < _HEAD_LEN + 2 or not blob.endswith(b"}"):
        raise IntegrityError(f"{what}: not a manifest document")
    expected = _seal_checksum(blob, what)
    body = blob[_HEAD_LEN:-1]
    if blake3.blake3(body).hexdigest() != expected:
        raise IntegrityError(f"{what}: checksum mismatch")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise IntegrityError(f"{what}: invalid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise IntegrityError(f"{what}: unsupported manifest format")
    return doc


def _header(manifest: Manifest) -> dict[str, Any]:
    return {
        "format": manifest.format,
        "kind": KIND_VOLUME,
        "backup_id": manifest.backup_id,
        "volume_id": manifest.volume_id,
        "volume_size": manifest.volume_size,
        "chunk_size": manifest.chunk_size,
        "created_at": manifest.created_at,
        "type": manifest.type,
        "group_backup_id": manifest.group_backup_id,
    }


_CHUNKS_KEY = b',"chunks":['


class Reuse(NamedTuple):
    """How a manifest's entries follow from ``base``'s, in order: ``(first, stop)`` is a run
    of ``base``'s entries, byte for byte; an int is that many entries of its own."""

    base: Manifest
    plan: list[tuple[int, int] | int]


def _body_pieces(
    manifest: Manifest, what: str, reused: tuple[BaseBody, Reuse] | None = None
) -> Iterator[bytes]:
    """The BODY bytes of ``manifest``, piece by piece, exactly as ``json.dumps`` with
    compact separators writes it (``chunks`` last), checking the entries as they go —
    copying the text of the runs ``reused`` names from its base's stored body."""
    head = json.dumps(_header(manifest), separators=(",", ":"), ensure_ascii=True)
    yield head.encode("ascii")[:-1] + _CHUNKS_KEY
    if reused is None:
        yield from _entry_text(_checked(manifest, what))
    else:
        for _block in _checked(manifest, what):  # every entry, before any is copied
            pass
        body, reuse = reused
        table = manifest.chunks
        assert isinstance(table, ChunkTable)
        position = 0
        for n, segment in enumerate(reuse.plan):
            if n:
                yield b","
            if isinstance(segment, int):
                yield from _entry_text(table.blocks(first=position, stop=position + segment))
                position += segment
            else:
                yield from body.text(*segment)
                position += segment[1] - segment[0]
        if position != len(table):
            raise ValueError(f"{what}: the reuse plan covers {position} of {len(table)} entries")
        body.finish()  # the base's checksum, over every byte copied
    yield b"]}"


def _entry_text(blocks: Iterable[Records]) -> Iterator[bytes]:
    """The entries of ``blocks`` as JSON, separated by commas."""
    first = True
    for block in blocks:
        text = entries_json(block)  # each entry after a comma
        yield text[1:] if first else text
        first = False


def encode_manifest(manifest: Manifest) -> bytes:
    """The stored bytes of ``manifest``."""
    body = b"".join(_body_pieces(manifest, f"manifest {manifest.backup_id}"))
    return _HEAD + blake3.blake3(body).hexdigest().encode("ascii") + _MID + body + b"}"


def _spool_manifest(
    manifest: Manifest, reused: tuple[BaseBody, Reuse] | None = None
) -> tuple[IO[bytes], int]:
    """The stored bytes of ``manifest`` in a temporary file (in memory while small), written
    entry batch by entry batch: the checksum goes in front once the body is hashed."""
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 * SPOOL_BYTES)  # noqa: SIM115
    try:
        out.write(bytes(_HEAD_LEN))
        hasher = blake3.blake3()
        for piece in _body_pieces(manifest, f"manifest {manifest.backup_id}", reused):
            hasher.update(piece)
            out.write(piece)
        out.write(b"}")
        size = out.tell()
        out.seek(0)
        out.write(_HEAD + hasher.hexdigest().encode("ascii") + _MID)
        return out, size
    except BaseException:
        out.close()
        raise


def _base_body(backend: Backend, base: Manifest) -> BaseBody:
    """The stored body of ``base`` (ObjectNotFound, IntegrityError if it is not sound)."""
    key = manifest_key(base.backup_id)
    what = f"manifest {base.backup_id}"
    size = backend.size(key)
    checksum = _seal_checksum(backend.get_range(key, 0, _HEAD_LEN), what)

    def read(offset: int, length: int) -> bytes:
        return backend.get_range(key, offset, length)

    return BaseBody(read, size, _HEAD_LEN, checksum, len(base.chunks), _CHUNKS_KEY, what)


def decode_manifest(blob: bytes, *, what: str = "manifest") -> Manifest:
    """Parse and check stored manifest bytes; raise IntegrityError if they are not sound."""
    found = _stream_decode(lambda offset, n: blob[offset : offset + n], len(blob), what)
    return found if found is not None else _decode_whole(blob, what)


def _manifest_of(head: dict[str, Any], chunks: ChunkList) -> Manifest:
    """A manifest from its stored header fields (KeyError, TypeError or ValueError when
    one is missing or malformed)."""
    return Manifest(
        backup_id=str(head["backup_id"]),
        volume_id=str(head["volume_id"]),
        volume_size=int(head["volume_size"]),
        chunk_size=int(head["chunk_size"]),
        created_at=str(head["created_at"]),
        type=BackupType(head["type"]),
        chunks=chunks,
        group_backup_id=head["group_backup_id"],
    )


def _decode_whole(blob: bytes, what: str) -> Manifest:
    """Any JSON layout (the streaming reader takes only the one ocibv writes)."""
    doc = _unseal(blob, what)
    try:
        if doc["kind"] != KIND_VOLUME:
            raise ValueError(f"kind {doc['kind']!r}")
        manifest = _manifest_of(
            doc, [ChunkEntry(int(i), str(d), int(s), int(t)) for i, d, s, t in doc["chunks"]]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{what}: malformed ({exc})") from exc
    check_manifest(manifest, what=what)
    manifest.chunks = ChunkTable(manifest.chunks)
    return manifest


STREAM_WINDOW = 1 << 20
"""Bytes of a stored manifest read (and held) at once."""
_ENTRY = re.compile(rb'\[(\d{1,19}),"([0-9a-f]{64})",(\d{1,19}),(\d{1,19})\]')
_MAX_HEADER = 1 << 16


def _stream_decode(
    read: Callable[[int, int], bytes], size: int, what: str
) -> Manifest | None:
    """Read a manifest ``STREAM_WINDOW`` bytes at a time into a :class:`ChunkTable`,
    checking it as :func:`decode_manifest` does. None when the BODY is not laid out the way
    ocibv writes it (``json.dumps`` with compact separators, ``chunks`` last): the caller
    then parses it whole."""
    if size < _HEAD_LEN + 2:
        raise IntegrityError(f"{what}: not a manifest document")
    first = read(0, min(size, STREAM_WINDOW))
    expected = _seal_checksum(first, what)
    body_end = size - 1  # the document's final "}"
    hasher = blake3.blake3()
    state = {"next": len(first)}
    buf = first[_HEAD_LEN:body_end]
    hasher.update(buf)
    last_byte = first[-1:] if len(first) == size else b""

    def more() -> bytes:
        nonlocal last_byte
        start = state["next"]
        if start >= size:
            return b""
        data = read(start, min(STREAM_WINDOW, size - start))
        if not data:
            raise IntegrityError(f"{what}: shorter than its listed size")
        state["next"] = start + len(data)
        if state["next"] >= size:
            last_byte = data[-1:]
        piece = data[: max(0, body_end - start)]
        hasher.update(piece)
        return piece

    idx = buf.find(_CHUNKS_KEY)
    while idx < 0 and len(buf) < _MAX_HEADER:
        piece = more()
        if not piece:
            break
        buf += piece
        idx = buf.find(_CHUNKS_KEY)
    if idx < 0:
        return None
    try:
        head = json.loads(buf[:idx] + b"}")
        if not isinstance(head, dict) or "chunks" in head:
            return None
        if head.get("format") != MANIFEST_FORMAT:
            raise IntegrityError(f"{what}: unsupported manifest format")
        if head["kind"] != KIND_VOLUME:
            raise IntegrityError(f"{what}: malformed (kind {head['kind']!r})")
        manifest = _manifest_of(head, ChunkTable())
    except (KeyError, TypeError, ValueError):
        return None
    try:
        chunk_size, volume_size = manifest.chunk_size, manifest.volume_size
        if chunk_size <= 0 or volume_size < 0:
            raise IntegrityError(f"{what}: bad chunk or volume size")
        table = manifest.chunks
        assert isinstance(table, ChunkTable)
        pack = _RECORD.pack
        unhex = binascii.unhexlify
        match = _ENTRY.match
        records: list[bytes] = []
        previous = -1
        pos = idx + len(_CHUNKS_KEY)
        closed = False
        while True:
            m = match(buf, pos)
            if m is None or m.end() >= len(buf):
                piece = more()
                if piece:
                    table.extend_records(b"".join(records), len(records))
                    records = []
                    buf = buf[pos:] + piece
                    pos = 0
                    continue
                if m is None:
                    if not records and not len(table) and buf[pos : pos + 1] == b"]":
                        pos += 1
                        closed = True
                    break
            index, size_, stored = int(m[1]), int(m[3]), int(m[4])
            if index <= previous:
                raise IntegrityError(f"{what}: chunk indices not strictly increasing")
            start = index * chunk_size
            if start >= volume_size:
                raise IntegrityError(f"{what}: chunk {index} beyond the volume")
            if size_ != min(chunk_size, volume_size - start):
                raise IntegrityError(f"{what}: chunk {index} has size {size_}")
            records.append(pack(index, unhex(m[2]), size_, stored))
            previous = index
            pos = m.end()
            sep = buf[pos : pos + 1]
            pos += 1
            if sep == b"]":
                closed = True
                break
            if sep != b",":
                break
        table.extend_records(b"".join(records), len(records))
    except IntegrityError:
        while more():  # damage shows as a checksum mismatch first
            pass
        if hasher.hexdigest() != expected:
            raise IntegrityError(f"{what}: checksum mismatch") from None
        raise
    while True:  # the rest must be the BODY's closing brace
        piece = more()
        if not piece:
            break
        buf += piece
    if not closed or buf[pos:] != b"}" or last_byte != b"}":
        if hasher.hexdigest() != expected:
            raise IntegrityError(f"{what}: checksum mismatch")
        table.close()
        return None
    if hasher.hexdigest() != expected:
        raise IntegrityError(f"{what}: checksum mismatch")
    manifest.compact = True
    return manifest


def _checked(manifest: Manifest, what: str) -> Iterator[Records]:
    """The entries of ``manifest`` as blocks of records; IntegrityError at the first that
    is out of order, out of range, sized unlike its slot or with a malformed digest (a
    chunk table's binary digests are well formed)."""
    chunk_size, volume_size = manifest.chunk_size, manifest.volume_size
    if chunk_size <= 0 or volume_size < 0:
        raise IntegrityError(f"{what}: bad chunk or volume size")
    slots = -(-volume_size // chunk_size)
    last_size = volume_size - (slots - 1) * chunk_size
    chunks = manifest.chunks
    if not isinstance(chunks, ChunkTable):
        for entry in chunks:
            if not keys.is_hex(entry.digest, 64):
                raise IntegrityError(f"{what}: chunk {entry.chunk_index} has a malformed digest")
    previous = -1
    for block in record_blocks(chunks):
        index, size = block["index"], block["size"]
        unordered = np.empty(len(block), dtype=np.bool_)
        unordered[0] = int(index[0]) <= previous
        np.less_equal(index[1:], index[:-1], out=unordered[1:])
        beyond = index >= slots
        missized = size != np.where(index == slots - 1, last_size, chunk_size)
        bad = unordered | beyond | missized
        if bad.any():
            at = int(np.argmax(bad))
            chunk = int(index[at])
            if unordered[at]:
                raise IntegrityError(f"{what}: chunk indices not strictly increasing")
            if beyond[at]:
                raise IntegrityError(f"{what}: chunk {chunk} beyond the volume")
            raise IntegrityError(f"{what}: chunk {chunk} has size {int(size[at])}")
        previous = int(index[-1])
        yield block


def check_manifest(manifest: Manifest, *, what: str = "manifest") -> None:
    """Raise IntegrityError unless entries are sorted, in range and sized like their slot."""
    for _entry in _checked(manifest, what):
        pass


def _ids(backend: Backend, prefix: str) -> list[str]:
    ids = []
    for key in backend.list(prefix):
        name = key[len(prefix) :]
        if name.endswith(".json") and "/" not in name:
            ids.append(name[: -len(".json")])
    return sorted(ids)


def save_manifest(backend: Backend, manifest: Manifest, reuse: Reuse | None = None) -> None:
    """Store ``manifest`` (replacing one with the same id); durable on return. With
    ``reuse``, the text of the entries it shares with its base is copied from the base's
    stored manifest (when that reads back sound; else every entry is encoded).

    Callers save a manifest last, after every chunk it names is durable (``backend.sync()``).
    """
    key = manifest_key(manifest.backup_id)
    spool = None
    if reuse is not None and reuse.base.compact and isinstance(manifest.chunks, ChunkTable):
        try:
            spool, size = _spool_manifest(manifest, (_base_body(backend, reuse.base), reuse))
        except (ObjectNotFound, IntegrityError) as exc:  # e.g. the base was just deleted
            log.info("manifest %s: base text not reused (%s)", manifest.backup_id, exc)
    if spool is None:
        spool, size = _spool_manifest(manifest)  # checks every entry on the way
    try:
        backend.put_file(key, spool, size)
    finally:
        spool.close()
    backend.sync()
    manifest.compact = True


def load_manifest(backend: Backend, backup_id: str) -> Manifest:
    """The manifest of ``backup_id``; ObjectNotFound if there is none, IntegrityError if damaged."""
    key = manifest_key(backup_id)
    what = f"manifest {backup_id}"
    size = backend.size(key)
    if size <= STREAM_WINDOW:
        return decode_manifest(backend.get(key), what=what)
    found = _stream_decode(lambda offset, n: backend.get_range(key, offset, n), size, what)
    return found if found is not None else _decode_whole(backend.get(key), what)


def list_manifests(backend: Backend) -> list[str]:
    """Backup ids of every stored volume backup manifest, sorted."""
    return _ids(backend, MANIFEST_PREFIX)


def iter_manifests(backend: Backend, backup_ids: Iterable[str] | None = None) -> Iterator[Manifest]:
    """Load the given manifests (default: all); ones deleted meanwhile are skipped."""
    for backup_id in list_manifests(backend) if backup_ids is None else backup_ids:
        try:
            yield load_manifest(backend, backup_id)
        except ObjectNotFound:
            continue


def delete_manifest(backend: Backend, backup_id: str) -> None:
    """Remove a backup's manifest (missing is fine); durable on return. Chunks stay for GC."""
    backend.delete(manifest_key(backup_id))
    backend.sync()


