"""A small client for ocibv's own operations on a running server: requests signed with the
OCI config file's key, exactly as the SDK signs them (draft-cavage-08, rsa-sha256)."""

from __future__ import annotations

import base64
import configparser
import hashlib
import http.client
import json
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ocibv.config import Settings


class ServerError(Exception):
    """The server answered with an OCI error (its code and message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def endpoint_of(settings: Settings) -> str:
    server_file = settings.data_dir / "server.json"
    if not server_file.exists():
        raise ServerError(0, "NotRunning", f"no running ocibv serve for {settings.data_dir}")
    return str(json.loads(server_file.read_text())["endpoint"])


def call(settings: Settings, method: str, path: str, body: dict[str, Any] | None) -> Any:
    """Send a signed request to the data dir's server; returns the JSON answer (or None)."""
    endpoint = urlsplit(endpoint_of(settings))
    host = endpoint.netloc
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"date": formatdate(usegmt=True), "host": host, "accept": "application/json"}
    signed = ["date", "(request-target)", "host"]
    if method in ("POST", "PUT"):
        headers["content-type"] = "application/json"
        headers["content-length"] = str(len(raw))
        headers["x-content-sha256"] = base64.b64encode(hashlib.sha256(raw).digest()).decode()
        signed += ["content-length", "content-type", "x-content-sha256"]
    profile = _profile(settings.oci_config_path)
    lines = [
        f"(request-target): {method.lower()} {path}" if h == "(request-target)" else
        f"{h}: {headers[h]}" for h in signed
    ]
    key = serialization.load_pem_private_key(Path(profile["key_file"]).read_bytes(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ServerError(0, "NotAuthenticated", "the config's key is not an RSA key")
    signature = key.sign("\n".join(lines).encode(), padding.PKCS1v15(), hashes.SHA256())
    key_id = f"{profile['tenancy']}/{profile['user']}/{profile['fingerprint']}"
    headers["authorization"] = (
        f'Signature version="1",keyId="{key_id}",algorithm="rsa-sha256",'
        f'headers="{" ".join(signed)}",signature="{base64.b64encode(signature).decode()}"'
    )
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        conn.request(method, path, body=raw or None, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
    finally:
        conn.close()
    if answer.status >= 400:
        try:
            error = json.loads(data)
            raise ServerError(answer.status, error["code"], error["message"])
        except (ValueError, KeyError):
            raise ServerError(answer.status, "Error", data.decode(errors="replace")) from None
    return json.loads(data) if data else None


def _profile(config_path: Path, name: str = "DEFAULT") -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(config_path)
    section = parser[name] if name in parser else parser.defaults()
    return {k: section[k] for k in ("user", "fingerprint", "tenancy", "key_file")}
