"""Chunk store on packs: content addressing, deduplication, verification, repair, config."""

from __future__ import annotations

import json
import threading

import pytest

from ocibv.engine import keys
from ocibv.engine.backends import Backend, MemoryBackend
from ocibv.engine.chunk_store import ChunkStore, chunk_digest
from ocibv.engine.errors import ChunkNotFound, IntegrityError, StoreFormatError
from ocibv.engine.pack import CODEC_RAW, CODEC_ZSTD, PACK_MAGIC, parse_pack
from tests.engine.store_helpers import damage_chunk, drop_chunk, random_bytes, text_bytes


def test_roundtrip_raw_and_compressed_in_one_pack(backend: Backend) -> None:
    store = ChunkStore(backend)
    noise, text = random_bytes(256 * 1024, 1), text_bytes(256 * 1024, 2)
    r_noise, r_text = store.put_chunk(noise), store.put_chunk(text)
    assert r_noise.digest == chunk_digest(noise) and r_noise.size == len(noise)
    assert r_noise.stored_size == len(noise) + 2  # incompressible: stored raw
    assert r_text.stored_size < len(text) // 2  # compressible: zstd
    store.flush()
    packs = [k for k in backend.list(keys.PACK_PREFIX)]
    assert len(packs) == 1 and len(list(backend.list(keys.INDEX_PREFIX))) == 1
    blob = backend.get(packs[0])
    assert blob.endswith(PACK_MAGIC)
    listed = dict(parse_pack(keys.pack_id_from_key(packs[0]) or "", blob))
    loc = listed[r_noise.digest]
    assert blob[loc.offset : loc.offset + 2] == bytes((1, CODEC_RAW))
    assert blob[listed[r_text.digest].offset + 1] == CODEC_ZSTD
    fresh = ChunkStore(backend)  # another process: reads the index objects
    assert fresh.get_chunk(r_noise.digest) == noise
    assert fresh.get_chunk(r_text.digest) == text


def test_identical_chunks_are_stored_once(store: ChunkStore) -> None:
    data = text_bytes(100_000, 3)
    first = store.put_chunk(data)
    second = store.put_chunk(bytearray(data))  # a reused buffer is fine too
    assert first.digest == second.digest
    store.flush()
    assert list(store.iter_digests()) == [first.digest]
    assert len(list(store.backend.list(keys.PACK_PREFIX))) == 1


def test_flipped_byte_is_detected_on_read(store: ChunkStore) -> None:
    for data in (random_bytes(64 * 1024, 4), text_bytes(64 * 1024, 5)):
        ref = store.put_chunk(data)
        store.flush()
        damage_chunk(store, ref.digest)
        with pytest.raises(IntegrityError, match=ref.digest):
            store.get_chunk(ref.digest)


def test_truncated_pack_and_damaged_index_are_detected(fast_backend: Backend) -> None:
    store = ChunkStore(fast_backend, pack_size=1)
    ref = store.put_chunk(text_bytes(50_000, 6))
    store.flush()
    pack = keys.pack_key(store.index.locations(ref.digest)[0].pack)
    blob = fast_backend.get(pack)
    fast_backend.put(pack, blob[: len(blob) // 3])
    with pytest.raises(IntegrityError, match=ref.digest):
        ChunkStore(fast_backend).get_chunk(ref.digest)
    with pytest.raises(IntegrityError):
        parse_pack("x", blob[: len(blob) // 3])
    (index_key,) = list(fast_backend.list(keys.INDEX_PREFIX))
    fast_backend.put(index_key, b'{"version":1,"packs":[{"id":"nope"')
    reader = ChunkStore(fast_backend)
    with pytest.raises(ChunkNotFound):
        reader.get_chunk(ref.digest)  # an unreadable index is skipped, never trusted
    assert reader.index.damaged == {index_key}


def test_missing_chunk_and_malformed_digest(store: ChunkStore) -> None:
    with pytest.raises(ChunkNotFound):
        store.get_chunk(chunk_digest(b"never stored"))
    with pytest.raises(IntegrityError):
        store.get_chunk("../../etc/passwd")


def test_verify_existing_repairs_a_damaged_chunk(store: ChunkStore) -> None:
    data = text_bytes(80_000, 7)
    ref = store.put_chunk(data)
    store.flush()
    damage_chunk(store, ref.digest)
    store.put_chunk(data)  # an INCREMENTAL-style put trusts what is there
    with pytest.raises(IntegrityError):
        ChunkStore(store.backend).get_chunk(ref.digest)
    store.put_chunk(data, verify_existing=True)  # a FULL-style put writes a good copy
    store.flush()
    assert store.get_chunk(ref.digest) == data
    assert ChunkStore(store.backend).get_chunk(ref.digest) == data  # any good copy serves


def test_missing_finds_dropped_and_condemned_chunks(store: ChunkStore) -> None:
    refs = [store.put_chunk(random_bytes(5000, n)) for n in range(3)]
    store.flush()
    assert store.missing(r.digest for r in refs) == set()
    drop_chunk(store, refs[0].digest)
    plan = {"version": 1, "packs": [store.index.locations(refs[1].digest)[0].pack]}
    store.backend.put(keys.plan_key("0000000000001-abc"), json.dumps(plan).encode())
    assert store.missing(r.digest for r in refs) == {refs[0].digest, refs[1].digest}
    store.put_chunk(random_bytes(5000, 0), force=True)
    store.put_chunk(random_bytes(5000, 1), force=True)
    store.flush()
    assert store.missing(r.digest for r in refs) == set()


def test_config_is_written_once_and_versions_are_checked() -> None:
    backend = MemoryBackend()
    first = ChunkStore(backend).config
    assert ChunkStore(backend).config == first
    assert first["version"] == 1 and first["hash"] == "blake3-256"
    backend.put(keys.CONFIG, json.dumps(dict(first, version=2)).encode())
    with pytest.raises(StoreFormatError, match="version 2"):
        ChunkStore(backend)
    legacy = MemoryBackend()
    legacy.put(keys.legacy_chunk_key("ab" * 32), b"\x01\x00x")
    with pytest.raises(StoreFormatError, match="ocibv store migrate"):
        ChunkStore(legacy)


def test_many_threads_share_one_store(fast_backend: Backend) -> None:
    store = ChunkStore(fast_backend, pack_size=100_000)
    datas = [text_bytes(40_000, 100 + n) for n in range(32)]
    errors: list[BaseException] = []

    def work(part: list[bytes]) -> None:
        try:
            for data in part:
                store.put_chunk(data)
            store.flush()
            for data in part:
                assert store.get_chunk(chunk_digest(data)) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(datas[n::4],)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(store.iter_digests()) == sorted(chunk_digest(d) for d in datas)
    assert ChunkStore(fast_backend).missing(chunk_digest(d) for d in datas) == set()


def test_a_failed_backup_leaves_its_buffer_unwritten(fast_backend: Backend) -> None:
    store = ChunkStore(fast_backend)
    ref = store.put_chunk(text_bytes(30_000, 9))
    assert store.abandon_buffer() == 1
    store.flush()
    assert list(fast_backend.list(keys.PACK_PREFIX)) == []
    assert store.missing([ref.digest]) == {ref.digest}  # a deduplicator would store it again


def test_incompressible_test_samples_but_never_loses_compressible_data() -> None:
    from ocibv.engine.pack import SAMPLE_MIN, Codec

    codec = Codec()
    noise, text = random_bytes(256 * 1024, 11), text_bytes(256 * 1024, 12)
    assert codec.incompressible(noise)  # zstd skipped: stored raw
    assert not codec.incompressible(text)
    # noise with one compressible quarter: a sample lands in it, so zstd runs
    mixed = noise[: 192 * 1024] + text[: 64 * 1024]
    assert not codec.incompressible(mixed)
    assert len(codec.encode(mixed)) < len(mixed)
    assert not codec.incompressible(noise[: SAMPLE_MIN - 1])  # short: always tried
    for data in (noise, text, mixed, b"", b"x"):
        header, payload = codec.encode_parts(data)
        blob = header + bytes(payload)
        digest = chunk_digest(data)
        assert codec.decode(digest, blob) == data
        assert bytes(codec.decode_view(digest, memoryview(blob))) == data
    header, payload = codec.encode_parts(noise)
    assert header == bytes((1, CODEC_RAW)) and payload is noise  # raw: no copy
    header, payload = codec.encode_parts(text)
    assert (header + bytes(payload))[:2] == bytes((1, CODEC_ZSTD))


def test_a_raw_blob_decoded_as_a_view_is_still_verified() -> None:
    from ocibv.engine.pack import Codec

    codec = Codec()
    noise = random_bytes(256 * 1024, 13)
    blob = bytearray(codec.encode(noise))
    blob[1000] ^= 1
    with pytest.raises(IntegrityError):
        codec.decode_view(chunk_digest(noise), memoryview(blob))


def test_a_failed_pack_write_does_not_leave_flush_waiting() -> None:
    """Several packs filled by one call, the first write fails: the others are uncounted,
    so the next flush of the same store returns (it used to wait for ever)."""
    from ocibv.engine.errors import BackendError

    backend = MemoryBackend()
    store = ChunkStore(backend, pack_size=1024)
    real = backend.put_parts
    calls = [0]

    def failing(key: str, parts: list[bytes]) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise BackendError("injected")
        real(key, parts)

    backend.put_parts = failing  # type: ignore[method-assign]
    with pytest.raises(BackendError):
        store.put_chunks([random_bytes(4096, n) for n in range(3)])
    done = threading.Event()
    worker = threading.Thread(target=lambda: (store.flush(), done.set()), daemon=True)
    worker.start()
    assert done.wait(10)
    ref = store.put_chunk(random_bytes(4096, 7))
    store.flush()
    assert ChunkStore(backend).get_chunk(ref.digest) == random_bytes(4096, 7)


def test_missing_checks_a_long_list_a_slice_at_a_time(
    store: ChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification holds a slice of the digests at a time: repeats across slices, binary
    digests and malformed names give the same answer as a single pass."""
    from ocibv.engine import index

    monkeypatch.setattr(index, "_CHECK_SLICE", 2)
    refs = [store.put_chunk(random_bytes(3000, 40 + n)) for n in range(5)]
    store.flush()
    drop_chunk(store, refs[3].digest)
    listed: list[str | bytes] = [r.digest for r in refs]
    listed += [bytes.fromhex(refs[0].digest), refs[3].digest, "not-a-digest",
               bytes.fromhex(refs[3].digest), refs[1].digest]
    assert store.missing(listed) == {refs[3].digest, "not-a-digest"}
