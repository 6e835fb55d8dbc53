"""An in-process NBD server on a free loopback port (its own event loop thread), images,
and a raw-socket client for protocol-level tests."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import uvloop

from ocibv.nbd import protocol as p
from ocibv.nbd.exports import ExportTable
from ocibv.nbd.server import NbdServer

MIB = 1024 * 1024


class RunningServer:
    def __init__(
        self, server: NbdServer, table: ExportTable, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.server, self.table, self.loop = server, table, loop

    def disconnect(self, name: str) -> None:
        asyncio.run_coroutine_threadsafe(self.server.disconnect(name), self.loop).result(10)

    @property
    def port(self) -> int:
        return self.server.port

    def uri(self, name: str) -> str:
        return self.server.uri(name)


@contextmanager
def running_server(
    table: ExportTable, *, tls: ssl.SSLContext | None = None, tls_required: bool = False
) -> Iterator[RunningServer]:
    """Start ``NbdServer`` on 127.0.0.1:0 in a thread with its own loop; stop it on exit."""
    # The stdlib loop by default; OCIBV_TEST_UVLOOP=1 runs the suite on uvloop, which is
    # what `ocibv serve` gets through uvicorn.
    loop = (
        uvloop.new_event_loop() if os.environ.get("OCIBV_TEST_UVLOOP") else asyncio.new_event_loop()
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = NbdServer(table, port=0, tls=tls, tls_required=tls_required)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield RunningServer(server, table, loop)
    finally:
        future: Future[None] = asyncio.run_coroutine_threadsafe(server.close(), loop)
        future.result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def make_image(path: Path, size: int, extents: list[tuple[int, int]], seed: int = 1) -> Path:
    """A sparse image of ``size`` with random data at each ``(offset, length)``."""
    rng = __import__("random").Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in extents:
            f.seek(offset)
            f.write(rng.randbytes(length))
    return path


def run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


class RawClient:
    """A minimal NBD client over a plain socket, for tests that break the rules."""

    def __init__(self, port: int, *, timeout: float = 5.0) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout
        )
        # a request header and its payload go in two sends: without this, Nagle and delayed
        # ACKs cost every write ~40 ms
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        magic, opt_magic, flags = p.GREETING.unpack(self.recv(18))
        assert (magic, opt_magic) == (p.NBDMAGIC, p.IHAVEOPT)
        assert flags & p.FLAG_FIXED_NEWSTYLE
        self.structured = False

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} of {n} bytes")
            out += chunk
        return bytes(out)

    def closed_by_server(self) -> bool:
        """True when the server has closed the connection (EOF or reset)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def start(self, flags: int = p.FLAG_C_FIXED_NEWSTYLE | p.FLAG_C_NO_ZEROES) -> None:
        self.send(struct.pack(">I", flags))

    def option(self, option: int, data: bytes = b"") -> None:
        self.send(p.OPTION_HEADER.pack(p.IHAVEOPT, option, len(data)) + data)

    def reply(self) -> tuple[int, int, bytes]:
        magic, option, reply_type, length = p.OPTION_REPLY_HEADER.unpack(self.recv(20))
        assert magic == p.OPTION_REPLY_MAGIC
        return option, reply_type, self.recv(length)

    def replies_until_final(self) -> list[tuple[int, bytes]]:
        out = []
        while True:
            _, reply_type, data = self.reply()
            out.append((reply_type, data))
            if reply_type not in (p.REP_SERVER, p.REP_INFO, p.REP_META_CONTEXT):
                return out

    def go(self, name: str, *, structured: bool = False, meta: bool = False) -> int:
        """Negotiate and enter transmission; returns the export size."""
        if structured:
            self.option(p.OPT_STRUCTURED_REPLY)
            assert self.reply()[1] == p.REP_ACK
            self.structured = True
        raw = name.encode()
        if meta:
            query = p.BASE_ALLOCATION.encode()
            body = struct.pack(">I", len(raw)) + raw + struct.pack(">II", 1, len(query)) + query
            self.option(p.OPT_SET_META_CONTEXT, body)
            assert self.replies_until_final()[-1][0] == p.REP_ACK
        self.option(p.OPT_GO, struct.pack(">I", len(raw)) + raw + struct.pack(">H", 0))
        replies = self.replies_until_final()
        assert replies[-1][0] == p.REP_ACK, replies
        info = next(d for t, d in replies if t == p.REP_INFO and d[:2] == b"\x00\x00")
        _, size, _ = p.INFO_EXPORT_DATA.unpack(info)
        return int(size)

    def request(
        self, cmd: int, offset: int, length: int, *, flags: int = 0, cookie: int = 7
    ) -> None:
        self.send(p.REQUEST.pack(p.REQUEST_MAGIC, flags, cmd, cookie, offset, length))

    def simple_reply(self) -> tuple[int, int]:
        """(error, cookie) of a simple reply header."""
        magic, error, cookie = p.SIMPLE_REPLY.unpack(self.recv(16))
        assert magic == p.SIMPLE_REPLY_MAGIC
        return error, cookie

    def structured_chunk(self) -> tuple[int, int, int, bytes]:
        """(flags, type, cookie, payload) of one structured reply chunk."""
        magic, flags, reply_type, cookie, length = p.STRUCTURED_REPLY.unpack(self.recv(20))
        assert magic == p.STRUCTURED_REPLY_MAGIC
        return flags, reply_type, cookie, self.recv(length)

    def write(self, offset: int, data: bytes) -> int:
        self.request(p.CMD_WRITE, offset, len(data))
        self.send(data)
        return self.simple_reply()[0]

    def read(self, offset: int, length: int) -> tuple[int, bytes]:
        self.request(p.CMD_READ, offset, length)
        error, _ = self.simple_reply()
        return error, (self.recv(length) if error == 0 else b"")


def urandom_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data
