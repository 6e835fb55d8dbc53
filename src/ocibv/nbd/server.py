"""The asyncio NBD server: accepts connections, negotiates, serves the transmission phase.

Each connection reads request headers in order and runs each request as its own task, so a
slow read does not hold up the requests behind it; replies go out whole (header and payload
in one write) in completion order, as the protocol allows. Export I/O runs in a thread pool
shared by all connections. Per connection, the payload bytes of requests in flight are
bounded (``INFLIGHT_BYTES``), so a client cannot make the server buffer without limit.

A malformed or hostile client costs only its own connection: framing errors (bad request
magic, an oversized WRITE payload that cannot be skipped safely) disconnect it; a
well-framed bad request (unknown command or flag, out-of-range offset, oversized READ) gets
the protocol's error code and the connection goes on. No request ever reaches the export
outside ``[0, size)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ocibv.nbd import protocol as p
from ocibv.nbd.exports import Exports
from ocibv.nbd.handshake import BASE_ALLOCATION_ID, Disconnect, Negotiator, Session
from ocibv.nbd.write_queue import Outcome, WriteQueue

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10809
INFLIGHT_BYTES = 64 * 1024 * 1024
"""Payload bytes (READ replies and WRITE data) one connection may have in flight."""
MAX_CONNECTIONS = 256
STREAM_LIMIT = 4 * 1024 * 1024
"""asyncio stream buffer: large enough that a 32 MiB WRITE does not pause the socket often."""

# Flags each command accepts (FUA is valid on every command per the protocol).
_ALLOWED_FLAGS = {
    p.CMD_READ: p.CMD_FLAG_FUA | p.CMD_FLAG_DF,
    p.CMD_WRITE: p.CMD_FLAG_FUA,
    p.CMD_DISC: p.CMD_FLAG_FUA,
    p.CMD_FLUSH: p.CMD_FLAG_FUA,
    p.CMD_TRIM: p.CMD_FLAG_FUA,
    p.CMD_WRITE_ZEROES: p.CMD_FLAG_FUA | p.CMD_FLAG_NO_HOLE,
    p.CMD_BLOCK_STATUS: p.CMD_FLAG_FUA | p.CMD_FLAG_REQ_ONE,
}
_WRITING = (p.CMD_WRITE, p.CMD_TRIM, p.CMD_WRITE_ZEROES)
_QUEUED = (*_WRITING, p.CMD_FLUSH)  # run in order through the connection's WriteQueue


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only the loopback interface (NBD has no authentication)."""
    return host in ("localhost", "::1") or host.startswith("127.")


class NbdServer:
    """Serves ``exports`` on ``host:port`` (port 0 picks a free one, see ``port``).

    ``tls`` offers NBD_OPT_STARTTLS; ``tls_required`` refuses everything else until TLS is
    up and is forced on whenever ``host`` is not loopback (ValueError without ``tls``).
    """

    def __init__(
        self,
        exports: Exports,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        tls: ssl.SSLContext | None = None,
        tls_required: bool = False,
        io_threads: int = 8,
    ) -> None:
        if not is_loopback(host):
            if tls is None:
                raise ValueError(f"NBD on non-loopback {host} needs a TLS certificate")
            tls_required = True
        self.exports, self.host, self._port = exports, host, port
        self.tls, self.tls_required = tls, tls_required
        self.pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="ocibv-nbd")
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._serving: dict[asyncio.Task[None], str] = {}  # connection -> export name

    @property
    def port(self) -> int:
        """The bound port (after ``start``)."""
        return self._port

    def uri(self, export_name: str) -> str:
        """The NBD URI a client uses for ``export_name`` (nbds:// when TLS is required)."""
        scheme = "nbds" if self.tls_required else "nbd"
        return f"{scheme}://{self.host}:{self.port}/{export_name}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self._port, limit=STREAM_LIMIT, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def disconnect(self, export_name: str) -> None:
        """End every connection in transmission on ``export_name`` and wait for them (their
        requests in flight are answered first); for detach, after ``Exports.remove``."""
        tasks = [t for t, name in self._serving.items() if name == export_name]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop listening, end every connection, wait for them, stop the I/O threads."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self.pool.shutdown(wait=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections.add(task)
        try:
            negotiator = Negotiator(
                reader, writer, self.exports, tls=self.tls, tls_required=self.tls_required
            )
            session = await negotiator.negotiate()
            if session is not None:
                self._serving[task] = session.export_name
                await _Transmission(self, reader, writer, session).run()
        except (Disconnect, asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            log.debug("nbd connection ended: %s", exc)
        except ssl.SSLError as exc:
            log.info("nbd TLS error: %s", exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("nbd connection failed")
        finally:
            self._connections.discard(task)
            self._serving.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def run_io(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


class _Budget:
    """Bytes in flight for one connection; a request larger than the budget waits for all.
    Waiters are served in order (no starvation of a large request)."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.free = capacity, capacity
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, n: int) -> int:
        n = min(n, self.capacity)
        if self.free >= n and not self._waiters:
            self.free -= n
            return n
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((n, waiter))
        await waiter
        return n

    def release(self, n: int) -> None:
        self.free += n
        while self._waiters and self._waiters[0][0] <= self.free:
            wanted, waiter = self._waiters.popleft()
            if not waiter.done():
                self.free -= wanted
                waiter.set_result(None)


def _nothing() -> None:
    pass


def _nbd_errno(exc: OSError) -> int:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return p.ENOSPC
    if exc.errno == errno.EPERM or exc.errno == errno.EACCES:
        return p.EPERM
    return p.EIO


class _Transmission:
    def __init__(
        self,
        server: NbdServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: Session,
    ) -> None:
        self.server, self.reader, self.writer, self.session = server, reader, writer, session
        self.export = session.export
        self.budget = _Budget(INFLIGHT_BYTES)
        self.tasks: set[asyncio.Task[None]] = set()
        self._drain_lock = asyncio.Lock()
        self.writes: WriteQueue[tuple[p.Request, int]] = WriteQueue(
            asyncio.get_running_loop(), server.pool, self._writes_done
        )

    async def run(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(p.REQUEST.size)
                magic, *fields = p.REQUEST.unpack(header)
                if magic != p.REQUEST_MAGIC:
                    raise Disconnect("bad request magic")
                request = p.Request(*fields)
                if request.type == p.CMD_DISC:
                    break
                data = b""
                held = 0
                if request.type == p.CMD_WRITE:
                    if request.length > p.MAX_PAYLOAD:
                        # The payload cannot be skipped without reading it all: refuse, then
                        # disconnect (the protocol allows that for a DoS-sized payload).
                        await self._error(request, p.EINVAL, "write payload too large")
                        raise Disconnect("oversized write payload")
                    held = await self.budget.acquire(request.length)
                    data = await self.reader.readexactly(request.length)
                elif request.type == p.CMD_READ and request.length <= p.MAX_PAYLOAD:
                    if await self._read_cached(request):
                        continue
                    held = await self.budget.acquire(request.length)
                if request.type in _QUEUED:
                    self._queue(request, data, held)
                    continue
                task = asyncio.create_task(self._serve(request, data, held))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            # Answer what was asked before DISC or a disconnect.
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.writes.idle()

    def _queue(self, r: p.Request, data: bytes, held: int) -> None:
        refusal = self._check(r)
        if refusal is not None:
            self.writer.write(self._error_bytes(r, *refusal))
            self.budget.release(held)
            return
        export, fua = self.export, bool(r.flags & p.CMD_FLAG_FUA)
        job: Callable[[], None]
        if r.type == p.CMD_WRITE:
            job = functools.partial(export.write, r.offset, data, fua=fua)
        elif r.type == p.CMD_FLUSH:
            job = export.flush
        elif r.type == p.CMD_TRIM:
            job = functools.partial(export.trim, r.offset, r.length, fua=fua)
        else:
            may_trim = not r.flags & p.CMD_FLAG_NO_HOLE
            job = functools.partial(export.zero, r.offset, r.length, may_trim=may_trim, fua=fua)
        if r.type != p.CMD_FLUSH and not r.length:
            job = _nothing
        self.writes.submit((r, held), job)

    def _writes_done(self, outcomes: list[Outcome[tuple[p.Request, int]]]) -> None:
        """Reply to a batch of finished queued commands (on the loop; replies are small, so
        no drain: the byte budget already bounds what a client can have outstanding)."""
        for (r, held), exc in outcomes:
            self.budget.release(held)
            if exc is None:
                self.writer.write(self._done_bytes(r))
            elif isinstance(exc, OSError):
                log.warning("nbd %s: command %d failed: %s", self.session.export_name, r.type, exc)
                self.writer.write(self._error_bytes(r, _nbd_errno(exc), str(exc)))
            else:
                log.error(
                    "nbd %s: command %d failed", self.session.export_name, r.type, exc_info=exc
                )
                self.writer.write(self._error_bytes(r, p.EIO, "internal error"))

    async def _send(self, *parts: bytes | bytearray) -> None:
        for part in parts:  # no await in between: a reply is never interleaved with another
            self.writer.write(part)  # (separate writes: joining would copy the payload)
        async with self._drain_lock:
            await self.writer.drain()

    async def _read_cached(self, r: p.Request) -> bool:
        """Answer a READ on the event loop when its bytes are all in the page cache: a
        thread-pool round trip costs more than the copy (measured; docs/design.md)."""
        if self._check(r) is not None or not r.length:
            return False
        try:
            payload = self.export.read_cached(r.offset, r.length)
        except OSError:
            return False  # the pool path reports it
        if payload is None:
            return False
        await self._send_read(r, payload)
        return True

    async def _send_read(self, r: p.Request, payload: bytes | bytearray) -> None:
        if self.session.structured:
            header = p.structured_header(
                r.cookie, p.REPLY_TYPE_OFFSET_DATA, 8 + len(payload), done=True
            )
            await self._send(header + p.U64.pack(r.offset), payload)
        else:
            await self._send(p.simple_reply(r.cookie), payload)

    def _error_bytes(self, request: p.Request, error: int, message: str) -> bytes:
        if self.session.structured:
            return p.error_chunk(request.cookie, error, message)
        return p.simple_reply(request.cookie, error)

    def _done_bytes(self, request: p.Request) -> bytes:
        if self.session.structured:
            return p.structured_header(request.cookie, p.REPLY_TYPE_NONE, 0, done=True)
        return p.simple_reply(request.cookie)

    async def _error(self, request: p.Request, error: int, message: str) -> None:
        await self._send(self._error_bytes(request, error, message))

    async def _done(self, request: p.Request) -> None:
        await self._send(self._done_bytes(request))

    def _check(self, r: p.Request) -> tuple[int, str] | None:
        """The protocol error for a well-framed request this server refuses, or None."""
        if r.type not in _ALLOWED_FLAGS:
            return p.EINVAL, f"unknown command {r.type}"
        if r.flags & ~_ALLOWED_FLAGS[r.type]:
            return p.EINVAL, f"flags {r.flags:#x} not valid for command {r.type}"
        if r.type in _WRITING and self.export.read_only:
            return p.EPERM, "read-only export"
        if r.type == p.CMD_FLUSH:
            return None
        if r.type == p.CMD_READ and r.length > p.MAX_PAYLOAD:
            return p.EINVAL, f"read of {r.length} bytes exceeds {p.MAX_PAYLOAD}"
        if r.offset + r.length > self.export.size:
            beyond = p.ENOSPC if r.type in (p.CMD_WRITE, p.CMD_WRITE_ZEROES) else p.EINVAL
            return beyond, "request beyond the end of the export"
        if r.type == p.CMD_BLOCK_STATUS:
            if not self.session.base_allocation:
                return p.EINVAL, "no metadata context negotiated"
            if r.length == 0:
                return p.EINVAL, "empty block status request"
        return None

    async def _serve(self, r: p.Request, data: bytes, held: int) -> None:
        try:
            refusal = self._check(r)
            if refusal is not None:
                await self._error(r, *refusal)
                return
            try:
                await self._execute(r, data)
            except OSError as exc:
                log.warning("nbd %s: command %d failed: %s", self.session.export_name, r.type, exc)
                await self._error(r, _nbd_errno(exc), str(exc))
        except (ConnectionError, RuntimeError):
            pass  # the client went away; nothing to answer
        finally:
            self.budget.release(held)

    async def _execute(self, r: p.Request, data: bytes) -> None:
        export, io = self.export, self.server.run_io
        if r.type == p.CMD_READ:
            if not r.length:
                await self._done(r)
            else:
                await self._send_read(r, await io(export.read, r.offset, r.length))
            return
        if r.type == p.CMD_BLOCK_STATUS:
            await self._block_status(r)
        else:  # queued commands never get here
            await self._error(r, p.EINVAL, f"unexpected command {r.type}")

    async def _block_status(self, r: p.Request) -> None:
        extents = await self.server.run_io(self.export.block_status, r.offset, r.length)
        if r.flags & p.CMD_FLAG_REQ_ONE:
            extents = extents[:1]
        described = [
            (length, p.STATE_HOLE | p.STATE_ZERO if hole else 0)
            for length, hole in extents[: p.MAX_STATUS_DESCRIPTORS]
        ]
        await self._send(p.block_status_chunk(r.cookie, BASE_ALLOCATION_ID, described))
