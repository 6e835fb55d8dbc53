"""Pipelined requests of every size through the staging and direct-payload paths land
exactly (and are counted); requests sent together with GO are not lost; DISC answers what
is in flight."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibv.engine.live_volume import LiveVolume
from ocibv.nbd import protocol as p
from ocibv.nbd.exports import ExportTable
from tests.nbd.helpers import MIB, RawClient, RunningServer, running_server

SIZE = 8 * MIB


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningServer]:
    image = tmp_path / "vol.img"
    with open(image, "wb") as f:
        f.truncate(SIZE)
    volume = LiveVolume(image)
    table = ExportTable()
    table.add("vol", volume)
    with running_server(table) as server:
        yield server
    volume.close()


def test_pipelined_writes_of_every_size_land_exactly(served: RunningServer, tmp_path: Path) -> None:
    rng = random.Random(4)
    expected = bytearray(SIZE)
    stream = bytearray()
    cookies = set()
    for cookie in range(200):
        length = rng.choice([1, 27, 512, 4096, 65535, 65536, 300_000, 2 * MIB + 3])
        offset = rng.randrange(0, SIZE - length)
        data = rng.randbytes(length)
        expected[offset : offset + length] = data
        stream += p.REQUEST.pack(p.REQUEST_MAGIC, 0, p.CMD_WRITE, cookie, offset, length) + data
        cookies.add(cookie)
    c = RawClient(served.port, timeout=30)
    c.start()
    c.go("vol")
    c.send(bytes(stream))  # all at once: requests straddle every receive boundary
    for _ in range(len(cookies)):
        error, cookie = c.simple_reply()
        assert error == 0
        cookies.discard(cookie)
    c.request(p.CMD_FLUSH, 0, 0)
    assert c.simple_reply()[0] == 0
    assert (tmp_path / "vol.img").read_bytes() == expected
    assert served.server.requests_served == 201  # what a backup helper yields a CPU for


def test_requests_sent_with_go_and_disc_are_answered(served: RunningServer, tmp_path: Path) -> None:
    (tmp_path / "vol.img").write_bytes(b"\x42" * SIZE)
    c = RawClient(served.port)
    c.start()
    go = p.OPTION_HEADER.pack(p.IHAVEOPT, p.OPT_GO, 9) + struct.pack(">I", 3) + b"vol\x00\x00"
    reads = b"".join(
        p.REQUEST.pack(p.REQUEST_MAGIC, 0, p.CMD_READ, i, i * MIB, 4096) for i in range(4)
    )
    c.send(go + reads + p.REQUEST.pack(p.REQUEST_MAGIC, 0, p.CMD_DISC, 99, 0, 0))
    replies = c.replies_until_final()
    assert replies[-1][0] == p.REP_ACK
    for _ in range(4):
        error, _cookie = c.simple_reply()
        assert error == 0 and c.recv(4096) == b"\x42" * 4096
    assert c.closed_by_server()
