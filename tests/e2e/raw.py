"""Raw HTTP against a spawned server, signed by the SDK's own ``oci.signer.Signer``.

The SDK hides the wire (it parses JSON, normalises timestamps, validates enums client-side);
these helpers show exactly what the server sends. Requests are built as the SDK's vendored
``requests`` ``PreparedRequest`` (what ``Signer`` signs) and sent with ``http.client``, so the
request line goes out byte for byte as given — ``requests`` itself would collapse ``../``.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import oci
from oci._vendor.requests import PreparedRequest

from tests.e2e.server import Server

API = "/20160918"


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return str(self.json["code"])

    @property
    def message(self) -> str:
        return str(self.json["message"])


class RawClient:
    """Signed requests as ``profile`` of the server's config (or unsigned, or tampered)."""

    def __init__(self, server: Server, profile: str = "DEFAULT") -> None:
        self.server = server
        self.config = server.config(profile)
        self.signer = oci.signer.Signer.from_config(self.config)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        signer: Callable[[PreparedRequest], Any] | None = None,
        sign: bool = True,
        after_sign: Callable[[PreparedRequest], None] | None = None,
        timeout: float = 30,
    ) -> RawResponse:
        """Send ``method path`` (``path`` is the raw request target; ``API`` is prepended when
        it starts with ``/`` and not with ``/20160918``). ``after_sign`` may alter the signed
        request before it is sent."""
        if not path.startswith(API):
            path = API + path
        if isinstance(body, dict | list):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        prepared = PreparedRequest()
        prepared.prepare(
            method=method,
            url=self.server.endpoint + API,
            headers={
                "content-type": "application/json",
                "accept": "application/json",
                **(headers or {}),
            },
            data=body,
        )
        prepared.url = self.server.endpoint + path  # raw: no normalisation of the target
        if sign:
            (signer or self.signer)(prepared)
        if after_sign is not None:
            after_sign(prepared)
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=timeout)
        try:
            conn.request(
                method,
                prepared.path_url,
                body=prepared.body,
                headers=dict(prepared.headers),
            )
            resp = conn.getresponse()
            data = resp.read()
            return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> RawResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> RawResponse:
        return self.request("POST", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> RawResponse:
        return self.request("PUT", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> RawResponse:
        return self.request("DELETE", path, **kwargs)
