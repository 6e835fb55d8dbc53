"""Authenticates each request by its OCI API-key signature (spec §5.1), in two steps: the
request line and headers before the body is read, the body (``x-content-sha256``,
``content-length``) after."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ocibv.api.signature import (
    KeyId,
    SignedRequest,
    parse_authorization,
    verify_body,
    verify_signature,
)
from ocibv.domain.errors import NotAuthenticated
from ocibv.domain.keys import load_public_key
from ocibv.services.context import Caller


class Authenticator:
    """Verifies signatures; public keys are looked up once (off the event loop) and cached by
    keyId."""

    def __init__(self, find_public_pem: Callable[[str, str, str], str | None]) -> None:
        self._find = find_public_pem
        self._cache: dict[KeyId, RSAPublicKey] = {}
        self._lock = threading.Lock()

    def _lookup(self, key_id: KeyId) -> RSAPublicKey | None:
        key = self._cache.get(key_id)
        if key is not None:
            return key
        pem = self._find(key_id.tenancy_id, key_id.user_id, key_id.fingerprint)
        if pem is None:
            return None
        loaded = load_public_key(pem.encode())
        with self._lock:
            self._cache[key_id] = loaded
        return loaded

    async def authenticate_headers(self, request: Request) -> Caller:
        """The caller of a signed request, from its request line and headers alone (the body
        is not read); raise NotAuthenticated. A key not yet cached is read from the database
        in the thread pool, never on the event loop."""
        signed = _signed_request(request)
        try:
            key_id = parse_authorization(signed.headers.get("authorization") or "")[0]
        except NotAuthenticated:
            key_id = None
        if key_id is not None and key_id not in self._cache:
            await run_in_threadpool(self._lookup, key_id)
        verified = verify_signature(signed, self._cache.get)
        return Caller(tenancy_id=verified.tenancy_id, user_id=verified.user_id)

    def authenticate(self, request: Request, body: bytes) -> Caller:
        """Both steps at once, synchronously (benchmarks and tools)."""
        key_id = verify_signature(_signed_request(request), self._lookup)
        verify_body(_headers(request), body)
        return Caller(tenancy_id=key_id.tenancy_id, user_id=key_id.user_id)

    @staticmethod
    def authenticate_body(request: Request, body: bytes) -> None:
        """Raise NotAuthenticated unless ``body`` matches the signed ``x-content-sha256`` and
        ``content-length`` headers."""
        verify_body(_headers(request), body)


def _headers(request: Request) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}


def _signed_request(request: Request) -> SignedRequest:
    scope = request.scope
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target = target + b"?" + scope["query_string"]
    return SignedRequest(
        method=request.method,
        target=target.decode("latin-1"),
        headers=_headers(request),
        body=b"",
    )
