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
    cloud.backup(vol)  # nothing holds the volume any more


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


def test_an_import_holds_the_volume_against_the_api(cloud: Cloud, image: Path) -> None:
    vol = cloud.volume()
    refused: list[type[Exception]] = []

    def meanwhile(_: int) -> None:  # called while the import copies
        for attempt in (
            lambda: cloud.services.volumes.delete_volume(cloud.caller, vol, None),
            lambda: cloud.create_backup(vol),
            lambda: cloud.services.volumes.update_volume(
                cloud.caller, vol, {"size_in_gbs": 60}, None
            ),
        ):
            try:
                attempt()
            except IncorrectState as exc:
                assert vol in exc.message
                refused.append(type(exc))

    cloud.services.volume_data.import_volume(vol, image, meanwhile)
    assert refused and len(refused) % 3 == 0
    cloud.services.volumes.delete_volume(cloud.caller, vol, None)  # released at the end


def files_around(root: Path, data_dir: Path) -> dict[Path, tuple[int, int]]:
    """Every file under ``root`` outside ``data_dir``: size and mtime."""
    return {
        p: (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and data_dir not in p.parents
    }


@pytest.mark.parametrize(
    "bad_id",
    [
        "../../etc/passwd",
        "../../victim",
        "ocid1.volume.oc1.phx.aaaaaaaa/../../../victim",
        "/etc/passwd",
        "",
    ],
)
def test_malformed_ids_touch_no_file(cloud: Cloud, image: Path, bad_id: str) -> None:
    data_dir = cloud.services.settings.data_dir
    root = data_dir.parent
    (root / "etc").mkdir(exist_ok=True)  # where a path built from the id would land
    for victim in (root / "etc" / "passwd.img", root / "victim.img", root / "victim"):
        victim.write_bytes(b"precious")
    before = files_around(root, data_dir)
    volumes = sorted(cloud.services.settings.volumes_dir.glob("*"))
    out = image.with_name("out")
    with pytest.raises(NotAuthorizedOrNotFound, match="not a volume"):
        cloud.services.volume_data.import_volume(bad_id, image)
    with pytest.raises(NotAuthorizedOrNotFound, match="not a volume"):
        cloud.services.volume_data.export_volume(bad_id, out)
    assert not out.exists()
    assert files_around(root, data_dir) == before
    assert sorted(cloud.services.settings.volumes_dir.glob("*")) == volumes


def test_unknown_deleted_and_other_kinds_refused(
    cloud: Cloud, image: Path, tmp_path: Path
) -> None:
    vol = cloud.volume()
    cloud.services.volumes.delete_volume(cloud.caller, vol, None)
    cloud.settle()
    out = tmp_path / "out"
    for missing in (vol, "ocid1.volume.oc1.phx.aaaaaaaa" + "x" * 52):
        with pytest.raises(NotAuthorizedOrNotFound, match="not found"):
            cloud.services.volume_data.import_volume(missing, image)
        with pytest.raises(NotAuthorizedOrNotFound, match="not found"):
            cloud.services.volume_data.export_volume(missing, out)
        assert not cloud.services.settings.volume_path(missing).exists()
    with pytest.raises(NotAuthorizedOrNotFound, match="not a volume"):
        cloud.services.volume_data.export_volume(cloud.compartment, out)
    assert not out.exists()
