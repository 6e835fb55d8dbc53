"""Wire conventions: timestamps, camelCase, JSON responses, OCI error bodies."""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from ocibv.domain.errors import OciError


@functools.lru_cache(maxsize=16384)  # the same creation times are rendered on every list
def timestamp(us: int | None) -> str | None:
    """RFC 3339 UTC with milliseconds: ``2024-05-01T12:00:00.123Z``."""
    if us is None:
        return None
    moment = datetime.fromtimestamp(us / 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_request_id() -> str:
    return uuid.uuid4().hex.upper()


def json_response(
    body: Any, *, request_id: str, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """``body`` as strict JSON (RFC 8259: a non-finite number raises ValueError rather than
    going out as ``NaN``)."""
    all_headers = {"opc-request-id": request_id, **(headers or {})}
    return Response(
        json.dumps(body, separators=(",", ":"), allow_nan=False).encode(),
        status_code=status,
        media_type="application/json",
        headers=all_headers,
    )


def empty_response(
    *, request_id: str, status: int = 204, headers: dict[str, str] | None = None
) -> Response:
    return Response(status_code=status, headers={"opc-request-id": request_id, **(headers or {})})


def error_response(error: OciError, request_id: str) -> Response:
    return json_response(
        {"code": error.code, "message": error.message}, request_id=request_id, status=error.status
    )
