"""The S3 backend behind a proxy that injects 5xx, timeouts and dropped connections: backups
retry and complete, or fail cleanly (no manifest) — never a manifest with missing data, never
a wrong byte on restore."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ocibv.engine.backends import open_backend
from ocibv.engine.backup import backup_volume, restore_volume
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.errors import BackendError, EngineError
from ocibv.engine.manifest import FULL, INCREMENTAL, list_manifests, load_manifest
from tests.engine.store_helpers import KIB, MIB, mixed_image, random_bytes, sha256
from tests.fault_proxy import FaultProxy
from tests.s3_server import S3Server


def _url(proxy: FaultProxy, bucket: str, retries: int = 6) -> str:
    return f"s3://{bucket}/store?endpoint={proxy.url}&timeout=1&retries={retries}"


def test_backups_retry_through_faults_and_restore_exactly(
    s3_server: S3Server, tmp_path: Path
) -> None:
    proxy = FaultProxy(s3_server.endpoint, fail_rate=0.08, hang_rate=0.01, drop_rate=0.02,
                       hang_seconds=1.2, seed=7)
    try:
        bucket = f"faults-{uuid.uuid4().hex[:10]}"
        store = ChunkStore(open_backend(_url(proxy, bucket)), pack_size=512 * KIB)
        image = mixed_image(tmp_path / "v.img", size=6 * MIB)
        made = [backup_volume(store, image, backup_id="full", volume_id="v",
                              backup_type=FULL)]
        with open(image, "r+b") as handle:
            handle.seek(2 * MIB)
            handle.write(random_bytes(700 * KIB, 3))
        made.append(backup_volume(store, image, backup_id="incr", volume_id="v",
                                  backup_type=INCREMENTAL, previous=made[0]))
        restore_volume(ChunkStore(store.backend), made[1], tmp_path / "r.img")
        assert sha256(tmp_path / "r.img") == sha256(image)
        assert proxy.faults > 2
    finally:
        proxy.stop()


def test_a_store_that_always_fails_never_gets_a_manifest(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = f"broken-{uuid.uuid4().hex[:10]}"
    direct = open_backend(f"s3://{bucket}/store?endpoint={s3_server.endpoint}")
    ChunkStore(direct)  # the repository exists; from now on every write fails
    proxy = FaultProxy(s3_server.endpoint, fail_rate=1.0)
    try:
        with pytest.raises(BackendError) as err:
            store = ChunkStore(open_backend(_url(proxy, bucket, retries=2)))
            backup_volume(store, mixed_image(tmp_path / "v.img"), backup_id="b", volume_id="v",
                          backup_type=FULL)
        assert "testing" not in str(err.value)  # no credentials in messages
        assert list_manifests(direct) == []
    finally:
        proxy.stop()


def test_faults_during_writes_leave_only_whole_backups(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Heavy faults with few retries: some backups fail; every manifest left is restorable."""
    proxy = FaultProxy(s3_server.endpoint, fail_rate=0.45, seed=3)
    bucket = f"flaky-{uuid.uuid4().hex[:10]}"
    direct = open_backend(f"s3://{bucket}/store?endpoint={s3_server.endpoint}")
    ChunkStore(direct)
    try:
        store = ChunkStore(open_backend(_url(proxy, bucket, retries=2)), pack_size=256 * KIB)
        image = mixed_image(tmp_path / "v.img", size=4 * MIB)
        outcomes = []
        for n in range(3):
            try:
                backup_volume(store, image, backup_id=f"b{n}", volume_id="v", backup_type=FULL)
                outcomes.append(True)
            except EngineError:
                outcomes.append(False)
    finally:
        proxy.stop()
    reader = ChunkStore(direct)
    left = list_manifests(direct)
    assert False in outcomes or left  # the faults bit, or everything survived retries
    for backup_id in left:
        restore_volume(reader, load_manifest(direct, backup_id), tmp_path / "r.img")
        assert sha256(tmp_path / "r.img") == sha256(image)
