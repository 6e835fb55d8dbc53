"""uvicorn's httptools protocol with OCI-shaped answers for what it rejects below the app.

uvicorn answers a request it cannot parse (a header with a control byte, a broken request
line) with a plain-text 400 and no ``opc-request-id``, and httptools accepts a request line
and headers of any size (a 64 MB header took seconds to parse). ``OciHttpToolsProtocol``:

* answers a malformed request with 400 ``CannotParseRequest`` as an OCI error body, with an
  ``opc-request-id``, and closes the connection (as uvicorn does);
* refuses a request whose request line and headers pass ``limits.MAX_HEADER_BYTES`` with 431
  ``RequestHeaderFieldsTooLarge`` before the parser sees more than that many bytes.

It keeps httptools (uvicorn's fastest parser); everything else is uvicorn's own code. Pass it
as ``uvicorn.run(app, http=OciHttpToolsProtocol)``.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ocibv.api.wire import new_request_id
from ocibv.domain import limits
from ocibv.domain.errors import CannotParseRequest, OciError, RequestHeaderFieldsTooLarge

_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


class OciHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_pending = True  # between the start of a request and its last header
        self._header_budget = limits.MAX_HEADER_BYTES

    # --- size limit -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._headers_pending or len(data) <= self._header_budget:
            if self._headers_pending:
                self._header_budget -= len(data)
            super().data_received(data)
            return
        room = self._header_budget
        self._header_budget = 0
        if room:
            super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._headers_pending:
            self.send_oci_error(
                RequestHeaderFieldsTooLarge(
                    "The request line and headers may be at most "
                    f"{limits.MAX_HEADER_BYTES} bytes."
                )
            )
            return
        self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._headers_pending = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._headers_pending = True
        self._header_budget = limits.MAX_HEADER_BYTES

    # --- OCI error bodies -------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self.send_oci_error(CannotParseRequest(f"The HTTP request is malformed: {msg}"))

    def send_oci_error(self, error: OciError) -> None:
        """Write ``error`` as an OCI error response and close the connection."""
        body = json.dumps({"code": error.code, "message": error.message}).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (error.status, _REASONS.get(error.status, b"Error"))]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\n")
        head.append(b"opc-request-id: " + new_request_id().encode() + b"\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()
