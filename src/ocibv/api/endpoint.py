"""The wrapper every operation runs in: authenticate the request line and headers, then read
the body (bounded, refused before reading when declared too large) and check it against the
signed hash, run the handler in the thread pool (database work never runs on the event
loop), render any OCI error with its status, and stamp ``opc-request-id`` on every
response."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ocibv.api import render
from ocibv.api.auth import Authenticator
from ocibv.api.call import Call
from ocibv.api.wire import empty_response, error_response, json_response, new_request_id
from ocibv.domain import limits
from ocibv.domain.errors import InternalServerError, OciError, PayloadTooLarge
from ocibv.store.resources import Resource

log = logging.getLogger("ocibv.api")

Handler = Callable[[Call], Response]
Endpoint = Callable[[Request], Awaitable[Response]]


def request_id_for(request: Request) -> str:
    """Our id, prefixed by the client's own ``opc-request-id`` when it sent one."""
    client = request.headers.get("opc-request-id")
    ours = new_request_id()
    return f"{client[:64]}/{ours}" if client else ours


async def read_body(request: Request) -> bytes:
    """The whole body, at most ``limits.MAX_BODY_BYTES``: a larger declared ``content-length``
    is refused before a byte is read, a chunked body as soon as it passes the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body may be at most {limits.MAX_BODY_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.MAX_BODY_BYTES:
            raise PayloadTooLarge(f"The request body may be at most {limits.MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _announces_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return request.headers.get("transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0")
    )


UNAUTHENTICATED_DRAIN_BYTES = 64 * 1024


async def _dropped(request: Request, limit: int) -> bool:
    """Read and discard the rest of the body if it is at most ``limit`` bytes."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                return False
    except Exception:  # the client went away, or sent something broken: just close
        return False
    return True


class ApiContext:
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    def endpoint(self, handler: Handler) -> Endpoint:
        """An ASGI endpoint for ``handler``, which runs in the thread pool: every handler
        touches the database or renders JSON, and a slow one must not stall the others."""

        async def run(request: Request) -> Response:
            request_id = request_id_for(request)
            body: bytes | None = None
            try:
                caller = await self.auth.authenticate_headers(request)
                body = await read_body(request)
                self.auth.authenticate_body(request, body)
                call = Call(request, caller, body, request_id)
                return await run_in_threadpool(handler, call)
            except OciError as error:
                response = error_response(error, request_id)
                # Not authenticated: its body is never read into the app. A small one is
                # dropped so that the client reads its 401 cleanly (closing with unread bytes
                # resets the connection, and the answer with it); past that the connection
                # is closed. (A 413 keeps it: uvicorn drains the refused body.)
                unread = error.status == 401 and body is None and _announces_body(request)
                if unread and not await _dropped(request, UNAUTHENTICATED_DRAIN_BYTES):
                    response.headers["connection"] = "close"
                return response
            except Exception:
                log.exception("unexpected error in %s %s", request.method, request.url.path)
                return error_response(
                    InternalServerError("An internal error occurred; the request id names it."),
                    request_id,
                )

        return run


def resource_response(call: Call, res: Resource) -> Response:
    return json_response(
        render.resource(res), request_id=call.request_id, headers={"etag": res.etag}
    )


def list_response(call: Call, items: Sequence[Resource], next_page: str | None) -> Response:
    headers = {"opc-next-page": next_page} if next_page else None
    return json_response(
        [render.resource(r) for r in items], request_id=call.request_id, headers=headers
    )


def deleted_response(call: Call) -> Response:
    return empty_response(request_id=call.request_id)


def moved_response(call: Call, res: Resource) -> Response:
    return empty_response(request_id=call.request_id, headers={"etag": res.etag})
