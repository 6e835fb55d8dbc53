"""Authentication and tenancy isolation (spec §4, §5.1): signatures checked the way OCI
does, every failure a 401 NotAuthenticated; another tenancy sees nothing of ours, exactly as
if it did not exist; users can register their own API keys."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oci
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from oci._vendor.requests import PreparedRequest

from tests.e2e.helpers import M, create_group, create_volume, service_error, wait_volume
from tests.e2e.raw import RawClient, RawResponse
from tests.e2e.server import Server

UNKNOWN_VOLUME = "ocid1.volume.oc1.phx.aaaaaaaanotthereatall"
UNKNOWN_GROUP = "ocid1.volumegroup.oc1.phx.aaaaaaaanotthereatall"
UNKNOWN_COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaanotthereatall"


def assert_unauthenticated(resp: RawResponse) -> None:
    assert resp.status == 401, (resp.status, resp.body)
    assert resp.code == "NotAuthenticated", resp.body
    assert resp.headers.get("opc-request-id")


def new_private_key() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def old_date(seconds: int) -> str:
    return email.utils.formatdate(time.time() - seconds, usegmt=True)


# --- signatures -----------------------------------------------------------------------------


def test_sdk_calls_pass(
    server: Server,
    bs: oci.core.BlockstorageClient,
    identity: oci.identity.IdentityClient,
    compartment: str,
    ad: str,
) -> None:
    tenancy = server.config()["tenancy"]
    assert identity.get_tenancy(tenancy).data.id == tenancy
    vol = create_volume(bs, compartment, ad, display_name="signed ümlaut / name")
    assert bs.get_volume(vol.id).data.display_name == "signed ümlaut / name"
    # Query strings are signed raw: spaces as "+", UTF-8 escapes, "/" escaped.
    listed = bs.list_volumes(compartment_id=compartment, display_name="signed ümlaut / name")
    assert [v.id for v in listed.data] == [vol.id]
    assert bs.update_volume(vol.id, M.UpdateVolumeDetails(display_name="é")).status == 200
    assert bs.delete_volume(vol.id).status == 204


def test_cli_calls_pass(server: Server, compartment: str) -> None:
    out = server.cli(
        "bv", "volume", "list", "--compartment-id", compartment, "--display-name", "a b/ä"
    )
    assert out.returncode == 0


def test_raw_signed_request_passes(server: Server, compartment: str) -> None:
    raw = RawClient(server)
    assert raw.get(f"/volumes?compartmentId={compartment}").status == 200
    created = raw.post(
        "/volumes",
        {"compartmentId": compartment, "sizeInGBs": 50, "availabilityDomain": "Uocm:PHX-AD-1"},
    )
    assert created.status == 200, created.body


def test_unsigned(server: Server, compartment: str) -> None:
    raw = RawClient(server)
    assert_unauthenticated(raw.get(f"/volumes?compartmentId={compartment}", sign=False))
    assert_unauthenticated(raw.post("/volumes", {"compartmentId": compartment}, sign=False))
    assert_unauthenticated(raw.delete(f"/volumes/{UNKNOWN_VOLUME}", sign=False))
    for auth in ("Basic dXNlcjpwdw==", "Signature", 'Signature keyId="x"', "garbage"):
        assert_unauthenticated(
            raw.get(
                f"/volumes?compartmentId={compartment}", sign=False, headers={"authorization": auth}
            )
        )


def test_tampered_body(server: Server, compartment: str) -> None:
    raw = RawClient(server)
    good = b'{"compartmentId": "%s", "sizeInGBs": 50}' % compartment.encode()
    evil = good.replace(b"50", b"99")

    def same_length(req: PreparedRequest) -> None:
        req.body = evil

    def longer(req: PreparedRequest) -> None:
        req.body = good[:-1] + b', "displayName": "evil"}'
        req.headers["content-length"] = str(len(req.body))

    assert_unauthenticated(raw.post("/volumes", good, after_sign=same_length))
    assert_unauthenticated(raw.post("/volumes", good, after_sign=longer))

    def new_hash_too(req: PreparedRequest) -> None:
        import base64
        import hashlib

        req.body = evil
        req.headers["x-content-sha256"] = base64.b64encode(hashlib.sha256(evil).digest()).decode()

    assert_unauthenticated(raw.post("/volumes", good, after_sign=new_hash_too))
    assert RawClient(server).get(f"/volumes?compartmentId={compartment}").json == []


def test_tampered_target_and_headers(server: Server, compartment: str) -> None:
    raw = RawClient(server)
    tenancy = raw.config["tenancy"]

    def other_query(req: PreparedRequest) -> None:
        req.url = req.url.replace(compartment, tenancy)

    def other_host(req: PreparedRequest) -> None:
        req.headers["host"] = "example.com"

    def other_method(req: PreparedRequest) -> None:
        req.method = "DELETE"

    def other_date(req: PreparedRequest) -> None:
        req.headers["date"] = old_date(1)

    for tamper in (other_query, other_host, other_date):
        assert_unauthenticated(raw.get(f"/volumes?compartmentId={compartment}", after_sign=tamper))
    # Signed as a GET, sent as a DELETE.
    signed_get = PreparedRequest()
    signed_get.prepare(
        method="GET",
        url=f"{server.endpoint}/20160918/volumes/{UNKNOWN_VOLUME}",
        headers={"content-type": "application/json"},
    )
    raw.signer(signed_get)
    resp = raw.delete(f"/volumes/{UNKNOWN_VOLUME}", sign=False, headers=dict(signed_get.headers))
    assert_unauthenticated(resp)


def test_wrong_key(server: Server, compartment: str) -> None:
    cfg = server.config()
    private_pem, _ = new_private_key()
    forged = oci.signer.Signer(
        cfg["tenancy"], cfg["user"], cfg["fingerprint"], None, private_key_content=private_pem
    )
    raw = RawClient(server)
    assert_unauthenticated(raw.get(f"/volumes?compartmentId={compartment}", signer=forged))
    assert_unauthenticated(raw.post("/volumes", {"compartmentId": compartment}, signer=forged))
    # The SDK with that key gets the same answer.
    config = dict(cfg, key_content=private_pem)
    config.pop("key_file")
    client = oci.core.BlockstorageClient(config, service_endpoint=server.endpoint)
    with service_error(401, "NotAuthenticated"):
        client.list_volumes(compartment_id=compartment)


def test_unknown_key_ids(server: Server, compartment: str) -> None:
    cfg = server.config()
    key_file = cfg["key_file"]
    other_tenancy = "ocid1.tenancy.oc1..aaaaaaaanotthereatall"
    other_user = "ocid1.user.oc1..aaaaaaaanotthereatall"
    for tenancy, user, fingerprint in (
        (other_tenancy, cfg["user"], cfg["fingerprint"]),
        (cfg["tenancy"], other_user, cfg["fingerprint"]),
        (cfg["tenancy"], cfg["user"], "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"),
    ):
        signer = oci.signer.Signer(tenancy, user, fingerprint, key_file)
        assert_unauthenticated(
            RawClient(server).get(f"/volumes?compartmentId={compartment}", signer=signer)
        )


@pytest.mark.parametrize("skew", [600, -600, 3600 * 24])
def test_stale_or_future_date(server: Server, compartment: str, skew: int) -> None:
    raw = RawClient(server)
    resp = raw.get(f"/volumes?compartmentId={compartment}", headers={"date": old_date(skew)})
    assert_unauthenticated(resp)
    resp = raw.post("/volumes", {"compartmentId": compartment}, headers={"date": old_date(skew)})
    assert_unauthenticated(resp)


def test_small_clock_skew_is_fine(server: Server, compartment: str) -> None:
    raw = RawClient(server)
    for skew in (240, -240):
        resp = raw.get(f"/volumes?compartmentId={compartment}", headers={"date": old_date(skew)})
        assert resp.status == 200, resp.body


def test_x_date_replaces_date(server: Server, compartment: str) -> None:
    """A signed x-date wins over date (for clients that cannot set date)."""
    raw = RawClient(server)
    cfg = raw.config
    signer = oci.signer.Signer(cfg["tenancy"], cfg["user"], cfg["fingerprint"], cfg["key_file"])
    signer.create_signers(
        signer.api_key,
        signer.private_key,
        ["x-date", "(request-target)", "host"],
        ["content-length", "content-type", "x-content-sha256"],
    )
    url = f"/volumes?compartmentId={compartment}"
    fresh, stale = old_date(0), old_date(900)
    assert raw.get(url, signer=signer, headers={"x-date": fresh, "date": stale}).status == 200
    assert_unauthenticated(raw.get(url, signer=signer, headers={"x-date": stale, "date": fresh}))
    created = raw.post(
        "/volumes",
        {"compartmentId": compartment, "sizeInGBs": 50, "availabilityDomain": "Uocm:PHX-AD-1"},
        signer=signer,
        headers={"x-date": fresh, "date": stale},
    )
    assert created.status == 200, created.body

    def swap_x_date(req: PreparedRequest) -> None:
        req.headers["x-date"] = old_date(-1)

    assert_unauthenticated(
        raw.get(url, signer=signer, headers={"x-date": fresh}, after_sign=swap_x_date)
    )


def test_bad_date_header(server: Server, compartment: str) -> None:
    raw = RawClient(server)
    for date in ("yesterday", "2026-01-01T00:00:00Z", ""):
        resp = raw.get(f"/volumes?compartmentId={compartment}", headers={"date": date})
        assert_unauthenticated(resp)


def test_missing_signed_headers(server: Server, compartment: str) -> None:
    raw = RawClient(server)
    body = {"compartmentId": compartment, "sizeInGBs": 50, "availabilityDomain": "x"}
    # The SDK's own "sign without content headers" mode: no x-content-sha256 on a POST.
    assert_unauthenticated(raw.post("/volumes", body, signer=raw.signer.without_content_headers))
    assert_unauthenticated(
        raw.put(
            f"/volumes/{UNKNOWN_VOLUME}",
            {"displayName": "x"},
            signer=raw.signer.without_content_headers,
        )
    )

    # A signer that leaves out host, or date, or (request-target).
    cfg = raw.config
    for headers in (
        ["date", "(request-target)"],
        ["(request-target)", "host"],
        ["date", "host"],
        ["date", "(request-target)", "host", "content-length", "content-type"],
    ):
        signer = oci.signer.Signer(cfg["tenancy"], cfg["user"], cfg["fingerprint"], cfg["key_file"])
        signer.create_signers(signer.api_key, signer.private_key, headers, [])
        assert_unauthenticated(raw.post("/volumes", body, signer=signer))
        if "x-content-sha256" not in headers and len(headers) < 4:
            assert_unauthenticated(raw.get(f"/volumes?compartmentId={compartment}", signer=signer))


def test_signed_header_missing_from_request(server: Server, compartment: str) -> None:
    raw = RawClient(server)

    def drop_sha(req: PreparedRequest) -> None:
        del req.headers["x-content-sha256"]

    assert_unauthenticated(
        raw.post("/volumes", {"compartmentId": compartment}, after_sign=drop_sha)
    )


# --- other tenancies ------------------------------------------------------------------------


@dataclass
class Mine:
    compartment: str
    volume: str
    group: str
    grouped_volume: str


@pytest.fixture(scope="module")
def other(server: Server) -> str:
    """Profile name of a second tenancy, created with ``ocibv tenancy create``."""
    out = server.ocibv("tenancy", "create", "--name", "other").stdout
    assert "tenancy ocid1.tenancy." in out
    return "other"


@pytest.fixture
def mine(server: Server, compartment: str, ad: str) -> Mine:
    bs = server.blockstorage()
    vol = create_volume(bs, compartment, ad, display_name="mine")
    member = create_volume(bs, compartment, ad, display_name="member")
    group = create_group(bs, compartment, ad, [member.id], display_name="mine-group")
    return Mine(compartment, vol.id, group.id, member.id)


@pytest.fixture
def foreign(server: Server, other: str) -> oci.core.BlockstorageClient:
    return server.blockstorage(other)


def same_as_missing(foreign_call: Any, missing_call: Any, real_id: str, fake_id: str) -> None:
    """Both raise 404 NotAuthorizedOrNotFound with the same message (ids aside)."""
    with service_error(404, "NotAuthorizedOrNotFound") as real:
        foreign_call()
    with service_error(404, "NotAuthorizedOrNotFound") as fake:
        missing_call()
    assert real.value.message.replace(real_id, "ID") == fake.value.message.replace(fake_id, "ID")


def test_foreign_volume_is_not_found(
    server: Server, foreign: oci.core.BlockstorageClient, mine: Mine
) -> None:
    v, u = mine.volume, UNKNOWN_VOLUME
    same_as_missing(lambda: foreign.get_volume(v), lambda: foreign.get_volume(u), v, u)
    update = M.UpdateVolumeDetails(display_name="stolen", size_in_gbs=100)
    same_as_missing(
        lambda: foreign.update_volume(v, update), lambda: foreign.update_volume(u, update), v, u
    )
    same_as_missing(lambda: foreign.delete_volume(v), lambda: foreign.delete_volume(u), v, u)
    own = server.config("other")["tenancy"]
    move = M.ChangeVolumeCompartmentDetails(compartment_id=own)
    same_as_missing(
        lambda: foreign.change_volume_compartment(v, move),
        lambda: foreign.change_volume_compartment(u, move),
        v,
        u,
    )
    # If-match does not leak existence either.
    same_as_missing(
        lambda: foreign.delete_volume(v, if_match="x"),
        lambda: foreign.delete_volume(u, if_match="x"),
        v,
        u,
    )

    after = server.blockstorage().get_volume(v).data
    assert (after.display_name, after.size_in_gbs, after.lifecycle_state) == (
        "mine",
        50,
        "AVAILABLE",
    )
    assert after.compartment_id == mine.compartment


def test_foreign_group_is_not_found(
    server: Server, foreign: oci.core.BlockstorageClient, mine: Mine
) -> None:
    g, u = mine.group, UNKNOWN_GROUP
    same_as_missing(lambda: foreign.get_volume_group(g), lambda: foreign.get_volume_group(u), g, u)
    update = M.UpdateVolumeGroupDetails(display_name="stolen", volume_ids=[])
    same_as_missing(
        lambda: foreign.update_volume_group(g, update),
        lambda: foreign.update_volume_group(u, update),
        g,
        u,
    )
    same_as_missing(
        lambda: foreign.delete_volume_group(g), lambda: foreign.delete_volume_group(u), g, u
    )
    own = server.config("other")["tenancy"]
    move = M.ChangeVolumeGroupCompartmentDetails(compartment_id=own)
    same_as_missing(
        lambda: foreign.change_volume_group_compartment(g, move),
        lambda: foreign.change_volume_group_compartment(u, move),
        g,
        u,
    )
    after = server.blockstorage().get_volume_group(g).data
    assert (after.display_name, after.volume_ids, after.lifecycle_state) == (
        "mine-group",
        [mine.grouped_volume],
        "AVAILABLE",
    )


def test_foreign_compartment_is_not_found(
    server: Server, foreign: oci.core.BlockstorageClient, mine: Mine, ad: str
) -> None:
    c, u = mine.compartment, UNKNOWN_COMPARTMENT
    same_as_missing(
        lambda: foreign.list_volumes(compartment_id=c),
        lambda: foreign.list_volumes(compartment_id=u),
        c,
        u,
    )
    same_as_missing(
        lambda: foreign.list_volume_groups(compartment_id=c),
        lambda: foreign.list_volume_groups(compartment_id=u),
        c,
        u,
    )
    details = M.CreateVolumeDetails(compartment_id=c, availability_domain=ad, size_in_gbs=50)
    same_as_missing(
        lambda: foreign.create_volume(details),
        lambda: foreign.create_volume(
            M.CreateVolumeDetails(compartment_id=u, availability_domain=ad, size_in_gbs=50)
        ),
        c,
        u,
    )
    foreign_identity = server.identity("other")
    same_as_missing(
        lambda: foreign_identity.get_compartment(c),
        lambda: foreign_identity.get_compartment(u),
        c,
        u,
    )
    rename = oci.identity.models.UpdateCompartmentDetails(description="stolen")
    same_as_missing(
        lambda: foreign_identity.update_compartment(c, rename),
        lambda: foreign_identity.update_compartment(u, rename),
        c,
        u,
    )
    same_as_missing(
        lambda: foreign_identity.delete_compartment(c),
        lambda: foreign_identity.delete_compartment(u),
        c,
        u,
    )
    mine_tenancy = server.config()["tenancy"]
    with service_error(404, "NotAuthorizedOrNotFound"):
        foreign.list_volumes(compartment_id=mine_tenancy)
    with service_error(404, "NotAuthorizedOrNotFound"):
        foreign_identity.get_tenancy(mine_tenancy)
    with service_error(404, "NotAuthorizedOrNotFound"):
        foreign_identity.list_availability_domains(mine_tenancy)
    assert server.identity().get_compartment(c).data.lifecycle_state == "ACTIVE"
    assert {v.id for v in server.blockstorage().list_volumes(compartment_id=c).data} == {
        mine.volume,
        mine.grouped_volume,
    }


def test_foreign_ids_in_bodies(
    server: Server, foreign: oci.core.BlockstorageClient, mine: Mine, ad: str
) -> None:
    own = server.config("other")["tenancy"]
    with service_error(400, "RelatedResourceNotAuthorizedOrNotFound"):
        foreign.create_volume(
            M.CreateVolumeDetails(
                compartment_id=own, source_details=M.VolumeSourceFromVolumeDetails(id=mine.volume)
            )
        )
    with service_error(400, "RelatedResourceNotAuthorizedOrNotFound"):
        foreign.create_volume_group(
            M.CreateVolumeGroupDetails(
                compartment_id=own,
                availability_domain=ad,
                source_details=M.VolumeGroupSourceFromVolumesDetails(volume_ids=[mine.volume]),
            )
        )
    with service_error(400, "RelatedResourceNotAuthorizedOrNotFound"):
        foreign.create_volume_group(
            M.CreateVolumeGroupDetails(
                compartment_id=own,
                availability_domain=ad,
                source_details=M.VolumeGroupSourceFromVolumeGroupDetails(
                    volume_group_id=mine.group
                ),
            )
        )
    # Our own volume cannot be moved into their tenancy either.
    with service_error(404, "NotAuthorizedOrNotFound"):
        server.blockstorage().change_volume_compartment(
            mine.volume, M.ChangeVolumeCompartmentDetails(compartment_id=own)
        )
    assert server.blockstorage().get_volume(mine.volume).data.volume_group_id is None


def test_tenancies_are_separate(
    server: Server, foreign: oci.core.BlockstorageClient, mine: Mine, ad: str
) -> None:
    own = server.config("other")["tenancy"]
    theirs = create_volume(foreign, own, ad, display_name="theirs")
    assert [v.id for v in foreign.list_volumes(compartment_id=own).data] == [theirs.id]
    with service_error(404, "NotAuthorizedOrNotFound"):
        server.blockstorage().get_volume(theirs.id)
    # Retry tokens are per tenancy: the same token makes one volume in each.
    ours_details = M.CreateVolumeDetails(
        compartment_id=mine.compartment, availability_domain=ad, size_in_gbs=50
    )
    theirs_details = M.CreateVolumeDetails(
        compartment_id=own, availability_domain=ad, size_in_gbs=50
    )
    a = server.blockstorage().create_volume(ours_details, opc_retry_token="shared-token").data
    b = foreign.create_volume(theirs_details, opc_retry_token="shared-token").data
    assert a.id != b.id
    assert (a.compartment_id, b.compartment_id) == (mine.compartment, own)
    wait_volume(foreign, b.id)


def test_foreign_cli(server: Server, other: str, mine: Mine) -> None:
    out = server.cli("bv", "volume", "get", "--volume-id", mine.volume, profile=other, check=False)
    assert out.returncode != 0
    assert (out.error["status"], out.error["code"]) == (404, "NotAuthorizedOrNotFound")


# --- user keys ------------------------------------------------------------------------------


@pytest.fixture
def user_key(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    private_pem, public_pem = new_private_key()
    private = tmp_path / "user-key.pem"
    public = tmp_path / "pub.pem"
    private.write_text(private_pem)
    private.chmod(0o600)
    public.write_bytes(public_pem)
    yield private, public


def test_key_add(server: Server, compartment: str, user_key: tuple[Path, Path]) -> None:
    private, public = user_key
    cfg = server.config()
    expected = oci.signer.load_private_key_from_file(str(private)).public_key()
    import hashlib

    der = expected.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.md5(der, usedforsecurity=False).hexdigest()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, 32, 2))
    config = {
        "user": cfg["user"],
        "tenancy": cfg["tenancy"],
        "region": cfg["region"],
        "fingerprint": fingerprint,
        "key_file": str(private),
    }
    oci.config.validate_config(config)
    client = oci.core.BlockstorageClient(config, service_endpoint=server.endpoint)
    with service_error(401, "NotAuthenticated"):
        client.list_volumes(compartment_id=compartment)

    out = server.ocibv("key", "add", "--user", cfg["user"], str(public)).stdout
    assert f"fingerprint {fingerprint}" in out
    assert client.list_volumes(compartment_id=compartment).status == 200
    vol = client.create_volume(
        M.CreateVolumeDetails(
            compartment_id=compartment, availability_domain="Uocm:PHX-AD-1", size_in_gbs=50
        )
    ).data
    assert server.blockstorage().get_volume(vol.id).data.id == vol.id
    # The original key keeps working, and adding the same key again is harmless.
    assert server.blockstorage().list_volumes(compartment_id=compartment).status == 200
    server.ocibv("key", "add", "--user", cfg["user"], str(public))
    assert client.get_volume(vol.id).status == 200


def test_key_add_for_other_tenancy_user(
    server: Server, other: str, compartment: str, user_key: tuple[Path, Path]
) -> None:
    """A key registered for the other tenancy's user does not open ours."""
    private, public = user_key
    theirs = server.config(other)
    out = server.ocibv("key", "add", "--user", theirs["user"], str(public)).stdout
    fingerprint = out.split()[-1]
    as_them = dict(theirs, fingerprint=fingerprint, key_file=str(private))
    client = oci.core.BlockstorageClient(as_them, service_endpoint=server.endpoint)
    assert client.list_volumes(compartment_id=theirs["tenancy"]).status == 200
    with service_error(404, "NotAuthorizedOrNotFound"):
        client.list_volumes(compartment_id=compartment)
    # Claiming our tenancy in the keyId with their user's key fails to authenticate.
    as_us = dict(as_them, tenancy=server.config()["tenancy"])
    with service_error(401, "NotAuthenticated"):
        oci.core.BlockstorageClient(as_us, service_endpoint=server.endpoint).list_volumes(
            compartment_id=compartment
        )


def test_key_add_refuses_bad_input(server: Server, user_key: tuple[Path, Path]) -> None:
    private, public = user_key
    cfg = server.config()
    unknown = server.ocibv(
        "key", "add", "--user", "ocid1.user.oc1..aaaaaaaanotthereatall", str(public), check=False
    )
    assert unknown.returncode != 0
    not_public = server.ocibv("key", "add", "--user", cfg["user"], str(private), check=False)
    assert not_public.returncode != 0
    assert "private" in (not_public.stdout + not_public.stderr).lower()
