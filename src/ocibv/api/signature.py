"""OCI API-key request signatures (spec §5.1), verified independently of any web framework.

Clients (the ``oci`` SDK and CLI) sign every request with the user's RSA key and send::

    Authorization: Signature algorithm="rsa-sha256",headers="date (request-target) host",
                   keyId="<tenancy>/<user>/<fingerprint>",signature="<base64>",version="1"

The signing string is one ``name: value`` line per name in ``headers`` (in that order, joined
by ``\\n``), where ``(request-target)`` is ``<lowercase method> <raw path>[?<raw query>]``.
The signature is RSASSA-PKCS1-v1_5 with SHA-256.

``verify_request`` accepts a request only if

* the ``Authorization`` header is a well-formed ``Signature`` with ``algorithm="rsa-sha256"``;
* the signed headers include ``(request-target)``, ``host`` and ``date`` or ``x-date`` — and,
  for POST/PUT/PATCH, also ``content-length``, ``content-type`` and ``x-content-sha256``;
* every signed header is present in the request;
* the signed date (``x-date`` if signed, else ``date``) is an RFC 1123 date within
  ``max_skew_seconds`` of the server clock, in either direction;
* the key is known to ``lookup_key`` and the signature verifies with it;
* ``x-content-sha256``, when present, is base64(SHA-256(body)) and ``content-length``, when
  present, equals the body length.

Otherwise it raises ``NotAuthenticated`` saying what is wrong (never what the signature
should have been, nor whether a keyId is registered). On GET/HEAD/DELETE the body is *not*
covered by the signature unless the client chose to sign ``x-content-sha256``: callers must
ignore bodies of those methods.

Nothing is cached here; loading and caching the public keys is the job of ``lookup_key``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ocibv.domain.errors import NotAuthenticated

__all__ = [
    "BODY_METHODS",
    "BODY_SIGNED_HEADERS",
    "DEFAULT_MAX_SKEW_SECONDS",
    "KeyId",
    "SignedRequest",
    "parse_authorization",
    "verify_body",
    "verify_request",
    "verify_signature",
]

DEFAULT_MAX_SKEW_SECONDS = 300
"""Largest accepted difference between the request date and the server clock (OCI: 5 min)."""

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose body must be signed (through ``x-content-sha256``)."""

BODY_SIGNED_HEADERS = ("content-length", "content-type", "x-content-sha256")
"""Headers that POST/PUT/PATCH requests must sign in addition to date, target and host."""

REQUEST_TARGET = "(request-target)"

_EXAMPLE_DATE = "Sat, 28 Nov 2026 06:57:23 GMT"
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){15}")
_PARAM_RE = re.compile(r'[ \t]*([A-Za-z][A-Za-z0-9_-]*)[ \t]*=[ \t]*"([^"]*)"[ \t]*(?:,|\Z)')
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


@dataclass(frozen=True)
class SignedRequest:
    """What verification needs to know about one HTTP request.

    ``target`` is the raw path plus ``"?" + raw query`` if there is a query, exactly as on the
    request line (no decoding, no re-encoding, parameter order kept). ``headers`` maps
    lowercase header names to values as received (ASGI servers decode them as latin-1; one
    value per name). ``body`` is the raw body bytes as received.
    """

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class KeyId:
    """The ``keyId`` of an API-key signature: ``<tenancy OCID>/<user OCID>/<fingerprint>``."""

    tenancy_id: str
    user_id: str
    fingerprint: str

    def __str__(self) -> str:
        return f"{self.tenancy_id}/{self.user_id}/{self.fingerprint}"


def _fail(message: str) -> NotAuthenticated:
    return NotAuthenticated(message)


def _parse_key_id(value: str) -> KeyId:
    if value.startswith("ST$"):
        raise _fail(
            'Security-token (keyId="ST$...") authentication is not supported by this '
            "server; sign requests with an API key (config: user, tenancy, fingerprint, "
            "key_file)."
        )
    parts = value.split("/")
    if len(parts) != 3 or not all(parts):
        raise _fail(
            f'The keyId "{value}" is malformed: expected '
            "<tenancy OCID>/<user OCID>/<key fingerprint>."
        )
    tenancy_id, user_id, fingerprint = parts
    if not _FINGERPRINT_RE.fullmatch(fingerprint):
        raise _fail(
            f'The fingerprint "{fingerprint}" in keyId is malformed: expected 16 lowercase '
            "hex pairs joined by ':' (e.g. 5a:7d:d8:49:42:ef:1c:9e:b0:71:91:67:c2:0c:45:79)."
        )
    return KeyId(tenancy_id, user_id, fingerprint)


def parse_authorization(value: str) -> tuple[KeyId, list[str], bytes]:
    """Parse an ``Authorization: Signature ...`` header value.

    Returns ``(key_id, signed_header_names, signature_bytes)``; header names are lowercased
    and kept in the order given. Parameters are matched by name in any order; each must be
    a quoted string and may appear once. ``algorithm`` must be ``rsa-sha256``; ``version``,
    if given, must be ``1``; unknown parameters are ignored. Raises ``NotAuthenticated``
    for anything malformed or unsupported.
    """
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "signature":
        raise _fail(
            "The Authorization header does not use the Signature scheme: expected "
            'Signature algorithm="rsa-sha256",headers="...",keyId="...",signature="...".'
        )
    params: dict[str, str] = {}
    pos, end = 0, len(rest)
    while pos < end:
        match = _PARAM_RE.match(rest, pos)
        if match is None or match.end() == pos:
            raise _fail(
                "The Authorization header is malformed: expected comma-separated "
                'name="value" parameters after "Signature".'
            )
        name, param_value = match.group(1), match.group(2)
        if name in params:
            raise _fail(f"The Authorization header has the parameter {name} more than once.")
        params[name] = param_value
        pos = match.end()
    missing = [p for p in ("algorithm", "headers", "keyId", "signature") if p not in params]
    if missing:
        raise _fail(
            "The Authorization header is missing the parameter(s) " + ", ".join(missing) + "."
        )
    algorithm = params["algorithm"]
    if algorithm.lower() != "rsa-sha256":
        raise _fail(f'The signature algorithm "{algorithm}" is not supported; use rsa-sha256.')
    version = params.get("version")
    if version is not None and version != "1":
        raise _fail(f'The signature version "{version}" is not supported; use version="1".')
    key_id = _parse_key_id(params["keyId"])
    names = params["headers"].lower().split()
    if not names:
        raise _fail("The headers parameter of the Authorization header is empty.")
    encoded = params["signature"]
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if not signature:
        raise _fail("The signature parameter of the Authorization header is not valid base64.")
    return key_id, names, signature


def _parse_http_date(name: str, value: str) -> datetime:
    match = _DATE_RE.fullmatch(value.strip())
    if match is not None:
        day, month, year, hour, minute, second = match.groups()
        try:
            return datetime(
                int(year),
                _MONTHS[month],
                int(day),
                int(hour),
                int(minute),
                int(second),
                tzinfo=UTC,
            )
        except ValueError:
            pass
    raise _fail(f'The {name} header "{value}" is not an RFC 1123 date such as "{_EXAMPLE_DATE}".')


def _describe_seconds(seconds: int) -> str:
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("" if minutes == 1 else "s")
    return f"{seconds} seconds"


def _check_required(method: str, names: list[str]) -> None:
    signed = set(names)
    required = ["date", REQUEST_TARGET, "host"]
    if method in BODY_METHODS:
        required.extend(BODY_SIGNED_HEADERS)
    listed = " ".join(names)
    for name in required:
        if name == "date" and ("date" in signed or "x-date" in signed):
            continue
        if name not in signed:
            which = "date (or x-date)" if name == "date" else name
            raise _fail(
                f"The required header {which} is missing from the signed headers of this "
                f'{method} request (headers="{listed}").'
            )


def _encode(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def verify_request(
    req: SignedRequest,
    lookup_key: Callable[[KeyId], RSAPublicKey | None],
    *,
    now: datetime | None = None,
    max_skew_seconds: int = DEFAULT_MAX_SKEW_SECONDS,
) -> KeyId:
    """Check the API-key signature of ``req`` and its body; return the ``KeyId`` that signed it.

    ``verify_signature`` followed by ``verify_body`` (rules in the module docstring).
    """
    key_id = verify_signature(req, lookup_key, now=now, max_skew_seconds=max_skew_seconds)
    verify_body(req.headers, req.body)
    return key_id


def verify_signature(
    req: SignedRequest,
    lookup_key: Callable[[KeyId], RSAPublicKey | None],
    *,
    now: datetime | None = None,
    max_skew_seconds: int = DEFAULT_MAX_SKEW_SECONDS,
) -> KeyId:
    """Check the signature over the request line and headers only (``req.body`` is not read),
    so that a server can authenticate a request before it reads a large body.

    ``lookup_key`` maps a ``KeyId`` to the registered public key (or ``None`` when no such
    key exists for that user and tenancy); it is called at most once, after all syntactic
    and date checks. ``now`` defaults to the current UTC time (a naive ``now`` is taken as
    UTC). Raises ``NotAuthenticated`` naming the problem for a missing, malformed, forged or
    stale request; an unknown key and a wrong signature get one and the same message, so the
    answer never tells whether a keyId is registered.
    """
    headers = req.headers
    authorization = headers.get("authorization")
    if not authorization:
        raise _fail("The request is not signed: the Authorization header is missing.")
    key_id, names, signature = parse_authorization(authorization)
    method = req.method.upper()
    _check_required(method, names)

    lines: list[str] = []
    for name in names:
        if name == REQUEST_TARGET:
            lines.append(f"{REQUEST_TARGET}: {method.lower()} {req.target}")
            continue
        header_value = headers.get(name)
        if header_value is None:
            raise _fail(f"The signed header {name} is missing from the request.")
        lines.append(f"{name}: {header_value}")

    date_name = "x-date" if "x-date" in names else "date"
    signed_at = _parse_http_date(date_name, headers[date_name])
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    skew = (signed_at - now).total_seconds()
    if abs(skew) > max_skew_seconds:
        direction = "ahead of" if skew > 0 else "behind"
        raise _fail(
            f'The {date_name} header "{headers[date_name]}" is more than '
            f"{_describe_seconds(max_skew_seconds)} from server time "
            f"{now.strftime('%a, %d %b %Y %H:%M:%S GMT')} ({abs(int(skew))} s {direction}); "
            "check the client clock."
        )

    public_key = lookup_key(key_id)
    try:
        if public_key is None:
            raise InvalidSignature
        public_key.verify(signature, _encode("\n".join(lines)), _PKCS1V15, _SHA256)
    except InvalidSignature:
        # One message for an unknown key and a wrong signature: no key enumeration.
        raise _fail(
            f"The signature does not match (keyId {key_id}): the key is not registered for "
            "this user and tenancy, the request was signed with another private key, or it "
            "was altered after signing."
        ) from None
    return key_id


def verify_body(headers: Mapping[str, str], body: bytes) -> None:
    """Check the body against ``x-content-sha256`` and ``content-length`` when present (both
    are covered by the signature on POST/PUT/PATCH); raise ``NotAuthenticated`` otherwise."""
    content_sha256 = headers.get("x-content-sha256")
    if content_sha256 is not None:
        actual = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        if content_sha256.strip() != actual:
            raise _fail(
                "The x-content-sha256 header does not match the request body: the body was "
                "altered, or the hash was computed over different bytes."
            )
    content_length = headers.get("content-length")
    if content_length is not None:
        text = content_length.strip()
        if not (text.isascii() and text.isdigit()) or int(text) != len(body):
            raise _fail(
                f'The content-length header "{content_length}" does not match the body '
                f"length {len(body)}."
            )
