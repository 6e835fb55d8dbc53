"""The endpoint wrapper with a real Authenticator and Starlette: authentication comes before
the body is read, and every handler runs off the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import oci
from oci._vendor.requests import PreparedRequest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from ocibv.api.auth import Authenticator
from ocibv.api.call import Call
from ocibv.api.endpoint import ApiContext
from ocibv.api.wire import json_response
from ocibv.domain.keys import fingerprint_of_public_key, generate_key_pair

TENANCY = "ocid1.tenancy.oc1..aaaaaaaaendpointtest"
USER = "ocid1.user.oc1..aaaaaaaaendpointtest"


def make_app(seen: dict[str, Any]) -> tuple[TestClient, oci.signer.Signer]:
    private_pem, public_pem = generate_key_pair()
    fingerprint = fingerprint_of_public_key(public_pem)
    auth = Authenticator(lambda t, u, f: public_pem.decode() if f == fingerprint else None)

    def handler(call: Call) -> Response:
        try:
            asyncio.get_running_loop()
            seen["on_loop"] = True
        except RuntimeError:
            seen["on_loop"] = False
        seen["body"] = call.body
        return json_response({}, request_id=call.request_id)

    api = ApiContext(auth)
    app = Starlette(routes=[Route("/x", api.endpoint(handler), methods=["GET", "POST"])])
    signer = oci.signer.Signer(TENANCY, USER, fingerprint, None,
                               private_key_content=private_pem.decode())
    return TestClient(app), signer


def signed_headers(signer: oci.signer.Signer, method: str, body: bytes | None) -> dict[str, str]:
    prepared = PreparedRequest()
    prepared.prepare(method=method, url="http://testserver/x", data=body,
                     headers={"content-type": "application/json"})
    signer(prepared)
    return dict(prepared.headers)


def test_handlers_run_in_the_thread_pool() -> None:
    seen: dict[str, Any] = {}
    client, signer = make_app(seen)
    for method, body in (("GET", None), ("POST", b'{"a": 1}')):
        resp = client.request(method, "/x", content=body,
                              headers=signed_headers(signer, method, body))
        assert resp.status_code == 200, resp.text
        assert seen["on_loop"] is False
        assert seen["body"] == (body or b"")


def test_unsigned_body_is_not_read() -> None:
    seen: dict[str, Any] = {}
    client, _ = make_app(seen)
    resp = client.post("/x", content=b" " * 262144, headers={"content-type": "application/json"})
    assert resp.status_code == 401 and resp.json()["code"] == "NotAuthenticated"
    assert resp.headers["connection"] == "close"
    assert "body" not in seen
