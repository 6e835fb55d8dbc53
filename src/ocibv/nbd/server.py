"""The asyncio NBD server: accepts connections, negotiates (``handshake``, on asyncio
streams), then hands each connection's transport to a ``Transmission`` protocol.

Export I/O runs in one thread pool shared by all connections. Per connection, the payload
bytes of requests in flight are bounded (``transmission.INFLIGHT_BYTES``), so a client cannot
make the server buffer without limit; at most ``MAX_CONNECTIONS`` connections are served.

A malformed or hostile client costs only its own connection: framing errors (bad request
magic, an oversized WRITE payload that cannot be skipped safely) disconnect it; a
well-framed bad request (unknown command or flag, out-of-range offset, oversized READ) gets
the protocol's error code and the connection goes on. No request ever reaches the export
outside ``[0, size)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

from ocibv.nbd.exports import Exports
from ocibv.nbd.handshake import Disconnect, Negotiator, Session
from ocibv.nbd.transmission import Budget, Transmission

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10809
MAX_CONNECTIONS = 64
"""Bounds memory against hostile clients: each may hold a 1 MiB staging buffer and one
partly received WRITE payload (at most 32 MiB) beyond the in-flight budgets."""
CLOSE_TIMEOUT = 5.0
"""Seconds a closing connection may take to flush its last replies."""
STREAM_LIMIT = 256 * 1024
"""asyncio stream buffer of the handshake (options are at most 64 KiB)."""


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
        self._budget = Budget()
        self.requests_served = 0
        """Commands received from clients, every connection together (on the event loop)."""

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
                await self._transmit(reader, writer, session)
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
            transmitted = self._serving.pop(task, None) is not None
            writer.close()
            if not transmitted:  # (after the hand-over the stream protocol never hears of it)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)

    async def _transmit(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session
    ) -> None:
        """Hand the connection to a ``Transmission`` protocol until it is over. Cancelled
        (``disconnect``, ``close``): stop reading, answer what is in flight, then end."""
        transmission = Transmission(self, session, self._budget)
        # Bytes the client sent right after its GO are already in the stream's buffer
        # (a private attribute, stable across Python versions); they are its first requests.
        leftover = bytes(getattr(reader, "_buffer", b""))
        transmission.start(cast(asyncio.Transport, writer.transport), leftover)
        try:
            await asyncio.shield(transmission.finished)
        except asyncio.CancelledError:
            transmission.shutdown("server stopped serving this export")
            await transmission.finished
            raise
        finally:
            transport = writer.transport
            transport.close()  # flushes the replies first; a client that reads none is cut
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(transmission.lost), CLOSE_TIMEOUT)
            transport.abort()

    async def run_io(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
