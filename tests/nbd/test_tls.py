"""NBD_OPT_STARTTLS: required TLS refuses plaintext options; a TLS client gets exact bytes."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ocibv.engine.live_volume import LiveVolume
from ocibv.nbd import protocol as p
from ocibv.nbd.exports import ExportTable
from ocibv.nbd.server import NbdServer
from tests.nbd.helpers import MIB, RawClient, RunningServer, make_image, run, running_server


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server-cert.pem", directory / "server-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "ca-cert.pem").write_bytes(cert_path.read_bytes())  # libnbd's trust anchor
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = self_signed(certs)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    image = make_image(tmp_path / "vol.img", 8 * MIB, [(MIB, MIB)])
    volume = LiveVolume(image)
    table = ExportTable()
    table.add("vol", volume)
    with running_server(table, tls=context, tls_required=True) as server:
        yield server, certs
    volume.close()


def test_plaintext_options_are_refused_when_tls_is_required(
    tls_server: tuple[RunningServer, Path],
) -> None:
    server, _ = tls_server
    c = RawClient(server.port)
    c.start()
    c.option(p.OPT_LIST)
    assert c.reply()[1] == p.REP_ERR_TLS_REQD
    c.option(p.OPT_GO, b"\x00\x00\x00\x03vol\x00\x00")
    assert c.reply()[1] == p.REP_ERR_TLS_REQD
    c.option(p.OPT_EXPORT_NAME, b"vol")  # cannot be refused politely: disconnect
    assert c.closed_by_server()
    plain = run("nbdinfo", f"nbd://127.0.0.1:{server.port}/vol")
    assert plain.returncode != 0


def test_raw_client_starttls_then_reads(tls_server: tuple[RunningServer, Path]) -> None:
    server, certs = tls_server
    c = RawClient(server.port)
    c.start()
    c.option(p.OPT_STARTTLS)
    assert c.reply()[1] == p.REP_ACK
    context = ssl.create_default_context(cafile=certs / "ca-cert.pem")
    c.sock = context.wrap_socket(c.sock, server_hostname="localhost")
    c.option(p.OPT_STARTTLS)  # already up
    assert c.reply()[1] == p.REP_ERR_INVALID
    assert c.go("vol") == 8 * MIB
    error, data = c.read(MIB, 4096)
    assert error == 0 and data == (certs.parent / "vol.img").read_bytes()[MIB : MIB + 4096]


def test_nbdcopy_over_tls(tls_server: tuple[RunningServer, Path], tmp_path: Path) -> None:
    server, certs = tls_server
    uri = f"nbds://127.0.0.1:{server.port}/vol?tls-certificates={certs}"
    out = tmp_path / "out.img"
    copied = run("nbdcopy", uri, str(out))
    assert copied.returncode == 0, copied.stderr
    assert out.read_bytes() == (tmp_path / "vol.img").read_bytes()


def test_non_loopback_listener_needs_tls() -> None:
    with pytest.raises(ValueError, match="TLS"):
        NbdServer(ExportTable(), host="0.0.0.0")
    server = NbdServer(ExportTable(), host="0.0.0.0", tls=ssl.create_default_context())
    assert server.tls_required and server.uri("x").startswith("nbds://")
