"""NBD wire format: magic numbers, option/command/reply codes, error values, struct packing.

Everything here follows ``doc/proto.md`` of the NetworkBlockDevice project (fixed newstyle
negotiation; simple and structured replies; no extended headers). Integers on the wire are
big-endian.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# Handshake.
NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
OPTION_REPLY_MAGIC = 0x0003E889045565A9
FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1

# Options.
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

# Option replies.
REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
_REP_ERR = 1 << 31
REP_ERR_UNSUP = _REP_ERR + 1
REP_ERR_POLICY = _REP_ERR + 2
REP_ERR_INVALID = _REP_ERR + 3
REP_ERR_PLATFORM = _REP_ERR + 4
REP_ERR_TLS_REQD = _REP_ERR + 5
REP_ERR_UNKNOWN = _REP_ERR + 6
REP_ERR_SHUTDOWN = _REP_ERR + 7
REP_ERR_BLOCK_SIZE_REQD = _REP_ERR + 8
REP_ERR_TOO_BIG = _REP_ERR + 9

# NBD_REP_INFO types.
INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

# Transmission flags.
FLAG_HAS_FLAGS = 1 << 0
FLAG_READ_ONLY = 1 << 1
FLAG_SEND_FLUSH = 1 << 2
FLAG_SEND_FUA = 1 << 3
FLAG_SEND_TRIM = 1 << 5
FLAG_SEND_WRITE_ZEROES = 1 << 6
FLAG_SEND_DF = 1 << 7
FLAG_CAN_MULTI_CONN = 1 << 8

# Requests.
REQUEST_MAGIC = 0x25609513
CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

# Replies.
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF
REPLY_FLAG_DONE = 1 << 0
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) + 1
REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2

# Error values (not the host's errno: the protocol fixes them).
EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ESHUTDOWN = 108

# The base:allocation metadata context.
BASE_ALLOCATION = "base:allocation"
STATE_HOLE = 1 << 0
STATE_ZERO = 1 << 1

# Limits this server enforces.
MAX_PAYLOAD = 32 * 1024 * 1024
"""Largest READ or WRITE payload (the protocol's default maximum, 2^25)."""
MAX_OPTION_LENGTH = 64 * 1024
"""Largest option payload read during haggling; longer ones end the session (DoS guard)."""
MAX_NAME_LENGTH = 4096
"""Strings (export names, queries) are at most 4096 bytes per the protocol."""
MAX_STATUS_DESCRIPTORS = 1 << 20

GREETING = struct.Struct(">QQH")
CLIENT_FLAGS = struct.Struct(">I")
OPTION_HEADER = struct.Struct(">QII")  # IHAVEOPT, option, length
OPTION_REPLY_HEADER = struct.Struct(">QIII")  # magic, option, reply type, length
EXPORT_NAME_REPLY = struct.Struct(">QH")  # size, transmission flags (+124 zeros unless NO_ZEROES)
INFO_EXPORT_DATA = struct.Struct(">HQH")  # NBD_INFO_EXPORT, size, transmission flags
INFO_BLOCK_SIZE_DATA = struct.Struct(">HIII")  # NBD_INFO_BLOCK_SIZE, min, preferred, max
REQUEST = struct.Struct(">IHHQQI")  # magic, flags, type, cookie, offset, length
SIMPLE_REPLY = struct.Struct(">IIQ")  # magic, error, cookie
STRUCTURED_REPLY = struct.Struct(">IHHQI")  # magic, flags, type, cookie, length
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
ERROR_CHUNK = struct.Struct(">IH")  # error, message length (then the message)


class Request(NamedTuple):
    """One transmission request header (the WRITE payload follows it on the wire)."""

    flags: int
    type: int
    cookie: int
    offset: int
    length: int


def option_reply(option: int, reply_type: int, data: bytes = b"") -> bytes:
    """The bytes of one option reply."""
    return OPTION_REPLY_HEADER.pack(OPTION_REPLY_MAGIC, option, reply_type, len(data)) + data


def simple_reply(cookie: int, error: int = 0) -> bytes:
    """A simple reply header (a successful READ's data follows it)."""
    return SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, cookie)


def structured_header(cookie: int, reply_type: int, length: int, *, done: bool) -> bytes:
    """A structured reply chunk header for a payload of ``length`` bytes."""
    flags = REPLY_FLAG_DONE if done else 0
    return STRUCTURED_REPLY.pack(STRUCTURED_REPLY_MAGIC, flags, reply_type, cookie, length)


def error_chunk(cookie: int, error: int, message: str) -> bytes:
    """A final NBD_REPLY_TYPE_ERROR chunk carrying a human-readable ``message``."""
    text = message.encode("utf-8")[:MAX_NAME_LENGTH]
    payload = ERROR_CHUNK.pack(error, len(text)) + text
    return structured_header(cookie, REPLY_TYPE_ERROR, len(payload), done=True) + payload


def block_status_chunk(cookie: int, context_id: int, extents: list[tuple[int, int]]) -> bytes:
    """A final NBD_REPLY_TYPE_BLOCK_STATUS chunk: ``extents`` are (length, status flags)."""
    body = U32.pack(context_id) + b"".join(U32.pack(n) + U32.pack(f) for n, f in extents)
    return structured_header(cookie, REPLY_TYPE_BLOCK_STATUS, len(body), done=True) + body
