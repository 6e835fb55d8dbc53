"""Blobs and packs (docs/design.md, "Chunks and packs").

A blob is one stored chunk: byte 0 the blob version (1), byte 1 the codec (0 raw, 1 zstd),
then the payload. A pack is blobs end to end followed by a JSON trailer listing them, the
trailer's length (4 bytes, little endian) and the magic ``OCIBVPK1``.
"""

from __future__ import annotations

import json
import struct
import threading
from typing import NamedTuple

import blake3
import zstandard

from ocibv.engine.errors import IntegrityError

BLOB_VERSION = 1
CODEC_RAW = 0
CODEC_ZSTD = 1
HEADER_SIZE = 2
RAW_HEADER = bytes((BLOB_VERSION, CODEC_RAW))
ZSTD_HEADER = bytes((BLOB_VERSION, CODEC_ZSTD))
PACK_MAGIC = b"OCIBVPK1"
_TAIL = struct.Struct("<I")
PACK_VERSION = 1
Buffer = bytes | bytearray | memoryview

SAMPLE_SIZE = 4096
SAMPLES = 4
SAMPLE_MIN = 64 * 1024
"""Chunks shorter than this are always compressed (the samples would cover most of them)."""
SAMPLE_KEEP = 0.98
"""A sample "shrinks" when zstd makes it smaller than this fraction of its size."""


class Location(NamedTuple):
    """Where a blob is: pack id, byte offset and length in the pack, plaintext size."""

    pack: str
    offset: int
    length: int
    size: int


def chunk_digest(data: bytes | bytearray | memoryview) -> str:
    """The name of a chunk holding ``data``: BLAKE3-256, lowercase hex."""
    return blake3.blake3(data).hexdigest()


class Codec:
    """Encode and decode blobs; thread-safe (zstd contexts are per thread)."""

    def __init__(self, level: int = 1) -> None:
        self._level = level
        self._local = threading.local()

    def _cctx(self) -> zstandard.ZstdCompressor:
        cctx: zstandard.ZstdCompressor | None = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = zstandard.ZstdCompressor(level=self._level, write_content_size=True)
            self._local.cctx = cctx
        return cctx

    def _dctx(self) -> zstandard.ZstdDecompressor:
        dctx: zstandard.ZstdDecompressor | None = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = zstandard.ZstdDecompressor()
            self._local.dctx = dctx
        return dctx

    def incompressible(self, data: bytes | bytearray | memoryview) -> bool:
        """Whether ``data`` looks incompressible: none of ``SAMPLES`` evenly spaced samples
        of ``SAMPLE_SIZE`` bytes shrinks under zstd. Costs 1/16 of compressing a 256 KiB
        chunk; random (or encrypted, or already compressed) data then skips zstd, which
        spends ~0.3 ms per MiB proving it cannot shrink it (docs/design.md, "Data path and
        throughput")."""
        n = len(data)
        if n < SAMPLE_MIN:
            return False
        view = memoryview(data)
        step = n // SAMPLES
        cctx = self._cctx()
        for i in range(SAMPLES):
            sample = view[i * step : i * step + SAMPLE_SIZE]
            if len(cctx.compress(sample)) < len(sample) * SAMPLE_KEEP:
                return False
        return True

    def encode_parts(self, data: bytes | bytearray | memoryview) -> tuple[bytes, Buffer]:
        """The blob for plaintext ``data`` as two parts to write one after the other: zstd
        when that is smaller, else raw — then the parts are the header and ``data`` itself,
        not a copy of it."""
        if not self.incompressible(data):
            compressed = self._cctx().compress(data)
            if len(compressed) < len(data):
                # joined: an exact-size copy (~1/3 chunk) frees zstd's chunk-size output
                # buffer, which, shrunk in place, fragments the heap (peak RSS +10 MB)
                return b"", ZSTD_HEADER + compressed
        return RAW_HEADER, data

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        """The blob for plaintext ``data``: zstd when that is smaller, else raw."""
        header, payload = self.encode_parts(data)
        return header + bytes(payload)

    def decode_view(self, digest: str, blob: Buffer) -> Buffer:
        """:meth:`decode` without copies: a raw blob's plaintext is a view into ``blob``."""
        if len(blob) < HEADER_SIZE or blob[0] != BLOB_VERSION:
            raise IntegrityError(f"chunk {digest}: unknown or damaged blob header")
        codec = blob[1]
        data: Buffer
        if codec == CODEC_RAW:
            data = memoryview(blob)[HEADER_SIZE:]
        elif codec == CODEC_ZSTD:
            try:
                data = self._dctx().decompress(memoryview(blob)[HEADER_SIZE:])
            except zstandard.ZstdError as exc:
                raise IntegrityError(f"chunk {digest}: does not decompress ({exc})") from exc
        else:
            raise IntegrityError(f"chunk {digest}: unknown codec {codec}")
        actual = chunk_digest(data)
        if actual != digest:
            raise IntegrityError(f"chunk {digest}: content hashes to {actual}")
        return data

    def decode(self, digest: str, blob: bytes) -> bytes:
        """Verified plaintext of ``blob``; IntegrityError naming ``digest`` if it is damaged."""
        data = self.decode_view(digest, blob)
        return data if isinstance(data, bytes) else bytes(data)


def pack_trailer(entries: list[tuple[str, int, int, int]]) -> bytes:
    """Trailer bytes for blobs ``(digest, offset, length, size)``, with length and magic."""
    body = json.dumps(
        {"version": PACK_VERSION, "chunks": [list(e) for e in entries]}, separators=(",", ":")
    ).encode("ascii")
    return body + _TAIL.pack(len(body)) + PACK_MAGIC


def parse_pack(pack_id: str, data: bytes) -> list[tuple[str, Location]]:
    """``(digest, location)`` of the blobs a pack's trailer lists (IntegrityError if the
    pack is malformed)."""
    tail = len(PACK_MAGIC) + _TAIL.size
    if len(data) < tail or not data.endswith(PACK_MAGIC):
        raise IntegrityError(f"pack {pack_id}: no trailer (truncated?)")
    (size,) = _TAIL.unpack_from(data, len(data) - tail)
    start = len(data) - tail - size
    if start < 0:
        raise IntegrityError(f"pack {pack_id}: trailer length out of range")
    try:
        doc = json.loads(data[start : len(data) - tail])
        if doc["version"] != PACK_VERSION:
            raise ValueError(f"version {doc['version']}")
        out = [Location(pack_id, int(o), int(n), int(s)) for _d, o, n, s in doc["chunks"]]
        digests = [str(d) for d, _o, _n, _s in doc["chunks"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"pack {pack_id}: malformed trailer ({exc})") from exc
    if any(loc.offset + loc.length > start for loc in out):
        raise IntegrityError(f"pack {pack_id}: trailer points past the blobs")
    return list(zip(digests, out, strict=True))
