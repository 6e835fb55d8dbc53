"""Sparse-aware reads of volume images."""

from __future__ import annotations

import ctypes
import mmap
import os
import random
from pathlib import Path

from ocibv.engine.volume_files import (
    iter_data_extents,
    read_sparse_many,
    read_within,
)
from tests.engine.store_helpers import KIB, MIB

PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def cached_pages(fd: int, offset: int, length: int) -> int:
    """How many pages of ``[offset, offset+length)`` are in the page cache (``mincore``; a
    ``RWF_NOWAIT`` read cannot tell: a hole reads without I/O, cached or not)."""
    addr = _libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
    assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    try:
        vec = ctypes.create_string_buffer(length // PAGE)
        assert _libc.mincore(addr, length, vec) == 0, ctypes.get_errno()
        return sum(byte & 1 for byte in vec.raw)
    finally:
        _libc.munmap(addr, length)


def _sparse_file(path: Path, size: int, blocks: list[tuple[int, int]]) -> int:
    """A file of ``size`` bytes with random data at each ``(offset, length)``, holes
    elsewhere; an open read-only descriptor."""
    rng = random.Random(7)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in blocks:
            f.seek(offset)
            f.write(rng.randbytes(length))
    return os.open(path, os.O_RDONLY)


def test_read_sparse_returns_what_pread_returns(tmp_path: Path) -> None:
    size = 4 * MIB + 1000  # the end is not block-aligned
    fd = _sparse_file(tmp_path / "img", size,
                      [(0, 4 * KIB), (64 * KIB, 8 * KIB), (1 * MIB, 300 * KIB),
                       (4 * MIB - 4 * KIB, 4 * KIB + 1000)])
    rng = random.Random(1)
    try:
        ranges = [(0, 256 * KIB), (128 * KIB, 256 * KIB), (1 * MIB + 4 * KIB, 64 * KIB),
                  (2 * MIB, 256 * KIB), (4 * MIB - 100 * KIB, 256 * KIB), (size, 4 * KIB),
                  (size + 5, 10)]
        ranges += [(rng.randrange(size), rng.randrange(1, 512 * KIB)) for _ in range(300)]
        extents = list(iter_data_extents(fd, size))
        for offset, length in ranges:
            expected = os.pread(fd, length, offset)
            assert list(read_sparse_many(fd, [(offset, length)])) == [expected], (offset, length)
            if offset + length <= size:  # read_within's images never end mid-read
                assert read_within(fd, length, offset, extents) == expected, (offset, length)
            assert read_within(fd, length, offset, None) == expected
        assert read_within(fd, 4 * KIB, 2 * MIB, []) == bytes(4 * KIB)  # no data anywhere
    finally:
        os.close(fd)


def test_read_sparse_many_returns_what_pread_returns(tmp_path: Path) -> None:
    """Batches of chunk-like ranges: runs of neighbours (one extent scan each, with holes
    inside or none), gaps between runs, and ranges at and past the file's end."""
    chunk = 256 * KIB
    size = 6 * MIB + 1000
    fd = _sparse_file(tmp_path / "img", size,
                      [(0, 1 * MIB), (1 * MIB + 100 * KIB, 4 * KIB), (2 * MIB, 8 * KIB),
                       (3 * MIB - 4 * KIB, 8 * KIB), (6 * MIB - 4 * KIB, 4 * KIB + 1000)])
    rng = random.Random(2)
    try:
        slots = size // chunk + 2  # two slots past the end
        for _ in range(200):
            indices = sorted(rng.sample(range(slots), rng.randint(1, 16)))
            if rng.random() < 0.5:  # a run of neighbours, as a rescan's batch is
                first = rng.randrange(slots)
                indices = list(range(first, min(slots, first + rng.randint(1, 16))))
            ranges = [(i * chunk, chunk) for i in indices]
            got = list(read_sparse_many(fd, ranges))
            assert got == [os.pread(fd, n, offset) for offset, n in ranges], indices
        assert list(read_sparse_many(fd, [])) == []
    finally:
        os.close(fd)


def test_read_sparse_many_reads_each_range_when_it_is_asked_for(tmp_path: Path) -> None:
    """A rescan drops most chunks as soon as it has hashed them: the next chunk is read only
    then, so a batch's chunks are never all held at once (nor read ahead of the caller)."""
    chunk = 256 * KIB
    fd = _sparse_file(tmp_path / "img", 4 * chunk, [(0, 2 * chunk), (3 * chunk, 4 * KIB)])
    writer = os.open(tmp_path / "img", os.O_WRONLY)
    try:
        chunks = read_sparse_many(fd, [(0, chunk), (chunk, chunk), (3 * chunk, chunk)])
        first = next(chunks)
        assert first == os.pread(fd, chunk, 0)
        os.pwrite(writer, b"later" * 1000, chunk)  # written after the first was taken
        os.pwrite(writer, b"later", 3 * chunk + 100)
        assert next(chunks) == os.pread(fd, chunk, chunk)
        assert next(chunks) == os.pread(fd, chunk, 3 * chunk)
        assert next(chunks, None) is None
    finally:
        os.close(writer)
        os.close(fd)


def test_read_sparse_leaves_holes_out_of_the_page_cache(tmp_path: Path) -> None:
    fd = _sparse_file(tmp_path / "img", 8 * MIB, [(0, 64 * KIB), (4 * MIB, 64 * KIB)])
    try:
        written = cached_pages(fd, 0, 8 * MIB)  # the written data, at most
        (data,) = read_sparse_many(fd, [(0, 256 * KIB)])
        assert data[: 64 * KIB] == os.pread(fd, 64 * KIB, 0)
        assert data[64 * KIB :] == bytes(192 * KIB)
        assert cached_pages(fd, 0, 8 * MIB) == written
        many = list(read_sparse_many(fd, [(0, 256 * KIB), (256 * KIB, 256 * KIB)]))
        assert many == [data, bytes(256 * KIB)]
        assert cached_pages(fd, 0, 8 * MIB) == written
        os.pread(fd, 256 * KIB, 4 * MIB)  # a plain read of the same shape caches its hole
        assert cached_pages(fd, 0, 8 * MIB) == written + 192 * KIB // PAGE
    finally:
        os.close(fd)
