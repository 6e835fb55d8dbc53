"""Shared helpers and fixtures for the backup store tests (imported by the test modules)."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ocibv.engine import keys
from ocibv.engine.backends import Backend, LocalBackend, MemoryBackend
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.live_volume import LiveVolume
from ocibv.engine.volume_files import iter_data_extents

KIB = 1024
MIB = 1024 * KIB


def pack_key_of(store: ChunkStore, digest: str) -> str:
    """Key of the (first) pack holding chunk ``digest``."""
    return keys.pack_key(store.index.locations(digest)[0].pack)


def damage_chunk(store: ChunkStore, digest: str) -> None:
    """Flip one byte in the middle of the chunk's blob, in place."""
    loc = store.index.locations(digest)[0]
    damage(store.backend, keys.pack_key(loc.pack), at=loc.offset + loc.length // 2)


def drop_chunk(store: ChunkStore, digest: str) -> None:
    """Delete the pack holding the chunk (with ``pack_size=1`` that chunk alone)."""
    store.backend.delete(pack_key_of(store, digest))


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def text_bytes(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [b"volume", b"backup", b"chunk", b"store", b"oracle", b"block", b"restore", b"zstd"]
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rng.choices(words, k=12)) + b"\n"
    return bytes(out[:n])


def write_image(path: Path, size: int, regions: list[tuple[int, bytes]]) -> Path:
    """A sparse image of ``size`` bytes holding ``regions`` (offset, data); rest are holes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        for offset, data in regions:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
    return path


def mixed_image(path: Path, *, size: int = 24 * MIB, seed: int = 1) -> Path:
    """Holes, real zero bytes, random and text data, and a partial last block."""
    return write_image(
        path,
        size,
        [
            (1 * MIB, random_bytes(3 * MIB, seed)),
            (5 * MIB, bytes(2 * MIB)),  # zeros written as data: allocated, never stored
            (8 * MIB, text_bytes(3 * MIB, seed)),
            (12 * MIB + 4 * KIB, random_bytes(60 * KIB, seed + 1)),  # inside one chunk
            (size - 5000, random_bytes(5000, seed + 2)),
        ],
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extents(path: Path) -> list[tuple[int, int]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return [(s, s + n) for s, n in iter_data_extents(fd, os.fstat(fd).st_size)]
    finally:
        os.close(fd)


def holes_kept(source: Path, restored: Path) -> bool:
    """Every allocated byte of ``restored`` is allocated in ``source`` too."""
    src = extents(source)
    return all(any(s <= a and b <= e for s, e in src) for a, b in extents(restored))


def age(backend: Backend, key: str, seconds: float) -> None:
    """Move an object's timestamp ``seconds`` into the past."""
    stamp = time.time() - seconds
    if isinstance(backend, MemoryBackend):
        backend.set_mtime(key, stamp)
    else:
        assert isinstance(backend, LocalBackend)
        os.utime(backend.root / key, (stamp, stamp))


def age_all(backend: Backend, prefix: str, seconds: float) -> None:
    for key in list(backend.list(prefix)):
        age(backend, key, seconds)


def damage(backend: Backend, key: str, *, at: int | None = None) -> None:
    """Flip one byte of a stored object, in place (as bit rot would)."""
    data = bytearray(backend.get(key))
    data[len(data) // 2 if at is None else at] ^= 0x5A
    if isinstance(backend, LocalBackend):
        (backend.root / key).write_bytes(bytes(data))
    else:
        assert isinstance(backend, MemoryBackend)
        stamp = backend.stat(key).mtime
        backend.put(key, bytes(data))
        backend.set_mtime(key, stamp)


@contextmanager
def writing_randomly(volume: LiveVolume, size: int) -> Iterator[None]:
    """A writer thread for the length of the block: 8 KiB at random offsets of the first
    ``size`` bytes of ``volume``, and now and then a 1 MiB trim."""
    stop = threading.Event()

    def writer() -> None:
        r = random.Random(1)
        while not stop.is_set():
            volume.write(r.randrange(0, size - 8 * KIB), r.randbytes(8 * KIB))
            if r.random() < 0.1:
                volume.trim(r.randrange(0, size - MIB), MIB)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
