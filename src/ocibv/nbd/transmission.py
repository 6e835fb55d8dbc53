"""The transmission phase of one connection: an ``asyncio.BufferedProtocol`` that parses
requests straight out of the socket into reusable buffers.

The socket is read into a staging buffer (``recv_into``); a large WRITE payload is read
straight into its own buffer, taken from a small free list, so its bytes are copied once
(kernel to buffer) before ``pwrite``. Through asyncio streams every payload was copied twice
more and each 256 KiB allocation cost fresh page faults (measured: readexactly and the
buffer growth were ~2.2 s of CPU per GiB written).

Dispatch, all on the event loop: a READ whose bytes are in the page cache is answered at
once (``Export.read_cached``); other reads and BLOCK_STATUS run in the thread pool as tasks;
a WRITE of at most ``WRITE_NOW_BYTES`` without FUA, with nothing of its connection queued,
is written at once when the export can take it without waiting (``Export.write_now``);
other WRITE/TRIM/WRITE_ZEROES/FLUSH go through the connection's ``WriteQueue``. Back-pressure: when
more than ``INFLIGHT_BYTES`` of payload are in flight, or the transport's write buffer is
full, the protocol stops reading from the socket until it drains.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ocibv.nbd import protocol as p
from ocibv.nbd.handshake import BASE_ALLOCATION_ID, Session
from ocibv.nbd.requests import QUEUED, check_request, nbd_errno, nothing
from ocibv.nbd.write_queue import Outcome, WriteQueue

if TYPE_CHECKING:
    from ocibv.nbd.server import NbdServer

log = logging.getLogger(__name__)

INFLIGHT_BYTES = 64 * 1024 * 1024
"""Payload bytes (READ replies and WRITE data) one connection may have in flight."""
SERVER_INFLIGHT_BYTES = 256 * 1024 * 1024
"""The same, summed over every connection of a server."""
STAGING_BYTES = 1024 * 1024
"""Staging buffer: many small requests per ``recv``; larger payloads bypass it."""
DIRECT_PAYLOAD = 64 * 1024
"""WRITE payloads at least this large are received straight into their own buffer."""
WRITE_NOW_BYTES = 64 * 1024
"""WRITE payloads up to this size may be written on the event loop (``_write_now``)."""
FREE_BYTES = 16 * 1024 * 1024
"""Payload buffers kept for reuse per connection (a fresh one costs zeroing and page faults;
nbdcopy keeps 64 requests of 256 KiB in flight per connection)."""


class Budget:
    """Payload bytes in flight across a server's connections. A connection over budget
    stops reading at its next request boundary and is resumed when bytes are released."""

    def __init__(self, limit: int = SERVER_INFLIGHT_BYTES) -> None:
        self.limit, self.used = limit, 0
        self.waiting: set[Transmission] = set()

    def release(self, n: int) -> None:
        self.used -= n
        if self.used < self.limit:
            for waiter in list(self.waiting):
                waiter._flow()


class Transmission(asyncio.BufferedProtocol):
    """Serves one negotiated session; ``finished`` resolves when the connection is over
    (DISC answered, a framing error, or the client gone) and every request was answered."""

    def __init__(self, server: NbdServer, session: Session, budget: Budget) -> None:
        self.server, self.session, self.export = server, session, session.export
        self.budget = budget
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()  # the transport closed
        self._settler: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.writes: WriteQueue[tuple[p.Request, int, bytearray | None]] = WriteQueue(
            self.loop, server.pool, self._writes_done
        )
        self._stage = bytearray(STAGING_BYTES)
        self._start = self._end = 0  # unparsed bytes: _stage[_start:_end]
        self._payload: bytearray | None = None  # a WRITE payload being received directly
        self._payload_pos = 0
        self._pending: p.Request | None = None  # the WRITE whose payload is awaited
        self._free: list[bytearray] = []
        self._free_bytes = 0
        # the last request was a large WRITE: read the next header alone, so that its
        # payload lands straight in its own buffer instead of the staging buffer (a copy)
        self._bulk = False
        self._inflight = 0
        self._write_paused = False
        self._reading = True
        self._closing = False  # DISC or a fatal error: parse nothing more

    # -- asyncio protocol -------------------------------------------------------------------

    def start(self, transport: asyncio.Transport, leftover: bytes) -> None:
        """Take over ``transport`` (negotiation's stream), with bytes it had already read."""
        self.transport = transport
        transport.set_protocol(self)
        self._stage[: len(leftover)] = leftover
        self._end = len(leftover)
        if not transport.is_reading():
            transport.resume_reading()
        self._parse()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._closing:  # bytes after DISC or a fatal error are dropped, never parsed
            return memoryview(self._stage)[: min(len(self._stage), 65536)]
        if self._payload is not None:
            return memoryview(self._payload)[self._payload_pos :]
        if self._end == len(self._stage) or (
            self._bulk and self._end + p.REQUEST.size > len(self._stage)
        ):  # compact: move the unparsed tail to the front
            tail = self._end - self._start
            self._stage[:tail] = self._stage[self._start : self._end]
            self._start, self._end = 0, tail
        if self._bulk and self._end < self._start + p.REQUEST.size:
            return memoryview(self._stage)[self._end : self._start + p.REQUEST.size]
        return memoryview(self._stage)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._closing:
            return  # landed in the scratch area get_buffer gave out
        if self._payload is not None:
            self._payload_pos += nbytes
            if self._payload_pos < len(self._payload):
                return
            request, payload = self._pending, self._payload
            self._payload, self._pending = None, None
            assert request is not None
            self._dispatch(request, payload)
        else:
            self._end += nbytes
        self._parse()

    def eof_received(self) -> bool:
        self._stop()
        return True  # half-closed: still answer what was asked (the server closes after)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if not self.lost.done():
            self.lost.set_result(None)
        self._stop()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._flow()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._flow()

    # -- parsing ------------------------------------------------------------------------------

    def _flow(self) -> None:
        """Read from the socket only while the client is within its budget."""
        server_full = self.budget.used >= self.budget.limit
        if server_full and not self._closing:
            self.budget.waiting.add(self)
        else:
            self.budget.waiting.discard(self)
        want = (
            not self._closing
            and not self._write_paused
            and self._inflight < INFLIGHT_BYTES
            and not server_full
        )
        if self.transport is None or want == self._reading:
            return
        self._reading = want
        if want:
            self.transport.resume_reading()
            self._parse()
        else:
            self.transport.pause_reading()

    def _parse(self) -> None:
        while not self._closing and self._reading and self._payload is None:
            if self._end - self._start < p.REQUEST.size:
                return
            magic, *fields = p.REQUEST.unpack_from(self._stage, self._start)
            if magic != p.REQUEST_MAGIC:
                self._fatal("bad request magic")
                return
            request = p.Request(*fields)
            self._start += p.REQUEST.size
            if request.type == p.CMD_DISC:
                self._fatal("client disconnected")  # stops reading; answers what is in flight
                return
            self._bulk = request.type == p.CMD_WRITE and request.length >= DIRECT_PAYLOAD
            if request.type != p.CMD_WRITE:
                self._dispatch(request, None)
                continue
            if request.length > p.MAX_PAYLOAD:
                # The payload cannot be skipped without reading it all: refuse, then
                # disconnect (the protocol allows that for a DoS-sized payload).
                self._send(self._error_bytes(request, p.EINVAL, "write payload too large"))
                self._fatal("oversized write payload")
                return
            available = self._end - self._start
            if request.length <= available:
                payload = self._buffer(request.length)
                payload[:] = memoryview(self._stage)[self._start : self._start + request.length]
                self._start += request.length
                self._dispatch(request, payload)
            elif request.length >= DIRECT_PAYLOAD or request.length > len(self._stage) // 2:
                payload = self._buffer(request.length)
                payload[:available] = memoryview(self._stage)[self._start : self._end]
                self._start = self._end = 0
                self._payload, self._payload_pos, self._pending = payload, available, request
            else:
                self._start -= p.REQUEST.size  # wait for the rest of a small payload
                return

    def _buffer(self, n: int) -> bytearray:
        free = self._free
        for i in range(len(free) - 1, -1, -1):  # the most recently used first: cache-warm
            if len(free[i]) == n:
                self._free_bytes -= n
                return free.pop(i)
        return bytearray(n)

    def _recycle(self, buf: bytearray | None) -> None:
        if buf is None or not DIRECT_PAYLOAD <= len(buf) <= FREE_BYTES:
            return
        while self._free_bytes + len(buf) > FREE_BYTES:
            self._free_bytes -= len(self._free.pop(0))  # keep the sizes in use now
        self._free.append(buf)
        self._free_bytes += len(buf)

    def shutdown(self, reason: str) -> None:
        """Read no more requests; ``finished`` resolves once those in flight are answered."""
        self._fatal(reason)

    def _fatal(self, reason: str) -> None:
        log.debug("nbd %s: disconnecting: %s", self.session.export_name, reason)
        self._closing = True
        if self.transport is not None:
            self.transport.pause_reading()
        self._stop()

    def _stop(self) -> None:
        """No more requests: once every one in flight is answered, the connection is over."""
        self._closing = True
        self.budget.waiting.discard(self)
        if self._settler is not None:
            return

        async def settle() -> None:
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.writes.idle()
            if not self.finished.done():
                self.finished.set_result(None)

        self._settler = self.loop.create_task(settle())  # referenced: tasks are weak otherwise

    # -- requests -----------------------------------------------------------------------------

    def _hold(self, n: int) -> int:
        self._inflight += n
        self.budget.used += n
        self._flow()
        return n

    def _release(self, n: int) -> None:
        if n:
            self._inflight -= n
            self.budget.release(n)
            self._flow()

    def _send(self, *parts: bytes | bytearray | memoryview) -> None:
        if self.transport is not None and not self.transport.is_closing():
            for part in parts:  # separate writes: joining would copy the payload
                self.transport.write(part)

    def _error_bytes(self, request: p.Request, error: int, message: str) -> bytes:
        if self.session.structured:
            return p.error_chunk(request.cookie, error, message)
        return p.simple_reply(request.cookie, error)

    def _done_bytes(self, request: p.Request) -> bytes:
        if self.session.structured:
            return p.structured_header(request.cookie, p.REPLY_TYPE_NONE, 0, done=True)
        return p.simple_reply(request.cookie)

    def _send_read(self, r: p.Request, payload: bytes | bytearray) -> None:
        if self.session.structured:
            header = p.structured_header(
                r.cookie, p.REPLY_TYPE_OFFSET_DATA, 8 + len(payload), done=True
            )
            self._send(header + p.U64.pack(r.offset), payload)
        else:
            self._send(p.simple_reply(r.cookie), payload)

    def _dispatch(self, r: p.Request, payload: bytearray | None) -> None:
        self.server.requests_served += 1
        refusal = check_request(r, self.export, self.session)
        if refusal is not None:
            self._send(self._error_bytes(r, *refusal))
            self._recycle(payload)
            return
        if r.type in QUEUED:
            self._queue(r, payload)
        elif r.type == p.CMD_READ and not r.length:
            self._send(self._done_bytes(r))
        elif r.type == p.CMD_READ and self._read_cached(r):
            return
        else:
            held = self._hold(r.length) if r.type == p.CMD_READ else 0
            task = self.loop.create_task(self._serve(r, held))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _read_cached(self, r: p.Request) -> bool:
        """Answer a READ on the event loop when its bytes are all in the page cache: a
        thread-pool round trip costs more than the copy (measured; docs/design.md)."""
        try:
            payload = self.export.read_cached(r.offset, r.length)
        except OSError:
            return False  # the pool path reports it
        if payload is None:
            return False
        self._send_read(r, payload)
        return True

    async def _serve(self, r: p.Request, held: int) -> None:
        run_io = self.server.run_io
        try:
            if r.type == p.CMD_READ:
                self._send_read(r, await run_io(self.export.read, r.offset, r.length))
            else:
                extents = await run_io(self.export.block_status, r.offset, r.length)
                if r.flags & p.CMD_FLAG_REQ_ONE:
                    extents = extents[:1]
                described = [
                    (length, p.STATE_HOLE | p.STATE_ZERO if hole else 0)
                    for length, hole in extents[: p.MAX_STATUS_DESCRIPTORS]
                ]
                self._send(p.block_status_chunk(r.cookie, BASE_ALLOCATION_ID, described))
        except OSError as exc:
            log.warning("nbd %s: command %d failed: %s", self.session.export_name, r.type, exc)
            self._send(self._error_bytes(r, nbd_errno(exc), str(exc)))
        finally:
            self._release(held)

    def _write_now(self, r: p.Request, payload: bytearray) -> bool:
        """Answer a small WRITE on the event loop when nothing is queued before it and the
        export can take it at once (``Export.write_now``): the thread-pool round trip cost
        1-4 ms at p99 while a backup kept both cores busy, the write itself ~0.1 ms."""
        if len(payload) > WRITE_NOW_BYTES or r.flags & p.CMD_FLAG_FUA or self.writes.busy:
            return False
        outcome: BaseException | None = None
        try:
            if not self.export.write_now(r.offset, payload):
                return False
        except Exception as exc:  # answered as the queued path answers it
            outcome = exc
        self._send(self._outcome_bytes(r, outcome))
        self._recycle(payload)
        return True

    def _queue(self, r: p.Request, payload: bytearray | None) -> None:
        export, fua = self.export, bool(r.flags & p.CMD_FLAG_FUA)
        job: Callable[[], None]
        held = 0
        if r.type == p.CMD_WRITE and payload is not None and self._write_now(r, payload):
            return
        if r.type == p.CMD_WRITE:
            assert payload is not None
            held = self._hold(len(payload))
            job = functools.partial(export.write, r.offset, payload, fua=fua)
        elif r.type == p.CMD_FLUSH:
            job = export.flush
        elif r.type == p.CMD_TRIM:
            job = functools.partial(export.trim, r.offset, r.length, fua=fua)
        else:
            may_trim = not r.flags & p.CMD_FLAG_NO_HOLE
            job = functools.partial(export.zero, r.offset, r.length, may_trim=may_trim, fua=fua)
        if r.type != p.CMD_FLUSH and not r.length:
            job = nothing
        self.writes.submit((r, held, payload), job)

    def _writes_done(
        self, outcomes: list[Outcome[tuple[p.Request, int, bytearray | None]]]
    ) -> None:
        """Reply to a batch of finished queued commands (on the loop), in one socket write."""
        replies: list[bytes] = []
        released = 0
        for (r, held, payload), exc in outcomes:
            self._recycle(payload)
            released += held
            replies.append(self._outcome_bytes(r, exc))
        self._send(b"".join(replies))
        self._release(released)

    def _outcome_bytes(self, r: p.Request, exc: BaseException | None) -> bytes:
        """The reply to a finished mutating command: done, the errno of an OSError, or EIO
        for anything else (logged; the connection goes on)."""
        if exc is None:
            return self._done_bytes(r)
        if isinstance(exc, OSError):
            log.warning("nbd %s: command %d failed: %s", self.session.export_name, r.type, exc)
            return self._error_bytes(r, nbd_errno(exc), str(exc))
        log.error("nbd %s: command %d failed", self.session.export_name, r.type, exc_info=exc)
        return self._error_bytes(r, p.EIO, "internal error")
