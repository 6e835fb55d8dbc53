"""Chunk store: content addressing, deduplication, verification on every read, repair."""

from __future__ import annotations

import threading

import pytest

from ocibv.engine.backends import Backend
from ocibv.engine.chunk_store import (
    CODEC_RAW,
    CODEC_ZSTD,
    FORMAT_VERSION,
    ChunkStore,
    chunk_digest,
    chunk_key,
)
from ocibv.engine.errors import ChunkNotFound, IntegrityError
from tests.engine.store_helpers import damage, random_bytes, text_bytes


def test_roundtrip_raw_and_compressed(store: ChunkStore) -> None:
    noise, text = random_bytes(256 * 1024, 1), text_bytes(256 * 1024, 2)
    r_noise, r_text = store.put_chunk(noise), store.put_chunk(text)
    assert r_noise.digest == chunk_digest(noise) and r_noise.size == len(noise)
    assert r_noise.stored_size == len(noise) + 2  # incompressible: stored raw
    assert r_text.stored_size < len(text) // 2  # compressible: zstd
    assert store.get_chunk(r_noise.digest) == noise
    assert store.get_chunk(r_text.digest) == text
    raw = store.backend.get(chunk_key(r_noise.digest))
    packed = store.backend.get(chunk_key(r_text.digest))
    assert raw[:2] == bytes((FORMAT_VERSION, CODEC_RAW)) and raw[2:] == noise
    assert packed[:2] == bytes((FORMAT_VERSION, CODEC_ZSTD))


def test_identical_chunks_are_stored_once(store: ChunkStore) -> None:
    data = text_bytes(100_000, 3)
    first = store.put_chunk(data)
    second = store.put_chunk(bytearray(data))  # a reused buffer is fine too
    assert first == second
    assert list(store.iter_digests()) == [first.digest]
    assert len(list(store.backend.list("chunks/"))) == 1


def test_flipped_byte_is_detected_on_read(store: ChunkStore) -> None:
    for data in (random_bytes(64 * 1024, 4), text_bytes(64 * 1024, 5)):
        ref = store.put_chunk(data)
        damage(store.backend, chunk_key(ref.digest))
        with pytest.raises(IntegrityError, match=ref.digest):
            store.get_chunk(ref.digest)


def test_damaged_header_and_truncation_are_detected(backend: Backend) -> None:
    store = ChunkStore(backend)
    ref = store.put_chunk(text_bytes(50_000, 6))
    key = chunk_key(ref.digest)
    blob = backend.get(key)
    for bad in (b"", b"\x09" + blob[1:], blob[:1] + b"\x07" + blob[2:], blob[: len(blob) // 2]):
        backend.put(key, bad)
        with pytest.raises(IntegrityError, match=ref.digest):
            store.get_chunk(ref.digest)


def test_missing_chunk_and_malformed_digest(store: ChunkStore) -> None:
    with pytest.raises(ChunkNotFound):
        store.get_chunk(chunk_digest(b"never stored"))
    with pytest.raises(IntegrityError):
        store.get_chunk("../../etc/passwd")


def test_verify_existing_repairs_a_damaged_chunk(store: ChunkStore) -> None:
    data = text_bytes(80_000, 7)
    ref = store.put_chunk(data)
    damage(store.backend, chunk_key(ref.digest))
    store.put_chunk(data)  # an INCREMENTAL-style put trusts what is there
    with pytest.raises(IntegrityError):
        store.get_chunk(ref.digest)
    assert store.put_chunk(data, verify_existing=True) == ref  # a FULL-style put repairs
    assert store.get_chunk(ref.digest) == data


def test_verify_existing_restores_a_deleted_chunk(store: ChunkStore) -> None:
    data = random_bytes(10_000, 8)
    ref = store.put_chunk(data)
    store.delete_chunk(ref.digest)
    assert not store.has_chunk(ref.digest)
    store.put_chunk(data, verify_existing=True)
    assert store.get_chunk(ref.digest) == data


def test_many_threads_share_one_store(store: ChunkStore) -> None:
    datas = [text_bytes(40_000, 100 + n) for n in range(32)]
    errors: list[BaseException] = []

    def work(part: list[bytes]) -> None:
        try:
            for data in part:
                ref = store.put_chunk(data)
                assert store.get_chunk(ref.digest) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(datas[n::4],)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(store.iter_digests()) == sorted(chunk_digest(d) for d in datas)
