"""Content-addressed chunk store on top of a :class:`~ocibv.engine.backends.Backend`.

A chunk is named by the BLAKE3-256 digest (lowercase hex) of its plaintext and stored once,
whatever number of backups refer to it, as the object ``chunks/<first 2 hex>/<64 hex>``:

    byte 0     format version, 1
    byte 1     codec: 0 = raw (payload is the plaintext), 1 = zstd (one zstd frame that
               records its content size)
    byte 2...  payload

A chunk is stored raw when zstd does not make it smaller (random or already compressed
data), which also makes restoring it a plain copy. Every read is verified against the name.
An object's timestamp is refreshed ("touched") whenever a backup relies on the chunk; the
garbage collector only deletes chunks untouched for its grace period. See
``docs/design.md`` ("Backup store format").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import blake3
import zstandard

from ocibv.engine.backends.base import Backend
from ocibv.engine.errors import ChunkNotFound, IntegrityError, ObjectNotFound

DEFAULT_CHUNK_SIZE = 256 * 1024
"""Chunk size for new backups; each manifest records its own, so changing this is safe."""

FORMAT_VERSION = 1
CODEC_RAW = 0
CODEC_ZSTD = 1
HEADER_SIZE = 2
CHUNK_PREFIX = "chunks/"
_RAW_HEADER = bytes((FORMAT_VERSION, CODEC_RAW))
_ZSTD_HEADER = bytes((FORMAT_VERSION, CODEC_ZSTD))
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """A stored chunk: its name, plaintext size and size of the stored object."""

    digest: str
    size: int
    stored_size: int


def chunk_digest(data: bytes | bytearray | memoryview) -> str:
    """The name of a chunk holding ``data``: BLAKE3-256, lowercase hex."""
    return blake3.blake3(data).hexdigest()


def chunk_key(digest: str) -> str:
    """Backend key of the chunk named ``digest``; IntegrityError for a malformed name."""
    if len(digest) != 64 or not _HEX.issuperset(digest):
        raise IntegrityError(f"malformed chunk digest {digest!r}")
    return f"{CHUNK_PREFIX}{digest[:2]}/{digest}"


def digest_from_key(key: str) -> str | None:
    """The digest a chunk key names, or None if ``key`` is not a chunk key."""
    digest = key.rpartition("/")[2]
    if len(digest) != 64 or not _HEX.issuperset(digest):
        return None
    return digest if key == f"{CHUNK_PREFIX}{digest[:2]}/{digest}" else None


class ChunkStore:
    """Put and get verified chunks. Thread-safe: call it from as many threads as you like.

    ``level`` is the zstd level for new chunks (1: nearly level 3's ratio at 1.6x the speed
    on mixed data). Reading does not depend on it.
    """

    def __init__(self, backend: Backend, *, level: int = 1) -> None:
        self._backend = backend
        self._level = level
        self._local = threading.local()

    @property
    def backend(self) -> Backend:
        """The backend holding the chunks (and the manifests)."""
        return self._backend

    # zstd contexts are not thread-safe: one compressor and one decompressor per thread.
    def _compressor(self) -> zstandard.ZstdCompressor:
        cctx: zstandard.ZstdCompressor | None = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = zstandard.ZstdCompressor(level=self._level, write_content_size=True)
            self._local.cctx = cctx
        return cctx

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dctx: zstandard.ZstdDecompressor | None = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = zstandard.ZstdDecompressor()
            self._local.dctx = dctx
        return dctx

    def encode_parts(self, data: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """The stored object for plaintext ``data`` as (header, raw or zstd payload)."""
        compressed = self._compressor().compress(data)
        if len(compressed) < len(data):
            return _ZSTD_HEADER, compressed
        return _RAW_HEADER, bytes(data)

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        """The stored object for plaintext ``data`` as one bytes object."""
        return b"".join(self.encode_parts(data))

    def decode(self, digest: str, blob: bytes) -> bytes:
        """Plaintext of the stored object ``blob`` of chunk ``digest``, verified.

        Raises IntegrityError naming ``digest`` when the object is malformed, does not
        decompress, or its plaintext does not hash to ``digest``.
        """
        if len(blob) < HEADER_SIZE or blob[0] != FORMAT_VERSION:
            raise IntegrityError(f"chunk {digest}: unknown or damaged object header")
        codec = blob[1]
        if codec == CODEC_RAW:
            data = blob[HEADER_SIZE:]
        elif codec == CODEC_ZSTD:
            try:
                data = self._decompressor().decompress(memoryview(blob)[HEADER_SIZE:])
            except zstandard.ZstdError as exc:
                raise IntegrityError(f"chunk {digest}: does not decompress ({exc})") from exc
        else:
            raise IntegrityError(f"chunk {digest}: unknown codec {codec}")
        actual = chunk_digest(data)
        if actual != digest:
            raise IntegrityError(f"chunk {digest}: content hashes to {actual}")
        return data

    def put_chunk(
        self,
        data: bytes | bytearray | memoryview,
        *,
        digest: str | None = None,
        verify_existing: bool = False,
    ) -> ChunkRef:
        """Store ``data`` unless a chunk with its digest is already stored; return its ref.

        ``digest``, when given, must be :func:`chunk_digest` of ``data``. An existing chunk
        is touched (its timestamp refreshed: the garbage collector spares it for its grace
        period) and, with ``verify_existing``, read back and verified: a damaged one is
        rewritten from ``data`` (that is how a FULL backup repairs the store). The chunk is
        durable once ``backend.sync()`` returns. ``data`` is not referenced after return.
        """
        if digest is None:
            digest = chunk_digest(data)
        key = chunk_key(digest)
        stored = self._backend.touch(key)
        if stored is not None:
            if not verify_existing:
                return ChunkRef(digest, len(data), stored)
            try:
                self.decode(digest, self._backend.get(key))
                return ChunkRef(digest, len(data), stored)
            except (IntegrityError, ObjectNotFound):
                pass  # damaged (or collected meanwhile): write a good copy below
        parts = self.encode_parts(data)
        self._backend.put_parts(key, parts)
        return ChunkRef(digest, len(data), len(parts[0]) + len(parts[1]))

    def get_chunk(self, digest: str) -> bytes:
        """The verified plaintext of chunk ``digest``.

        Raises ChunkNotFound if it is not stored and IntegrityError (naming the digest) if
        the stored object is damaged.
        """
        key = chunk_key(digest)
        try:
            blob = self._backend.get(key)
        except ObjectNotFound:
            raise ChunkNotFound(f"chunk {digest} is not in the store") from None
        return self.decode(digest, blob)

    def has_chunk(self, digest: str) -> bool:
        """Whether chunk ``digest`` is stored (not whether it is intact)."""
        return self._backend.exists(chunk_key(digest))

    def touch_chunk(self, digest: str) -> int | None:
        """Refresh the chunk's timestamp; its stored size, or None if it is not stored."""
        return self._backend.touch(chunk_key(digest))

    def delete_chunk(self, digest: str) -> None:
        """Remove a chunk (missing is fine). Only garbage collection and scrub call this."""
        self._backend.delete(chunk_key(digest))

    def iter_digests(self) -> Iterator[str]:
        """Digests of every stored chunk, in no order."""
        for key in self._backend.list(CHUNK_PREFIX):
            digest = digest_from_key(key)
            if digest is not None:
                yield digest
