"""The helpers every end-to-end module shares: create resources through the SDK, wait for
lifecycle states by polling fast (never ``oci.wait_until``'s 1 s first sleep), read and write
volume image files, build images of known bytes, copy them in and out, and assert OCI errors."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import oci
import pytest

from ocibv.config import Settings
from ocibv.services.container import Services
from tests.e2e.server import InProcessServer, Server

M = oci.core.models
AD1, AD2 = "Uocm:PHX-AD-1", "Uocm:PHX-AD-2"  # the shared server's availability domains
GIB = 1024**3
MIB = 1024 * 1024


def _pauses() -> Iterator[float]:
    """Poll fast first (most transitions take milliseconds), then back off to 0.2 s so a long
    wait does not keep a core busy."""
    pause = 0.005
    while True:
        yield pause
        pause = min(0.2, pause * 1.5)


def per_thread(make: Callable[[], Any]) -> Callable[[], Any]:
    """A getter that gives each thread its own client (SDK clients share a session)."""
    local = threading.local()

    def get() -> Any:
        if not hasattr(local, "client"):
            local.client = make()
        return local.client

    return get


# --- waiting ----------------------------------------------------------------------------------


def wait_state(fetch: Callable[[], Any], *states: str, timeout: float = 120.0) -> Any:
    """Poll ``fetch()`` (returns a model with ``lifecycle_state``) until it is in ``states``."""
    deadline = time.monotonic() + timeout
    for pause in _pauses():
        data = fetch()
        if data.lifecycle_state in states:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"still {data.lifecycle_state} after {timeout} s, wanted {states}")
        time.sleep(pause)
    raise AssertionError("unreachable")


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate()`` until it is true."""
    deadline = time.monotonic() + timeout
    pauses = _pauses()
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(next(pauses))


def wait_volume(bs: oci.core.BlockstorageClient, volume_id: str, *states: str) -> Any:
    return wait_state(lambda: bs.get_volume(volume_id).data, *(states or ("AVAILABLE",)))


def wait_group(bs: oci.core.BlockstorageClient, group_id: str, *states: str) -> Any:
    return wait_state(lambda: bs.get_volume_group(group_id).data, *(states or ("AVAILABLE",)))


GETTERS = {
    M.Volume: "get_volume",
    M.VolumeGroup: "get_volume_group",
    M.VolumeBackup: "get_volume_backup",
    M.VolumeGroupBackup: "get_volume_group_backup",
}


def wait(
    bs: oci.core.BlockstorageClient,
    response: Any,
    state: str | tuple[str, ...],
    seconds: float = 180,
) -> Any:
    """The resource of ``response`` (a response or a model) once it is in ``state``."""
    model = getattr(response, "data", response)
    get = getattr(bs, GETTERS[type(model)])
    states = (state,) if isinstance(state, str) else state
    return wait_state(lambda: get(model.id).data, *states, timeout=seconds)


# --- creating ---------------------------------------------------------------------------------


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


def new_volume(bs: oci.core.BlockstorageClient, compartment: str, ad: str, name: str) -> str:
    """The id of a new AVAILABLE 50 GB volume named ``name``."""
    return str(create_volume(bs, compartment, ad, display_name=name).id)


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


def new_compartment(server: Server, name: str) -> str:
    details = oci.identity.models.CreateCompartmentDetails(
        compartment_id=server.config()["tenancy"], name=name, description=f"test {name}"
    )
    return str(server.identity().create_compartment(details).data.id)


def first_ad(server: Server) -> str:
    tenancy = server.config()["tenancy"]
    return str(server.identity().list_availability_domains(tenancy).data[0].name)


# --- volume image files -------------------------------------------------------------------------


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


def make_image(path: Path, seed: int, size: int = 32 * MIB) -> Path:
    """Random data, compressible text, explicit zero bytes and holes, reproducibly."""
    rng = random.Random(seed)
    with open(path, "wb") as handle:
        handle.truncate(size)
        handle.seek(1 * MIB)
        handle.write(rng.randbytes(3 * MIB))  # random
        handle.seek(8 * MIB)
        handle.write(b"".join(b"line %d of some text\n" % n for n in range(120_000)))
        handle.seek(16 * MIB)
        handle.write(bytes(2 * MIB))  # zeros written as data
        handle.seek(24 * MIB)
        handle.write(rng.randbytes(MIB))
        # 4..8 MiB, 18..24 MiB and 25 MiB..end stay holes
    return path


def scatter_writes(path: Path, seed: int, count: int = 8, size: int = 64 * 1024) -> None:
    """Overwrite ``count`` random 64 KiB blocks with new random bytes."""
    rng = random.Random(seed)
    length = path.stat().st_size
    with open(path, "r+b") as handle:
        for _ in range(count):
            offset = rng.randrange(0, length - size, 4096)
            handle.seek(offset)
            handle.write(rng.randbytes(size))


def sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = length
        while remaining:
            block = handle.read(min(remaining, 4 * MIB))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def data_extents(path: Path) -> list[tuple[int, int]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        size, offset, out = os.fstat(fd).st_size, 0, []
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            offset = end
        return out
    finally:
        os.close(fd)


def allocated(path: Path) -> int:
    return sum(end - start for start, end in data_extents(path))


@contextmanager
def admin_services(server: Server) -> Iterator[Services]:
    """What an ``ocibv`` admin command opens on the server's data dir, in this process: the
    in-process server's own services, or a second ``Services`` beside a spawned server (as
    the command would be)."""
    if isinstance(server, InProcessServer) and server.services is not None:
        yield server.services
        return
    services = Services(Settings.load(server.data_dir))
    services.migrate()
    try:
        yield services
    finally:
        services.stop()


def import_image(server: Server, volume_id: str, image: Path) -> None:
    """What ``ocibv volume import`` does, in process (the command itself is tested in
    test_import_export)."""
    with admin_services(server) as services:
        services.volume_data.import_volume(volume_id, image)


def export_volume(server: Server, volume_id: str, dest: Path) -> None:
    """What ``ocibv volume export`` does, in process."""
    with admin_services(server) as services:
        services.volume_data.export_volume(volume_id, dest)


def assert_volume_holds(server: Server, volume_id: str, image: Path, tmp: Path) -> None:
    """Export the volume: the image's bytes, zeros after, holes where the image had holes."""
    out = tmp / f"export-{volume_id[-8:]}.img"
    export_volume(server, volume_id, out)
    length = image.stat().st_size
    assert sha256_prefix(out, length) == sha256_prefix(image, length), "bytes differ"
    beyond = [e for e in data_extents(out) if e[1] > length]
    assert not beyond, f"data after the image end: {beyond[:3]}"
    # holes preserved: no more allocated than the image's data (zero runs may become holes)
    assert allocated(out) <= allocated(image)
    out.unlink()


def store_bytes(server: Server) -> int:
    """Bytes of every object in the server's backup store (local or S3)."""
    store = server.store()
    return sum(store.stat(key).size for key in store.list(""))


# --- errors -----------------------------------------------------------------------------------


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
