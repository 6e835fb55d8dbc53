"""API signing keys: loading, fingerprinting and generating RSA keys the way OCI does.

The fingerprint of a key is what clients put in the third part of the ``keyId`` of a
signed request (``<tenancy>/<user>/<fingerprint>``) and what ``~/.oci/config`` holds as
``fingerprint``: the MD5 of the DER ``SubjectPublicKeyInfo`` of the public key, as
lowercase hex pairs joined by ``:`` (``openssl rsa -pubout -outform DER | openssl md5 -c``).

Pure functions, no I/O. Every failure to understand a key is a ``ValueError`` whose
message says what is wrong with it.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MIN_RSA_BITS = 2048
"""Smallest RSA modulus accepted for an API key (the OCI console's own minimum)."""

MAX_RSA_BITS = 16384
"""Largest RSA modulus accepted: bigger keys only make every verification slow."""


def _as_bytes(pem: bytes | str) -> bytes:
    if isinstance(pem, str):
        return pem.encode("ascii", errors="replace")
    return bytes(pem)


def load_public_key(pem: bytes | str) -> rsa.RSAPublicKey:
    """Parse a PEM public key and return it, if it is an RSA key of 2048 to 16384 bits.

    Accepts ``-----BEGIN PUBLIC KEY-----`` (SubjectPublicKeyInfo, what OCI expects) and
    ``-----BEGIN RSA PUBLIC KEY-----`` (PKCS#1). Raises ``ValueError`` for anything else:
    not PEM, a private key or certificate, a non-RSA key, or a key of the wrong size.
    """
    data = _as_bytes(pem).strip()
    if b"PRIVATE KEY-----" in data:
        raise ValueError(
            "This is a private key; upload the public key only (openssl rsa -in key.pem -pubout)."
        )
    if not data.startswith(b"-----BEGIN "):
        raise ValueError(
            "The public key is not in PEM format: expected text starting with "
            "'-----BEGIN PUBLIC KEY-----'."
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"The public key could not be parsed as a PEM public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(
            f"The public key is not an RSA key (it is {type(key).__name__.lstrip('_')}); "
            "OCI API keys must be RSA."
        )
    bits = key.key_size
    if bits < MIN_RSA_BITS:
        raise ValueError(f"The RSA key has {bits} bits; at least {MIN_RSA_BITS} bits are required.")
    if bits > MAX_RSA_BITS:
        raise ValueError(f"The RSA key has {bits} bits; at most {MAX_RSA_BITS} bits are accepted.")
    return key


def fingerprint_of_key(key: rsa.RSAPublicKey) -> str:
    """The OCI fingerprint of an already loaded public key (see ``fingerprint_of_public_key``)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.md5(der, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def fingerprint_of_public_key(pem: bytes | str) -> str:
    """The OCI fingerprint of a PEM public key, e.g. ``5a:7d:d8:...:45:79`` (16 pairs).

    MD5 over the DER SubjectPublicKeyInfo, lowercase hex pairs joined by ``:``. The key must
    pass ``load_public_key`` (RSA, 2048+ bits); otherwise ``ValueError``.
    """
    return fingerprint_of_key(load_public_key(pem))


def generate_key_pair(bits: int = MIN_RSA_BITS) -> tuple[bytes, bytes]:
    """A fresh RSA key pair (public exponent 65537) as ``(private_pem, public_pem)``.

    The private key is unencrypted PKCS#8 (``-----BEGIN PRIVATE KEY-----``), usable as an
    ``oci`` config ``key_file``; the public key is SubjectPublicKeyInfo PEM
    (``-----BEGIN PUBLIC KEY-----``), ready to register as an API key.
    """
    if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        raise ValueError(f"bits must be between {MIN_RSA_BITS} and {MAX_RSA_BITS}, got {bits}")
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def public_pem_from_private(private_pem: bytes | str, passphrase: bytes | None = None) -> bytes:
    """The SubjectPublicKeyInfo PEM of the public half of a PEM RSA private key.

    Accepts PKCS#8 and traditional (``BEGIN RSA PRIVATE KEY``) PEM; an encrypted key needs
    ``passphrase``. Raises ``ValueError`` for anything that is not an RSA private key, a
    missing or wrong passphrase, or a key ``load_public_key`` would reject.
    """
    data = _as_bytes(private_pem).strip()
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:  # passphrase missing, or given for an unencrypted key
        raise ValueError(f"The private key could not be loaded: {exc}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        hint = " (wrong passphrase?)" if b"ENCRYPTED" in data else ""
        raise ValueError(f"The private key could not be parsed as PEM{hint}: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(
            f"The private key is not an RSA key (it is {type(key).__name__.lstrip('_')}); "
            "OCI API keys must be RSA."
        )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    load_public_key(public_pem)  # enforce the size rules on the result
    return public_pem
