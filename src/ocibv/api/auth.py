"""Authenticates each request by its OCI API-key signature (spec §5.1)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from starlette.requests import Request

from ocibv.api.signature import KeyId, SignedRequest, verify_request
from ocibv.domain.keys import load_public_key
from ocibv.services.context import Caller


class Authenticator:
    """Verifies signatures; public keys are looked up once and cached by keyId."""

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

    def authenticate(self, request: Request, body: bytes) -> Caller:
        """The caller of a signed request, or raise NotAuthenticated."""
        scope = request.scope
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target = target + b"?" + scope["query_string"]
        signed = SignedRequest(
            method=request.method,
            target=target.decode("latin-1"),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        key_id = verify_request(signed, self._lookup)
        return Caller(tenancy_id=key_id.tenancy_id, user_id=key_id.user_id)
