"""Small helpers shared by the end-to-end modules: create resources through the SDK, wait for
lifecycle states quickly, look at volume image files, and assert OCI errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import oci
import pytest

from tests.e2e.server import Server

M = oci.core.models
GIB = 1024**3


def per_thread(make: Callable[[], Any]) -> Callable[[], Any]:
    """A getter that gives each thread its own client (SDK clients share a session)."""
    local = threading.local()

    def get() -> Any:
        if not hasattr(local, "client"):
            local.client = make()
        return local.client

    return get


def wait_state(fetch: Callable[[], Any], *states: str, timeout: float = 60.0) -> Any:
    """Poll ``fetch()`` (returns a model with ``lifecycle_state``) until it is in ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        data = fetch()
        if data.lifecycle_state in states:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"still {data.lifecycle_state} after {timeout} s, wanted {states}")
        time.sleep(0.05)


def wait_volume(bs: oci.core.BlockstorageClient, volume_id: str, *states: str) -> Any:
    return wait_state(lambda: bs.get_volume(volume_id).data, *(states or ("AVAILABLE",)))


def wait_group(bs: oci.core.BlockstorageClient, group_id: str, *states: str) -> Any:
    return wait_state(lambda: bs.get_volume_group(group_id).data, *(states or ("AVAILABLE",)))


def create_volume(
    bs: oci.core.BlockstorageClient,
    compartment: str,
    ad: str,
    *,
    wait: bool = True,
    size_in_gbs: int | None = 50,
    **kwargs: Any,
) -> Any:
    """A volume (50 GB unless told), AVAILABLE unless ``wait=False``."""
    created = bs.create_volume(
        M.CreateVolumeDetails(
            compartment_id=compartment, availability_domain=ad, size_in_gbs=size_in_gbs, **kwargs
        )
    ).data
    return wait_volume(bs, created.id) if wait else created


def create_group(
    bs: oci.core.BlockstorageClient,
    compartment: str,
    ad: str,
    volume_ids: list[str],
    *,
    wait: bool = True,
    **kwargs: Any,
) -> Any:
    created = bs.create_volume_group(
        M.CreateVolumeGroupDetails(
            compartment_id=compartment,
            availability_domain=ad,
            source_details=M.VolumeGroupSourceFromVolumesDetails(volume_ids=volume_ids),
            **kwargs,
        )
    ).data
    return wait_group(bs, created.id) if wait else created


def image_path(server: Server, volume_id: str) -> Path:
    return server.data_dir / "volumes" / f"{volume_id}.img"


def write_image(server: Server, volume_id: str, offset: int, data: bytes) -> None:
    """Write bytes straight into a volume's image file (as an attached host would)."""
    with open(image_path(server, volume_id), "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def read_image(server: Server, volume_id: str, offset: int, length: int) -> bytes:
    with open(image_path(server, volume_id), "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


@contextmanager
def service_error(status: int, code: str, *mentions: str) -> Iterator[pytest.ExceptionInfo[Any]]:
    """Expect an ``oci.exceptions.ServiceError`` with this status and code whose message
    names each of ``mentions``."""
    with pytest.raises(oci.exceptions.ServiceError) as info:
        yield info
    err = info.value
    assert (err.status, err.code) == (status, code), f"{err.status} {err.code}: {err.message}"
    for text in mentions:
        assert text in err.message, f"{text!r} not in {err.message!r}"
    assert err.request_id
