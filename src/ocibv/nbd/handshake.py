"""Fixed newstyle negotiation: greeting, option haggling, STARTTLS, the move to transmission.

``negotiate`` returns the chosen export and what was agreed (structured replies, the
base:allocation context), or None when the client aborted or must be disconnected. A client
that breaks the framing (bad magic, an oversized option) is disconnected; a well-framed
option the server does not like gets an error reply and haggling goes on.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from dataclasses import dataclass
from typing import cast

from ocibv.nbd import protocol as p
from ocibv.nbd.exports import Export, Exports

BASE_ALLOCATION_ID = 1
"""The metadata context id this server gives base:allocation."""

OPTION_TIMEOUT = 30.0
"""Seconds a client may take for each step of the handshake before it is disconnected."""


class Disconnect(Exception):
    """The client broke the protocol badly enough that the session must end."""


@dataclass
class Session:
    """What negotiation agreed for one connection."""

    export_name: str
    export: Export
    structured: bool
    base_allocation: bool
    no_zeroes: bool

    def transmission_flags(self) -> int:
        flags = p.FLAG_HAS_FLAGS | p.FLAG_SEND_FLUSH | p.FLAG_SEND_FUA | p.FLAG_CAN_MULTI_CONN
        if self.export.read_only:
            flags |= p.FLAG_READ_ONLY
        else:
            flags |= p.FLAG_SEND_TRIM | p.FLAG_SEND_WRITE_ZEROES
        if self.structured:
            flags |= p.FLAG_SEND_DF  # every read is answered in one chunk anyway
        return flags


@dataclass
class _State:
    structured: bool = False
    meta_export: str | None = None  # the export SET_META_CONTEXT chose base:allocation for
    tls_active: bool = False


class Negotiator:
    """Runs the handshake for one connection; ``tls`` given means STARTTLS is offered,
    ``tls_required`` that nothing but STARTTLS and ABORT is answered before TLS is up."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        exports: Exports,
        *,
        tls: ssl.SSLContext | None,
        tls_required: bool,
    ) -> None:
        self.reader, self.writer, self.exports = reader, writer, exports
        self.tls, self.tls_required = tls, tls_required and tls is not None
        self.state = _State()

    async def _read(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), OPTION_TIMEOUT)

    async def _reply(self, option: int, reply_type: int, data: bytes = b"") -> None:
        self.writer.write(p.option_reply(option, reply_type, data))
        await self.writer.drain()

    async def negotiate(self) -> Session | None:
        self.writer.write(
            p.GREETING.pack(p.NBDMAGIC, p.IHAVEOPT, p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES)
        )
        await self.writer.drain()
        (client_flags,) = p.CLIENT_FLAGS.unpack(await self._read(4))
        if client_flags & ~(p.FLAG_C_FIXED_NEWSTYLE | p.FLAG_C_NO_ZEROES):
            raise Disconnect(f"unknown client flags {client_flags:#x}")
        no_zeroes = bool(client_flags & p.FLAG_C_NO_ZEROES)
        while True:
            magic, option, length = p.OPTION_HEADER.unpack(await self._read(16))
            if magic != p.IHAVEOPT:
                raise Disconnect("bad option magic")
            if length > p.MAX_OPTION_LENGTH:
                raise Disconnect(f"option {option} of {length} bytes")
            data = await self._read(length) if length else b""
            result = await self._option(option, data, no_zeroes)
            if result is not None:
                return result if isinstance(result, Session) else None

    async def _option(self, option: int, data: bytes, no_zeroes: bool) -> Session | bool | None:
        """Handle one option: a Session to start transmission, False to end, None to go on."""
        s = self.state
        if option == p.OPT_ABORT:
            await self._reply(option, p.REP_ACK)
            return False
        if self.tls_required and not s.tls_active and option != p.OPT_STARTTLS:
            if option == p.OPT_EXPORT_NAME:
                raise Disconnect("EXPORT_NAME before STARTTLS")  # this option cannot error
            await self._reply(option, p.REP_ERR_TLS_REQD)
            return None
        if option == p.OPT_STARTTLS:
            await self._starttls(data)
        elif option == p.OPT_LIST:
            if data:
                await self._reply(option, p.REP_ERR_INVALID)
                return None
            for name in self.exports.names():
                encoded = name.encode("utf-8")
                await self._reply(option, p.REP_SERVER, p.U32.pack(len(encoded)) + encoded)
            await self._reply(option, p.REP_ACK)
        elif option == p.OPT_STRUCTURED_REPLY:
            if data:
                await self._reply(option, p.REP_ERR_INVALID)
                return None
            s.structured = True
            await self._reply(option, p.REP_ACK)
        elif option in (p.OPT_LIST_META_CONTEXT, p.OPT_SET_META_CONTEXT):
            await self._meta_context(option, data)
        elif option in (p.OPT_INFO, p.OPT_GO):
            return await self._info_go(option, data, no_zeroes)
        elif option == p.OPT_EXPORT_NAME:
            wanted = _decode(data)
            export = self.exports.lookup(wanted) if wanted is not None else None
            if wanted is None or export is None:
                raise Disconnect("EXPORT_NAME of an unknown export")
            session = self._session(wanted, export, no_zeroes)
            reply = p.EXPORT_NAME_REPLY.pack(export.size, session.transmission_flags())
            self.writer.write(reply if no_zeroes else reply + bytes(124))
            await self.writer.drain()
            return session
        else:
            await self._reply(option, p.REP_ERR_UNSUP)
        return None

    async def _starttls(self, data: bytes) -> None:
        if self.tls is None:
            await self._reply(p.OPT_STARTTLS, p.REP_ERR_POLICY)
            return
        if data or self.state.tls_active:
            await self._reply(p.OPT_STARTTLS, p.REP_ERR_INVALID)
            return
        # Stop reading before the ACK goes out: the client's ClientHello follows it at once
        # and must reach the TLS layer, not this stream's buffer (uvloop reads eagerly).
        transport = cast(asyncio.Transport, self.writer.transport)
        transport.pause_reading()
        await self._reply(p.OPT_STARTTLS, p.REP_ACK)
        try:
            await asyncio.wait_for(self.writer.start_tls(self.tls), OPTION_TIMEOUT)
        except (ssl.SSLError, OSError) as exc:
            raise Disconnect(f"TLS handshake failed: {exc}") from exc
        self.state = _State(tls_active=True)  # nothing negotiated before TLS survives it

    async def _meta_context(self, option: int, data: bytes) -> None:
        parsed = _parse_meta_request(data)
        if parsed is None or not self.state.structured:
            await self._reply(option, p.REP_ERR_INVALID)
            return
        name, queries = parsed
        if self.exports.lookup(name) is None:
            await self._reply(option, p.REP_ERR_UNKNOWN)
            return
        listing = option == p.OPT_LIST_META_CONTEXT
        wanted = any(q == p.BASE_ALLOCATION or (listing and q == "base:") for q in queries) or (
            listing and not queries
        )
        if option == p.OPT_SET_META_CONTEXT:
            self.state.meta_export = name if wanted else None
        if wanted:
            context_id = 0 if listing else BASE_ALLOCATION_ID
            body = p.U32.pack(context_id) + p.BASE_ALLOCATION.encode()
            await self._reply(option, p.REP_META_CONTEXT, body)
        await self._reply(option, p.REP_ACK)

    async def _info_go(self, option: int, data: bytes, no_zeroes: bool) -> Session | None:
        parsed = _parse_info_request(data)
        if parsed is None:
            await self._reply(option, p.REP_ERR_INVALID)
            return None
        name, requests = parsed
        export = self.exports.lookup(name)
        if export is None:
            await self._reply(option, p.REP_ERR_UNKNOWN)
            return None
        session = self._session(name, export, no_zeroes)
        info = p.INFO_EXPORT_DATA.pack(p.INFO_EXPORT, export.size, session.transmission_flags())
        await self._reply(option, p.REP_INFO, info)
        if p.INFO_BLOCK_SIZE in requests:
            sizes = p.INFO_BLOCK_SIZE_DATA.pack(p.INFO_BLOCK_SIZE, 1, 4096, p.MAX_PAYLOAD)
            await self._reply(option, p.REP_INFO, sizes)
        if p.INFO_NAME in requests:
            await self._reply(option, p.REP_INFO, p.U16.pack(p.INFO_NAME) + name.encode())
        await self._reply(option, p.REP_ACK)
        return session if option == p.OPT_GO else None

    def _session(self, name: str, export: Export, no_zeroes: bool) -> Session:
        s = self.state
        return Session(
            export_name=name,
            export=export,
            structured=s.structured,
            base_allocation=s.structured and s.meta_export == name,
            no_zeroes=no_zeroes,
        )


def _decode(raw: bytes) -> str | None:
    if len(raw) > p.MAX_NAME_LENGTH:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _parse_info_request(data: bytes) -> tuple[str, set[int]] | None:
    """(export name, requested info types) of an INFO/GO payload, None if malformed."""
    if len(data) < 6:
        return None
    (name_length,) = p.U32.unpack_from(data, 0)
    if name_length > len(data) - 6:
        return None
    name = _decode(data[4 : 4 + name_length])
    (count,) = p.U16.unpack_from(data, 4 + name_length)
    if name is None or len(data) != 6 + name_length + 2 * count:
        return None
    base = 6 + name_length
    return name, {p.U16.unpack_from(data, base + 2 * i)[0] for i in range(count)}


def _parse_meta_request(data: bytes) -> tuple[str, list[str]] | None:
    """(export name, queries) of a LIST/SET_META_CONTEXT payload, None if malformed."""
    try:
        (name_length,) = p.U32.unpack_from(data, 0)
        pos = 4 + name_length
        name = _decode(data[4:pos]) if pos <= len(data) else None
        (count,) = p.U32.unpack_from(data, pos)
        pos += 4
        queries: list[str] = []
        for _ in range(count):
            (length,) = p.U32.unpack_from(data, pos)
            query = _decode(data[pos + 4 : pos + 4 + length])
            pos += 4 + length
            if query is None or pos > len(data):
                return None
            queries.append(query)
    except struct.error:  # a count or length runs past the payload
        return None
    if name is None or pos != len(data):
        return None
    return name, queries
