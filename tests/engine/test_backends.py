"""The backend contract, run against every backend (local directory, memory, S3 on moto)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ocibv.engine.backends import Backend, LocalBackend, MemoryBackend, open_backend
from ocibv.engine.errors import BackendError, ObjectNotFound


def test_put_get_roundtrip_and_overwrite(backend: Backend) -> None:
    backend.put("a/b/c.bin", b"first")
    assert backend.get("a/b/c.bin") == b"first"
    backend.put("a/b/c.bin", b"second, longer")
    assert backend.get("a/b/c.bin") == b"second, longer"
    backend.put_parts("a/parts", [b"one", b"", b"two" * 1000])
    assert backend.get("a/parts") == b"one" + b"two" * 1000


def test_not_found_is_object_not_found(backend: Backend) -> None:
    with pytest.raises(ObjectNotFound):
        backend.get("missing/key")
    with pytest.raises(ObjectNotFound):
        backend.stat("missing/key")
    with pytest.raises(ObjectNotFound):
        backend.size("missing/key")
    assert not backend.exists("missing/key")
    with pytest.raises(ObjectNotFound):
        backend.get_range("missing/key", 0, 10)
    backend.delete("missing/key")  # deleting what is not there is fine


def test_exists_size_delete(backend: Backend) -> None:
    backend.put("x/y", b"12345")
    assert backend.exists("x/y")
    assert backend.size("x/y") == 5
    backend.delete("x/y")
    assert not backend.exists("x/y")
    with pytest.raises(ObjectNotFound):
        backend.get("x/y")


def test_list_by_prefix(backend: Backend) -> None:
    for key in ("chunks/ab/abc", "chunks/ab/abd", "chunks/cd/cde", "manifests/m1.json", "top"):
        backend.put(key, b"x")
    assert sorted(backend.list("chunks/")) == ["chunks/ab/abc", "chunks/ab/abd", "chunks/cd/cde"]
    assert sorted(backend.list("chunks/ab/abc")) == ["chunks/ab/abc"]
    assert sorted(backend.list("chunks/a")) == ["chunks/ab/abc", "chunks/ab/abd"]
    assert sorted(backend.list("manifests/")) == ["manifests/m1.json"]
    assert sorted(backend.list("nothing/")) == []
    assert len(list(backend.list())) == 5


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "../escape", "a/../../b", "a//b", "A/upper", ".hidden", "a/.tmp-x", "a/", "a b"],
)
def test_invalid_keys_are_rejected(backend: Backend, key: str) -> None:
    with pytest.raises(BackendError):
        backend.put(key, b"x")
    with pytest.raises(BackendError):
        backend.get(key)


def test_ranged_get(backend: Backend) -> None:
    backend.put("r/obj", bytes(range(200)))
    assert backend.get_range("r/obj", 10, 5) == bytes(range(10, 15))
    assert backend.get_range("r/obj", 190, 50) == bytes(range(190, 200))  # short at the end
    assert backend.get_range("r/obj", 0, 200) == bytes(range(200))


def test_put_if_absent_creates_once(backend: Backend) -> None:
    assert backend.put_if_absent("c/config", b"first") is True
    assert backend.put_if_absent("c/config", b"second") is False
    assert backend.get("c/config") == b"first"


def test_stat_reports_size_and_a_recent_timestamp(backend: Backend) -> None:
    before = time.time() - 5
    backend.put("t/obj", b"abc")
    info = backend.stat("t/obj")
    assert info.size == 3 and before <= info.mtime <= time.time() + 5


def test_concurrent_writers_never_tear_an_object(backend: Backend) -> None:
    payloads = [bytes([n]) * 200_000 for n in range(8)]
    errors: list[BaseException] = []

    def writer(data: bytes) -> None:
        try:
            for _ in range(5):
                backend.put("race/obj", data)
                got = backend.get("race/obj")
                assert got in payloads
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert backend.get("race/obj") in payloads
    backend.sync()


def test_local_leaves_no_temporaries_and_stays_inside_root(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "root")
    backend.put("a/b", b"x" * 10)
    backend.sync()
    files = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [Path("root/a/b")]
    with pytest.raises(BackendError):
        backend.put("../outside", b"x")
    assert not (tmp_path / "outside").exists()


def test_local_cleanup_removes_stale_temporaries_only(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put("d/keep", b"x")
    stale = tmp_path / "d" / ".tmp-keep-123"
    fresh = tmp_path / "d" / ".tmp-keep-456"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert sorted(backend.list("d/")) == ["d/keep"]  # temporaries are never listed
    assert backend.cleanup(time.time() - 3600) == 1
    assert not stale.exists() and fresh.exists() and backend.exists("d/keep")


def test_open_backend_by_scheme(tmp_path: Path) -> None:
    local = open_backend((tmp_path / "s").as_uri())
    assert isinstance(local, LocalBackend) and local.root == tmp_path / "s"
    assert isinstance(open_backend("memory://"), MemoryBackend)
    for bad in ("s3:///no-bucket", "file://host/dir", "file:relative", "nonsense"):
        with pytest.raises(BackendError):
            open_backend(bad)
