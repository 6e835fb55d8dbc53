"""Restarts: a server killed with SIGKILL in the middle of transitions finishes them on the next
start, loses nothing, and keeps retry tokens; a clean restart keeps everything as it was."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import oci

from tests.e2e.helpers import export_volume, import_image, wait_group, wait_volume
from tests.e2e.server import Server

MiB = 1024 * 1024
KILL_DELAY_SECONDS = "10"  # every job sleeps this long: the kill lands well inside it


def _wait_volume(bs: oci.core.BlockstorageClient, volume_id: str, state: str) -> Any:
    return wait_volume(bs, volume_id, state)


def _wait_group(bs: oci.core.BlockstorageClient, group_id: str, state: str) -> Any:
    return wait_group(bs, group_id, state)


def _new_compartment(srv: Server) -> str:
    details = oci.identity.models.CreateCompartmentDetails(
        compartment_id=srv.config()["tenancy"],
        name=f"restart-{uuid.uuid4().hex[:8]}",
        description="restart test",
    )
    return str(srv.identity().create_compartment(details).data.id)


def _ad(srv: Server) -> str:
    tenancy = srv.config()["tenancy"]
    return str(srv.identity().list_availability_domains(tenancy).data[0].name)


def _volume_details(compartment: str, ad: str, **kwargs: Any) -> Any:
    return oci.core.models.CreateVolumeDetails(
        compartment_id=compartment, availability_domain=ad, size_in_gbs=50, **kwargs
    )


def _group_details(compartment: str, ad: str, source: Any) -> Any:
    return oci.core.models.CreateVolumeGroupDetails(
        compartment_id=compartment, availability_domain=ad, source_details=source
    )


def _volumes_from_ids(ids: list[str]) -> Any:
    return oci.core.models.VolumeGroupSourceFromVolumesDetails(volume_ids=ids)


def _make_image(path: Path) -> bytes:
    """A 10 MiB image: random data at 0 and at 8 MiB, a hole between."""
    head, tail = os.urandom(MiB), os.urandom(2 * MiB)
    with open(path, "wb") as f:
        f.write(head)
        f.seek(8 * MiB)
        f.write(tail)
    return path.read_bytes()


def _exported_prefix(srv: Server, volume_id: str, dest: Path, length: int) -> bytes:
    export_volume(srv, volume_id, dest)
    with open(dest, "rb") as f:
        data = f.read(length)
    dest.unlink()
    return data


def _all_volumes(bs: oci.core.BlockstorageClient, compartment: str) -> dict[str, Any]:
    listed = oci.pagination.list_call_get_all_results(
        bs.list_volumes, compartment_id=compartment, limit=3
    ).data
    return {v.id: v for v in listed}


def test_kill_9_mid_transition_then_restart_completes(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = make_server().start()
    bs = srv.blockstorage()
    compartment, ad = _new_compartment(srv), _ad(srv)

    # Prerequisites, settled before the crash: a source with data, group members, a group to
    # clone, a volume and a group to delete.
    def available_volume(name: str) -> str:
        vol = bs.create_volume(_volume_details(compartment, ad, display_name=name)).data
        return str(vol.id)

    source, n1, doomed, m0, m1, m2 = (
        available_volume(n) for n in ("source", "n1", "doomed", "m0", "m1", "m2")
    )
    for vol_id in (source, n1, doomed, m0, m1, m2):
        _wait_volume(bs, vol_id, "AVAILABLE")
    image = _make_image(tmp_path / "src.img")
    import_image(srv, source, tmp_path / "src.img")
    g1 = bs.create_volume_group(_group_details(compartment, ad, _volumes_from_ids([n1]))).data.id
    gd = bs.create_volume_group(_group_details(compartment, ad, _volumes_from_ids([m0]))).data.id
    _wait_group(bs, g1, "AVAILABLE")
    _wait_group(bs, gd, "AVAILABLE")
    srv.stop()

    # Every job now sleeps before it works; start the transitions and crash inside them.
    srv.env = {"OCIBV_JOB_DELAY_SECONDS": KILL_DELAY_SECONDS}
    srv.start()
    bs = srv.blockstorage()
    tokens = {name: f"restart-{name}-{uuid.uuid4().hex}" for name in ("new", "clone", "group")}
    new_details = _volume_details(compartment, ad, display_name="new")
    clone_details = _volume_details(
        compartment,
        ad,
        display_name="clone",
        source_details=oci.core.models.VolumeSourceFromVolumeDetails(id=source),
    )
    group_details = _group_details(compartment, ad, _volumes_from_ids([m1, m2]))
    group_clone_details = _group_details(
        compartment, ad, oci.core.models.VolumeGroupSourceFromVolumeGroupDetails(volume_group_id=g1)
    )
    new = bs.create_volume(new_details, opc_retry_token=tokens["new"]).data
    clone = bs.create_volume(clone_details, opc_retry_token=tokens["clone"]).data
    group = bs.create_volume_group(group_details, opc_retry_token=tokens["group"]).data
    group_clone = bs.create_volume_group(group_clone_details).data
    bs.delete_volume(doomed)
    bs.delete_volume_group(gd)

    assert bs.get_volume(new.id).data.lifecycle_state == "PROVISIONING"
    assert bs.get_volume(clone.id).data.lifecycle_state == "PROVISIONING"
    assert bs.get_volume_group(group.id).data.lifecycle_state == "PROVISIONING"
    assert bs.get_volume_group(group_clone.id).data.lifecycle_state == "PROVISIONING"
    assert bs.get_volume(doomed).data.lifecycle_state == "TERMINATING"
    assert bs.get_volume_group(gd).data.lifecycle_state == "TERMINATING"
    member_clones = list(group_clone.volume_ids)
    assert len(member_clones) == 1 and member_clones[0] != n1
    srv.stop(kill=True)

    # Restart on the same data dir, jobs at full speed: every transition completes.
    srv.env = {}
    srv.start()
    bs = srv.blockstorage()
    done_new = _wait_volume(bs, new.id, "AVAILABLE")
    done_clone = _wait_volume(bs, clone.id, "AVAILABLE")
    assert done_new.is_hydrated and done_clone.is_hydrated
    assert done_clone.source_details.id == source
    done_group = _wait_group(bs, group.id, "AVAILABLE")
    assert sorted(done_group.volume_ids) == sorted([m1, m2])
    done_group_clone = _wait_group(bs, group_clone.id, "AVAILABLE")
    assert done_group_clone.volume_ids == member_clones
    assert _wait_volume(bs, member_clones[0], "AVAILABLE").volume_group_id == group_clone.id
    _wait_volume(bs, doomed, "TERMINATED")
    _wait_group(bs, gd, "TERMINATED")
    assert not (srv.data_dir / "volumes" / f"{doomed}.img").exists()
    assert bs.get_volume(m0).data.volume_group_id is None  # the deleted group let go of it

    # Nothing lost: every volume is listed, in the state it should be in.
    listed = _all_volumes(bs, compartment)
    expected = {source, n1, doomed, m0, m1, m2, new.id, clone.id, member_clones[0]}
    assert set(listed) == expected
    assert {v.lifecycle_state for i, v in listed.items() if i != doomed} == {"AVAILABLE"}

    # The clone holds the source's bytes even though the crash came before its copy.
    assert _exported_prefix(srv, clone.id, tmp_path / "clone.out", len(image)) == image

    # Retry tokens survived the crash: the same request answers the same resource.
    assert bs.create_volume(new_details, opc_retry_token=tokens["new"]).data.id == new.id
    assert bs.create_volume(clone_details, opc_retry_token=tokens["clone"]).data.id == clone.id
    again = bs.create_volume_group(group_details, opc_retry_token=tokens["group"]).data
    assert again.id == group.id
    assert set(_all_volumes(bs, compartment)) == expected


def test_clean_restart_keeps_everything(make_server: Callable[..., Server], tmp_path: Path) -> None:
    srv = make_server().start()
    bs = srv.blockstorage()
    compartment, ad = _new_compartment(srv), _ad(srv)
    config_before = srv.config_file.read_bytes()
    token = f"clean-{uuid.uuid4().hex}"
    details = _volume_details(compartment, ad, display_name="kept")
    vol = bs.create_volume(details, opc_retry_token=token).data
    other = bs.create_volume(_volume_details(compartment, ad, display_name="member")).data
    _wait_volume(bs, vol.id, "AVAILABLE")
    _wait_volume(bs, other.id, "AVAILABLE")
    group = bs.create_volume_group(
        _group_details(compartment, ad, _volumes_from_ids([other.id]))
    ).data
    _wait_group(bs, group.id, "AVAILABLE")
    image = _make_image(tmp_path / "img")
    import_image(srv, vol.id, tmp_path / "img")
    before_vol = bs.get_volume(vol.id)
    before_group = bs.get_volume_group(group.id)
    before_list = _all_volumes(bs, compartment)

    srv.stop()
    srv.start()
    bs = srv.blockstorage()  # the same config file and key still sign
    assert srv.config_file.read_bytes() == config_before  # no second bootstrap

    after_vol = bs.get_volume(vol.id)
    after_group = bs.get_volume_group(group.id)
    assert after_vol.data == before_vol.data
    assert after_vol.headers["etag"] == before_vol.headers["etag"]
    assert after_group.data == before_group.data
    assert after_group.headers["etag"] == before_group.headers["etag"]
    assert _all_volumes(bs, compartment) == before_list
    assert bs.create_volume(details, opc_retry_token=token).data.id == vol.id
    data = _exported_prefix(srv, vol.id, tmp_path / "out", len(image))
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(image).hexdigest()


def test_kill_9_idle_server_restarts(make_server: Callable[..., Server]) -> None:
    """A crash with nothing in flight leaves a data dir that starts and serves as before."""
    srv = make_server().start()
    bs = srv.blockstorage()
    compartment, ad = _new_compartment(srv), _ad(srv)
    vol = _wait_volume(bs, bs.create_volume(_volume_details(compartment, ad)).data.id, "AVAILABLE")
    srv.stop(kill=True)
    srv.start()
    bs = srv.blockstorage()
    assert bs.get_volume(vol.id).data == vol
    bs.delete_volume(vol.id)
    _wait_volume(bs, vol.id, "TERMINATED")
