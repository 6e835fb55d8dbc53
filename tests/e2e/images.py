"""Volume images with known bytes (data, zeros, holes) and exact comparisons of exports."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import oci

from tests.e2e.server import Server

MIB = 1024 * 1024


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


def import_image(server: Server, volume_id: str, image: Path) -> None:
    server.ocibv("volume", "import", volume_id, str(image))


def assert_volume_holds(server: Server, volume_id: str, image: Path, tmp: Path) -> None:
    """Export the volume: the image's bytes, zeros after, holes where the image had holes."""
    out = tmp / f"export-{volume_id[-8:]}.img"
    server.ocibv("volume", "export", volume_id, str(out))
    length = image.stat().st_size
    assert sha256_prefix(out, length) == sha256_prefix(image, length), "bytes differ"
    beyond = [e for e in data_extents(out) if e[1] > length]
    assert not beyond, f"data after the image end: {beyond[:3]}"
    # holes preserved: no more allocated than the image's data (zero runs may become holes)
    assert allocated(out) <= allocated(image)
    out.unlink()


def new_volume(bs: oci.core.BlockstorageClient, compartment: str, ad: str, name: str) -> str:
    created = bs.create_volume(
        oci.core.models.CreateVolumeDetails(
            compartment_id=compartment, availability_domain=ad, size_in_gbs=50,
            display_name=name,
        )
    ).data
    return str(wait(bs, bs.get_volume(created.id), "AVAILABLE").id)


def wait(bs: oci.core.BlockstorageClient, response: object, state: str | tuple[str, ...],
         seconds: int = 180) -> object:
    """``oci.wait_until`` polling every second at most (transitions here are quick)."""
    return oci.wait_until(
        bs, response, "lifecycle_state", state, max_wait_seconds=seconds, max_interval_seconds=1
    ).data


def store_bytes(server: Server) -> int:
    """Bytes of every object in the server's backup store (local or S3)."""
    store = server.store()
    return sum(store.stat(key).size for key in store.list(""))
