"""Real NBD clients (qemu-img, qemu-io, nbdcopy, nbdinfo) against the in-process server."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibv.engine.live_volume import LiveVolume
from ocibv.nbd.exports import ExportTable
from tests.nbd.helpers import MIB, RawClient, RunningServer, make_image, run, running_server

SIZE = 64 * MIB
DATA = [(1 * MIB, 3 * MIB), (40 * MIB, 100_000), (SIZE - 4096, 4096)]


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[LiveVolume]:
    image = tmp_path / "vol.img"
    with open(image, "wb") as f:
        f.truncate(SIZE)
    vol = LiveVolume(image)
    yield vol
    vol.close()


@pytest.fixture
def served(volume: LiveVolume) -> Iterator[RunningServer]:
    table = ExportTable()
    table.add("vol", volume)
    with running_server(table) as server:
        yield server


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_qemu_img_convert_then_compare(served: RunningServer, tmp_path: Path) -> None:
    src = make_image(tmp_path / "src.img", SIZE, DATA)
    uri = served.uri("vol")
    done = run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), uri)
    assert done.returncode == 0, done.stderr
    compared = run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(src), uri)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert sha(src) == sha(tmp_path / "vol.img")


def test_nbdcopy_both_ways_and_holes_kept(served: RunningServer, tmp_path: Path) -> None:
    src = make_image(tmp_path / "src.img", SIZE, DATA, seed=2)
    uri = served.uri("vol")
    assert run("nbdcopy", str(src), uri).returncode == 0
    out = tmp_path / "out.img"
    copied = run("nbdcopy", uri, str(out))
    assert copied.returncode == 0, copied.stderr
    assert sha(out) == sha(src)
    # nbdcopy skipped the holes base:allocation reported: the copy stays sparse.
    assert os.stat(out).st_blocks * 512 < 8 * MIB


def test_nbdinfo_map_shows_holes(served: RunningServer, tmp_path: Path) -> None:
    image = tmp_path / "vol.img"
    make_image(tmp_path / "src.img", SIZE, DATA)
    assert run("nbdcopy", str(tmp_path / "src.img"), served.uri("vol")).returncode == 0
    assert image.exists()
    mapped = run("nbdinfo", "--map", served.uri("vol"))
    assert mapped.returncode == 0, mapped.stderr
    rows = [line.split() for line in mapped.stdout.splitlines() if line.strip()]
    data = [(int(r[0]), int(r[1])) for r in rows if r[2] == "0"]
    holes = [(int(r[0]), int(r[1])) for r in rows if r[2] == "3"]
    assert (1 * MIB, 3 * MIB) in data
    assert any(start <= 4 * MIB and start + n >= 40 * MIB for start, n in holes)
    assert sum(n for _, n in data) + sum(n for _, n in holes) == SIZE


def test_nbdinfo_list_names_every_export(tmp_path: Path) -> None:
    table = ExportTable()
    volumes = []
    for name in ("alpha", "beta"):
        image = tmp_path / f"{name}.img"
        with open(image, "wb") as f:
            f.truncate(MIB)
        volumes.append(LiveVolume(image))
        table.add(name, volumes[-1])
    try:
        with running_server(table) as server:
            listed = run("nbdinfo", "--list", f"nbd://127.0.0.1:{server.port}")
            assert listed.returncode == 0, listed.stderr
            assert re.findall(r'export="(\w+)"', listed.stdout) == ["alpha", "beta"]
            unknown = run("nbdinfo", server.uri("gamma"))
            assert unknown.returncode != 0
            assert (
                "no such file" in unknown.stderr.lower()
            )  # libnbd maps NBD_REP_ERR_UNKNOWN to ENOENT
    finally:
        for vol in volumes:
            vol.close()


def test_qemu_io_write_discard_zero_flush(served: RunningServer, tmp_path: Path) -> None:
    uri = served.uri("vol")
    done = run(
        "qemu-io", "-f", "raw",
        "-c", "write -P 0xab 0 1M",
        "-c", "write -P 0xcd -f 2M 512k",  # FUA
        "-c", "discard 256k 256k",
        "-c", "write -z 2M 64k",
        "-c", "flush",
        "-c", "read -P 0xab 0 256k",
        "-c", "read -P 0 256k 256k",
        "-c", "read -P 0xab 512k 512k",
        "-c", "read -P 0 2M 64k",
        "-c", "read -P 0xcd 2112k 448k",
        uri,
    )  # fmt: skip
    assert done.returncode == 0 and "Pattern verification failed" not in done.stdout, done.stdout
    image = (tmp_path / "vol.img").read_bytes()
    assert image[: 256 * 1024] == b"\xab" * (256 * 1024)
    assert image[256 * 1024 : 512 * 1024] == bytes(256 * 1024)
    assert image[2 * MIB : 2 * MIB + 64 * 1024] == bytes(64 * 1024)


def test_read_only_export_refuses_writes(tmp_path: Path) -> None:
    image = make_image(tmp_path / "ro.img", 4 * MIB, [(0, MIB)])
    before = image.read_bytes()
    vol = LiveVolume(image, read_only=True)
    table = ExportTable()
    table.add("ro", vol)
    try:
        with running_server(table) as server:
            wrote = run("qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", server.uri("ro"))
            assert "Operation not permitted" in wrote.stdout + wrote.stderr or wrote.returncode
            assert run("nbdcopy", server.uri("ro"), str(tmp_path / "copy.img")).returncode == 0
    finally:
        vol.close()
    assert image.read_bytes() == before == (tmp_path / "copy.img").read_bytes()


def test_detach_refuses_new_clients_and_ends_open_ones(served: RunningServer) -> None:
    client = RawClient(served.port)
    client.start()
    client.go("vol")
    assert client.write(0, b"before detach") == 0
    served.table.remove("vol")
    served.disconnect("vol")
    assert client.closed_by_server()
    assert run("nbdinfo", served.uri("vol")).returncode != 0
