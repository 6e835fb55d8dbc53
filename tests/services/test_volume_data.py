"""Offline volume data access (``ocibv volume import|export``): all or nothing, never beyond the
volume, never while something else holds the volume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocibv.domain.errors import (
    Conflict,
    IncorrectState,
    InvalidParameter,
    NotAuthorizedOrNotFound,
)
from tests.services.conftest import Cloud


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "img"
    path.write_bytes(os.urandom(64 * 1024))
    return path


def test_round_trip(cloud: Cloud, image: Path, tmp_path: Path) -> None:
    vol = cloud.volume()
    data = cloud.services.volume_data
    assert data.import_volume(vol, image) == 64 * 1024
    out = tmp_path / "out"
    data.export_volume(vol, out)
    with open(out, "rb") as handle:
        assert handle.read(64 * 1024) == image.read_bytes()
    assert cloud.get("volume", vol).busy is None


def test_image_larger_than_the_volume_changes_nothing(
    cloud: Cloud, image: Path, tmp_path: Path
) -> None:
    vol = cloud.volume()
    data = cloud.services.volume_data
    data.import_volume(vol, image)
    huge = tmp_path / "huge"
    with open(huge, "wb") as handle:
        handle.truncate(51 * 1024**3)
    with pytest.raises(InvalidParameter, match=vol):
        data.import_volume(vol, huge)
    out = tmp_path / "out"
    data.export_volume(vol, out)  # released, and the old bytes are all there
    with open(out, "rb") as handle:
        assert handle.read(64 * 1024) == image.read_bytes()


def test_refused_while_held(cloud: Cloud, image: Path, tmp_path: Path) -> None:
    data = cloud.services.volume_data
    src = cloud.volume()
    clone = cloud.clone(src)
    with pytest.raises(Conflict, match=clone.id):  # it would change what the clone copies
        data.import_volume(src, image)
    data.export_volume(src, tmp_path / "out")  # reading alongside is fine
    cloud.settle()
    data.import_volume(src, image)
    cloud.create_backup(src)
    with pytest.raises(Conflict, match=src):
        data.import_volume(src, image)
    with pytest.raises(Conflict, match=src):
        data.export_volume(src, tmp_path / "out2")
    provisioning = cloud.create_volume()
    with pytest.raises(IncorrectState, match=provisioning.id):
        data.import_volume(provisioning.id, image)


def test_an_import_holds_the_volume_against_the_api(cloud: Cloud) -> None:
    vol = cloud.volume()
    cloud.services.volume_data.acquire(vol, "import")
    with pytest.raises(IncorrectState, match=vol):
        cloud.services.volumes.delete_volume(cloud.caller, vol, None)
    with pytest.raises(IncorrectState, match=vol):
        cloud.create_backup(vol)
    cloud.services.volume_data.release(vol)
    cloud.services.volumes.delete_volume(cloud.caller, vol, None)


@pytest.mark.parametrize(
    "bad_id", ["../../etc/passwd", "ocid1.volume.oc1.phx.aaaaaaaa/../../../victim", "/etc/x", ""]
)
def test_malformed_ids_touch_no_file(cloud: Cloud, image: Path, bad_id: str) -> None:
    with pytest.raises(NotAuthorizedOrNotFound):
        cloud.services.volume_data.import_volume(bad_id, image)
    with pytest.raises(NotAuthorizedOrNotFound):
        cloud.services.volume_data.export_volume(bad_id, image.with_name("out"))
    assert not image.with_name("out").exists()


def test_unknown_and_deleted_volumes(cloud: Cloud, image: Path) -> None:
    vol = cloud.volume()
    cloud.services.volumes.delete_volume(cloud.caller, vol, None)
    cloud.settle()
    for missing in (vol, "ocid1.volume.oc1.phx.aaaaaaaa" + "x" * 52):
        with pytest.raises(NotAuthorizedOrNotFound):
            cloud.services.volume_data.import_volume(missing, image)
        assert not cloud.services.settings.volume_path(missing).exists()
