"""Malformed and hostile clients: each gets an error or a closed connection; the server and
a concurrent well-behaved client carry on, and no byte outside the volume changes."""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibv.engine.live_volume import LiveVolume
from ocibv.nbd import protocol as p
from ocibv.nbd.exports import ExportTable
from tests.nbd.helpers import MIB, RawClient, RunningServer, make_image, run, running_server

SIZE = 4 * MIB


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningServer]:
    image = make_image(tmp_path / "vol.img", SIZE, [(0, MIB), (SIZE - 4096, 4096)])
    # A neighbour file right beside the image: nothing may ever touch it.
    (tmp_path / "neighbour").write_bytes(b"keep" * 1024)
    volume = LiveVolume(image)
    table = ExportTable()
    table.add("vol", volume)
    with running_server(table) as server:
        yield server
    volume.close()
    assert image.stat().st_size == SIZE
    assert (tmp_path / "neighbour").read_bytes() == b"keep" * 1024


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def healthy(server: RunningServer) -> None:
    """A well-behaved client still gets exact bytes."""
    client = RawClient(server.port)
    client.start()
    assert client.go("vol") == SIZE
    error, data = client.read(0, 4096)
    assert error == 0 and len(data) == 4096
    client.request(p.CMD_DISC, 0, 0)
    client.close()


def test_bad_client_flags_and_option_magic_close(served: RunningServer) -> None:
    c = RawClient(served.port)
    c.start(flags=0xFFFF_0000)
    assert c.closed_by_server()
    c = RawClient(served.port)
    c.start()
    c.send(struct.pack(">QII", 0xDEADBEEF, p.OPT_GO, 0))
    assert c.closed_by_server()
    healthy(served)


def test_unknown_and_malformed_options_get_errors_then_go(served: RunningServer) -> None:
    c = RawClient(served.port)
    c.start()
    c.option(200, b"whatever")
    assert c.reply()[1] == p.REP_ERR_UNSUP
    c.option(p.OPT_LIST, b"junk")
    assert c.reply()[1] == p.REP_ERR_INVALID
    c.option(p.OPT_GO, b"\xff\xff\xff\xff\x00\x00")  # name length past the payload
    assert c.reply()[1] == p.REP_ERR_INVALID
    c.option(p.OPT_GO, struct.pack(">I", 4) + b"nope" + struct.pack(">H", 0))
    assert c.reply()[1] == p.REP_ERR_UNKNOWN
    c.option(p.OPT_SET_META_CONTEXT, b"\x00")  # before structured replies, and short
    assert c.reply()[1] == p.REP_ERR_INVALID
    c.option(p.OPT_STARTTLS)  # no certificate configured
    assert c.reply()[1] == p.REP_ERR_POLICY
    assert c.go("vol") == SIZE
    assert c.read(0, 16)[0] == 0


def test_oversized_option_disconnects(served: RunningServer) -> None:
    c = RawClient(served.port)
    c.start()
    c.send(p.OPTION_HEADER.pack(p.IHAVEOPT, p.OPT_GO, 0xFFFF_FFFF))
    assert c.closed_by_server()
    healthy(served)


def test_export_name_of_unknown_export_closes(served: RunningServer) -> None:
    c = RawClient(served.port)
    c.start()
    c.option(p.OPT_EXPORT_NAME, b"missing")
    assert c.closed_by_server()


def test_abort_is_acknowledged(served: RunningServer) -> None:
    c = RawClient(served.port)
    c.start()
    c.option(p.OPT_ABORT)
    assert c.reply()[1] == p.REP_ACK
    assert c.closed_by_server()


def test_out_of_range_and_bad_requests_get_protocol_errors(
    served: RunningServer, tmp_path: Path
) -> None:
    image = tmp_path / "vol.img"
    before = hashlib.sha256(image.read_bytes()).digest()
    c = RawClient(served.port)
    c.start()
    c.go("vol")
    assert c.read(SIZE - 10, 20)[0] == p.EINVAL
    assert c.read(2**64 - 1, 1)[0] == p.EINVAL
    assert c.write(SIZE - 2, b"abcd") == p.ENOSPC
    assert c.write(2**63, b"x") == p.ENOSPC
    c.request(p.CMD_TRIM, SIZE, 4096)
    assert c.simple_reply()[0] == p.EINVAL
    c.request(p.CMD_WRITE_ZEROES, SIZE - 4096, 8192)
    assert c.simple_reply()[0] == p.ENOSPC
    c.request(p.CMD_READ, 0, p.MAX_PAYLOAD + 1)  # oversized read: refused, session goes on
    assert c.simple_reply()[0] == p.EINVAL
    c.request(99, 0, 0)
    assert c.simple_reply()[0] == p.EINVAL
    c.request(p.CMD_READ, 0, 16, flags=p.CMD_FLAG_NO_HOLE)
    assert c.simple_reply()[0] == p.EINVAL
    c.request(p.CMD_BLOCK_STATUS, 0, 4096)  # no metadata context negotiated
    assert c.simple_reply()[0] == p.EINVAL
    c.request(p.CMD_CACHE, 0, 4096)  # not advertised
    assert c.simple_reply()[0] == p.EINVAL
    error, data = c.read(SIZE - 4096, 4096)
    assert error == 0 and len(data) == 4096
    c.close()
    assert hashlib.sha256(image.read_bytes()).digest() == before


def test_structured_errors_carry_messages(served: RunningServer) -> None:
    c = RawClient(served.port)
    c.start()
    c.go("vol", structured=True, meta=True)
    c.request(p.CMD_READ, SIZE, 1, cookie=11)
    flags, kind, cookie, payload = c.structured_chunk()
    assert (flags, kind, cookie) == (p.REPLY_FLAG_DONE, p.REPLY_TYPE_ERROR, 11)
    error, length = p.ERROR_CHUNK.unpack_from(payload)
    assert error == p.EINVAL and b"beyond" in payload[6 : 6 + length]
    c.request(p.CMD_BLOCK_STATUS, 0, SIZE, cookie=12)
    flags, kind, cookie, payload = c.structured_chunk()
    assert kind == p.REPLY_TYPE_BLOCK_STATUS and cookie == 12
    descriptors = struct.unpack(f">I{(len(payload) - 4) // 4}I", payload)[1:]
    pairs = list(zip(descriptors[::2], descriptors[1::2], strict=True))
    assert pairs[0] == (MIB, 0) and sum(n for n, _ in pairs) == SIZE
    assert (p.STATE_HOLE | p.STATE_ZERO) in {f for _, f in pairs}


def test_oversized_write_payload_errors_and_closes(served: RunningServer, tmp_path: Path) -> None:
    before = (tmp_path / "vol.img").read_bytes()
    c = RawClient(served.port)
    c.start()
    c.go("vol")
    c.request(p.CMD_WRITE, 0, p.MAX_PAYLOAD + 1)
    c.send(b"\x55" * 65536)
    assert c.simple_reply()[0] == p.EINVAL
    assert c.closed_by_server()
    assert (tmp_path / "vol.img").read_bytes() == before
    healthy(served)


def test_garbage_and_abrupt_disconnects_mid_transmission(
    served: RunningServer, tmp_path: Path
) -> None:
    image = tmp_path / "vol.img"
    c = RawClient(served.port)
    c.start()
    c.go("vol")
    c.send(b"\x00" * 28)  # bad request magic: cannot resync
    assert c.closed_by_server()
    # A write whose payload never arrives in full: nothing is written.
    before = image.read_bytes()
    c = RawClient(served.port)
    c.start()
    c.go("vol")
    c.request(p.CMD_WRITE, 2 * MIB, 65536)
    c.send(b"\x77" * 1000)
    c.close()
    # Half a request header, then gone; and a client that vanishes mid-handshake.
    c = RawClient(served.port)
    c.start()
    c.go("vol")
    c.send(p.REQUEST.pack(p.REQUEST_MAGIC, 0, p.CMD_READ, 1, 0, 4096)[:10])
    c.close()
    RawClient(served.port).close()
    healthy(served)
    assert image.read_bytes() == before


def test_hostile_clients_do_not_disturb_a_concurrent_copy(
    served: RunningServer, tmp_path: Path
) -> None:
    src = make_image(tmp_path / "src.img", SIZE, [(0, SIZE)], seed=9)
    stop = threading.Event()

    def attack() -> None:
        while not stop.is_set():
            for payload in (b"\x00" * 64, p.REQUEST.pack(p.REQUEST_MAGIC, 0, 1, 1, 0, 2**31)):
                try:
                    c = RawClient(served.port, timeout=2)
                    c.start()
                    c.go("vol")
                    c.send(payload)
                    c.close()
                except (OSError, AssertionError):
                    pass

    threads = [threading.Thread(target=attack) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        copied = run("nbdcopy", str(src), served.uri("vol"))
        compared = run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(src), served.uri("vol"))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert copied.returncode == 0, copied.stderr
    assert compared.returncode == 0, compared.stdout


def test_a_client_that_never_reads_replies_is_throttled_alone(served: RunningServer) -> None:
    greedy = RawClient(served.port)
    greedy.start()
    greedy.go("vol")
    # 16 MiB of READ headers asking for 32 GiB: more than any socket buffers hold.
    one = p.REQUEST.pack(p.REQUEST_MAGIC, 0, p.CMD_READ, 1, 0, 64 * 1024)
    burst = one * (16 * MIB // len(one))
    greedy.sock.setblocking(False)
    sent = 0
    rss_before = rss_bytes()  # the server runs in this process
    deadline = time.monotonic() + 2
    while sent < len(burst) and time.monotonic() < deadline:  # until the server stops reading
        try:
            sent += greedy.sock.send(burst[sent:])
        except BlockingIOError:
            time.sleep(0.01)
    assert sent < len(burst)  # the server stopped reading from it...
    assert rss_bytes() - rss_before < 256 * MIB  # ...rather than buffer replies it won't read
    healthy(served)
    greedy.close()
    healthy(served)
