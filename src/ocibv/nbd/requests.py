"""Validation of well-framed transmission requests, and errno translation.

``check_request`` returns the protocol's error for a request this server refuses, chosen per
``doc/proto.md``: unknown commands and flags ``EINVAL``; writes on a read-only export
``EPERM``; past the end ``ENOSPC`` for WRITE/WRITE_ZEROES and ``EINVAL`` otherwise; a READ
over the 32 MiB payload limit ``EINVAL``.
"""

from __future__ import annotations

import errno

from ocibv.nbd import protocol as p
from ocibv.nbd.exports import Export
from ocibv.nbd.handshake import Session

# Flags each command accepts (FUA is valid on every command per the protocol).
ALLOWED_FLAGS = {
    p.CMD_READ: p.CMD_FLAG_FUA | p.CMD_FLAG_DF,
    p.CMD_WRITE: p.CMD_FLAG_FUA,
    p.CMD_DISC: p.CMD_FLAG_FUA,
    p.CMD_FLUSH: p.CMD_FLAG_FUA,
    p.CMD_TRIM: p.CMD_FLAG_FUA,
    p.CMD_WRITE_ZEROES: p.CMD_FLAG_FUA | p.CMD_FLAG_NO_HOLE,
    p.CMD_BLOCK_STATUS: p.CMD_FLAG_FUA | p.CMD_FLAG_REQ_ONE,
}
WRITING = (p.CMD_WRITE, p.CMD_TRIM, p.CMD_WRITE_ZEROES)
QUEUED = (*WRITING, p.CMD_FLUSH)


def nothing() -> None:
    """The job of a zero-length TRIM or WRITE_ZEROES."""


def nbd_errno(exc: OSError) -> int:
    """The protocol error value for a failed export operation."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return p.ENOSPC
    if exc.errno in (errno.EPERM, errno.EACCES):
        return p.EPERM
    return p.EIO


def check_request(r: p.Request, export: Export, session: Session) -> tuple[int, str] | None:
    """(NBD error, message) for a well-framed request this server refuses, or None."""
    if r.type not in ALLOWED_FLAGS:
        return p.EINVAL, f"unknown command {r.type}"
    if r.flags & ~ALLOWED_FLAGS[r.type]:
        return p.EINVAL, f"flags {r.flags:#x} not valid for command {r.type}"
    if r.type in WRITING and export.read_only:
        return p.EPERM, "read-only export"
    if r.type == p.CMD_FLUSH:
        return None
    if r.type == p.CMD_READ and r.length > p.MAX_PAYLOAD:
        return p.EINVAL, f"read of {r.length} bytes exceeds {p.MAX_PAYLOAD}"
    if r.offset + r.length > export.size:
        beyond = p.ENOSPC if r.type in (p.CMD_WRITE, p.CMD_WRITE_ZEROES) else p.EINVAL
        return beyond, "request beyond the end of the export"
    if r.type == p.CMD_BLOCK_STATUS:
        if not session.base_allocation:
            return p.EINVAL, "no metadata context negotiated"
        if r.length == 0:
            return p.EINVAL, "empty block status request"
    return None
