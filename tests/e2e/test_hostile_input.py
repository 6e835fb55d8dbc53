"""Hostile and malformed input through the wire: every answer is an OCI error (JSON body with
code and message, ``opc-request-id``), never a 500, never a body that is not JSON, and
nothing stored can make a later response invalid."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oci
import pytest

from ocibv.domain.keys import generate_key_pair
from tests.contract import CONTRACT_FILE, Contract, Recorder, nulls, strict_loads
from tests.e2e.helpers import M, create_group, create_volume, wait_state
from tests.e2e.raw import RawClient, RawResponse
from tests.e2e.server import Server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("hostile") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def raw(srv: Server) -> RawClient:
    return RawClient(srv)


@pytest.fixture(scope="module")
def bs(srv: Server) -> oci.core.BlockstorageClient:
    return srv.blockstorage()


@pytest.fixture(scope="module")
def comp(srv: Server) -> str:
    details = oci.identity.models.CreateCompartmentDetails(
        compartment_id=srv.config()["tenancy"],
        name=f"hostile-{uuid.uuid4().hex[:8]}",
        description="hostile input",
    )
    return str(srv.identity().create_compartment(details).data.id)


@pytest.fixture(scope="module")
def ad(srv: Server) -> str:
    return str(srv.identity().list_availability_domains(srv.config()["tenancy"]).data[0].name)


@pytest.fixture(scope="module")
def volume(bs: oci.core.BlockstorageClient, comp: str, ad: str) -> Any:
    return create_volume(bs, comp, ad)


def oci_error(resp: RawResponse, status: int, code: str, *mentions: str) -> dict[str, Any]:
    """Assert ``resp`` is the OCI error ``status``/``code`` whose message names ``mentions``."""
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers.get("opc-request-id")
    assert resp.headers.get("content-type", "").startswith("application/json")
    body = strict_loads(resp.body)
    assert body["code"] == code, body
    for text in mentions:
        assert text in body["message"], (text, body["message"])
    return dict(body)


def strict_ok(resp: RawResponse) -> Any:
    assert resp.status == 200, (resp.status, resp.body[:300])
    value = strict_loads(resp.body)
    assert not nulls(value), nulls(value)
    return value


def send_raw(srv: Server, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as sock:
        # The server may answer and close before it has read everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


# --- 1: retention periods past the year 9999 ---------------------------------------------------


def test_update_retention_beyond_year_9999_is_400(
    raw: RawClient, bs: oci.core.BlockstorageClient, comp: str, ad: str, volume: Any
) -> None:
    backup = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume.id)).data
    group = create_group(bs, comp, ad, [create_volume(bs, comp, ad).id])
    group_backup = bs.create_volume_group_backup(
        M.CreateVolumeGroupBackupDetails(volume_group_id=group.id)
    ).data
    wait_state(lambda: bs.get_volume_backup(backup.id).data, "AVAILABLE")
    wait_state(lambda: bs.get_volume_group_backup(group_backup.id).data, "AVAILABLE")
    for path in (f"/volumeBackups/{backup.id}", f"/volumeGroupBackups/{group_backup.id}"):
        for unit, amount, top in (("YEARS", 7974, 100), ("YEARS", 7973, 100),
                                  ("YEARS", 10**12, 100), ("DAYS", 10**12, 36500)):
            period = {"retentionTimeUnit": unit, "retentionTimeAmount": amount}
            oci_error(raw.put(path, {"retentionPeriod": period}), 400, "InvalidParameter",
                      "retentionTimeAmount", f"1 to {top} {unit}")
        period = {"retentionTimeUnit": "YEARS", "retentionTimeAmount": 9000}
        oci_error(raw.post("/volumeBackups", {"volumeId": volume.id, "retentionPeriod": period}),
                  400, "InvalidParameter", "1 to 100 YEARS")
        strict_ok(raw.get(path))


# --- 2: non-finite numbers and lone surrogates -------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_tag_values_are_refused(
    raw: RawClient, comp: str, ad: str, volume: Any, literal: str
) -> None:
    body = (
        f'{{"compartmentId": "{comp}", "availabilityDomain": "{ad}", "sizeInGBs": 50, '
        f'"definedTags": {{"ns": {{"k": {literal}}}}}}}'
    )
    oci_error(raw.post("/volumes", body), 400, "InvalidParameter", "definedTags.ns.k")
    update = f'{{"definedTags": {{"ns": {{"k": {literal}}}}}}}'
    oci_error(raw.put(f"/volumes/{volume.id}", update), 400, "InvalidParameter", "definedTags")
    strict_ok(raw.get(f"/volumes/{volume.id}"))
    strict_ok(raw.get(f"/volumes?compartmentId={comp}"))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"freeformTags": {"k": "a\\ud800b"}}', "freeformTags.k"),
        ('{"freeformTags": {"\\udfff": "v"}}', "freeformTags"),
        ('{"definedTags": {"ns": {"k": "\\udbff"}}}', "definedTags.ns.k"),
        ('{"definedTags": {"\\ud800": {"k": "v"}}}', "definedTags"),
        ('{"displayName": "x\\ud800"}', "displayName"),
    ],
)
def test_lone_surrogates_are_refused(raw: RawClient, volume: Any, body: str, field: str) -> None:
    oci_error(raw.put(f"/volumes/{volume.id}", body), 400, "InvalidParameter", field)
    # A proper pair (one character outside the BMP) is fine.
    ok = raw.put(f"/volumes/{volume.id}", '{"freeformTags": {"k": "\\ud83d\\ude00"}}')
    assert strict_ok(ok)["freeformTags"] == {"k": "\U0001f600"}


def test_responses_are_written_without_nan(raw: RawClient, volume: Any) -> None:
    resp = raw.get(f"/volumes/{volume.id}")
    for literal in (b"NaN", b"Infinity"):
        assert literal not in resp.body
    strict_ok(resp)


# --- 3: no null for absent fields --------------------------------------------------------------


def test_absent_fields_are_omitted(raw: RawClient, bs: oci.core.BlockstorageClient,
                                   comp: str, volume: Any) -> None:
    vol = strict_ok(raw.get(f"/volumes/{volume.id}"))
    for absent in ("kmsKeyId", "sourceDetails", "volumeGroupId", "clusterPlacementGroupId"):
        assert absent not in vol
    backup = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume.id)).data
    got = strict_ok(raw.get(f"/volumeBackups/{backup.id}"))
    for absent in ("expirationTime", "kmsKeyId", "retentionPeriod", "timeRetentionExpiresAt"):
        assert absent not in got
    for path in (f"/volumes?compartmentId={comp}", f"/volumeBackups?compartmentId={comp}"):
        strict_ok(raw.get(path))
    # The SDK reads an omitted field as None, exactly as it read null.
    assert bs.get_volume(volume.id).data.kms_key_id is None


# --- 5: invalid input that was accepted --------------------------------------------------------


def test_cluster_placement_group_filter_is_validated(raw: RawClient, comp: str) -> None:
    long_id = "g" * 256
    oci_error(raw.get(f"/volumes?compartmentId={comp}&clusterPlacementGroupId={long_id}"),
              400, "InvalidParameter", "clusterPlacementGroupId")
    unknown = "ocid1.compartment.oc1..aaaaaaaanotthereatall"
    oci_error(raw.get(f"/volumes?compartmentId={unknown}&clusterPlacementGroupId=g"),
              404, "NotAuthorizedOrNotFound")
    assert strict_ok(raw.get(f"/volumes?compartmentId={comp}&clusterPlacementGroupId=g")) == []


def test_null_fields_are_refused(raw: RawClient, comp: str, volume: Any) -> None:
    oci_error(raw.put(f"/compartments/{comp}", {"description": None}),
              400, "InvalidParameter", "description")
    oci_error(raw.put(f"/compartments/{comp}", {"name": None}), 400, "InvalidParameter", "name")
    oci_error(raw.put(f"/volumes/{volume.id}", {"displayName": None}),
              400, "InvalidParameter", "displayName")
    assert strict_ok(raw.get(f"/compartments/{comp}"))["description"] == "hostile input"


# --- 6: errors below the app -------------------------------------------------------------------


def test_parser_errors_are_oci_errors(srv: Server) -> None:
    del_byte = b"GET /20160918/volumes HTTP/1.1\r\nhost: x\r\nx-bad: a\x7fb\r\n\r\n"
    long_path = b"GET /20160918/" + b"a" * 70_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n"
    for request, status, code in (
        (del_byte, 400, "CannotParseRequest"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "CannotParseRequest"),
        (long_path, 431, "RequestHeaderFieldsTooLarge"),
    ):
        got, headers, body = send_raw(srv, request)
        assert got == status, (got, body[:200])
        assert headers.get("opc-request-id")
        assert headers["content-type"] == "application/json"
        assert strict_loads(body)["code"] == code


# --- 7: every operation of the contract answers ------------------------------------------------


@pytest.mark.skipif(not CONTRACT_FILE.exists(), reason="no contract beside the repository")
def test_every_contract_operation_is_routed(raw: RawClient, comp: str) -> None:
    contract = Contract.load()
    unbuilt = []
    for op in contract.operations:
        path = op.pattern.pattern.replace("[^/]+", "ocid1.thing.oc1..aaaaaaaanotthereatall")
        path += f"?compartmentId={comp}&availabilityDomain=x&assetId=x"
        body = {} if op.method in ("POST", "PUT") else None
        resp = raw.request(op.method, path, body)
        if resp.status == 501:
            oci_error(resp, 501, "MethodNotImplemented", op.name)
            unbuilt.append(op.name)
            unsigned = raw.request(op.method, path, body, sign=False)
            oci_error(unsigned, 401, "NotAuthenticated")
        else:
            assert resp.status in (200, 204, 400, 404), (op.name, resp.status, resp.body)
            answer = strict_loads(resp.body or b"{}")
            assert not isinstance(answer, dict) or answer.get("code") != "NotFound", op.name
    # 31 never routed before + kmsKey (3) + copy (2), less the 9 backup policy operations
    assert len(unbuilt) == 27, unbuilt
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for op in contract.operations:
        assert (f"`{op.name}`" in readme) != (op.name in unbuilt), op.name


# --- 13: no key enumeration --------------------------------------------------------------------


def test_unknown_key_and_wrong_signature_answer_alike(srv: Server, comp: str) -> None:
    cfg = srv.config()
    other_pem = generate_key_pair()[0].decode()  # registered nowhere
    fingerprint = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"
    messages = []
    # A registered keyId with the wrong key, then a keyId registered nowhere.
    for fp, pem in ((cfg["fingerprint"], other_pem), (fingerprint, other_pem)):
        signer = oci.signer.Signer(cfg["tenancy"], cfg["user"], fp, None,
                                   private_key_content=pem)
        resp = RawClient(srv).get(f"/volumes?compartmentId={comp}", signer=signer)
        messages.append(oci_error(resp, 401, "NotAuthenticated")["message"].replace(fp, "FP"))
    assert messages[0] == messages[1]
    assert "not known" not in messages[0]


# --- 14: bounded input -------------------------------------------------------------------------


def test_tag_limits(raw: RawClient, volume: Any) -> None:
    path = f"/volumes/{volume.id}"
    oci_error(raw.put(path, {"freeformTags": {f"k{i}": "v" for i in range(65)}}),
              400, "InvalidParameter", "64 tags")
    mixed = {"freeformTags": {f"k{i}": "v" for i in range(40)},
             "definedTags": {"ns": {f"d{i}": "v" for i in range(25)}}}
    oci_error(raw.put(path, mixed), 400, "InvalidParameter", "64 tags")
    oci_error(raw.put(path, {"freeformTags": {"k" * 101: "v"}}), 400, "InvalidParameter",
              "freeformTags")
    oci_error(raw.put(path, {"freeformTags": {"k": "v" * 257}}), 400, "InvalidParameter",
              "freeformTags.k")
    oci_error(raw.put(path, {"definedTags": {"n" * 101: {"k": "v"}}}), 400, "InvalidParameter",
              "definedTags")
    oci_error(raw.put(path, {"freeformTags": {f"k{i:02}": "v" * 200 for i in range(30)}}),
              400, "InvalidParameter", "bytes")
    oci_error(raw.put(path, {"definedTags": {"ns": {"k": 1}}}), 400, "InvalidParameter",
              "definedTags.ns.k")
    at_limit = {f"k{i:02}": "v" * 60 for i in range(64)}
    assert strict_ok(raw.put(path, {"freeformTags": at_limit}))["freeformTags"] == at_limit


def test_huge_header_is_refused_quickly(srv: Server) -> None:
    request = (b"GET /20160918/volumes HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (8 << 20)
               + b"\r\n\r\n")
    started = time.monotonic()
    status, headers, body = send_raw(srv, request)
    assert time.monotonic() - started < 2
    assert status == 431 and headers.get("opc-request-id")
    assert strict_loads(body)["code"] == "RequestHeaderFieldsTooLarge"


def test_unsigned_large_body_is_refused_before_reading(srv: Server) -> None:
    head = (b"POST /20160918/volumes HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 20000000\r\n\r\n")
    started = time.monotonic()
    # The rest of the 20 MB never comes: the answer must not wait for it.
    status, headers, body = send_raw(srv, head + b"{" + b" " * 65536)
    assert time.monotonic() - started < 2
    assert (status, strict_loads(body)["code"]) == (401, "NotAuthenticated")
    assert headers.get("connection") == "close" and headers.get("opc-request-id")


def test_signed_body_is_checked_after_reading(raw: RawClient, comp: str, ad: str) -> None:
    body = json.dumps({"compartmentId": comp, "availabilityDomain": ad, "sizeInGBs": 50})

    def swap(req: Any) -> None:
        req.body = req.body.replace(b"50", b"51")

    oci_error(raw.post("/volumes", body, after_sign=swap), 401, "NotAuthenticated",
              "x-content-sha256")
    too_big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    oci_error(raw.post("/volumes", too_big), 413, "PayloadTooLarge")


# --- the contract check itself -----------------------------------------------------------------


def test_the_contract_check_sees_sdk_responses(
    contract_recorder: Recorder | None, bs: oci.core.BlockstorageClient, volume: Any
) -> None:
    if contract_recorder is None:
        pytest.skip("no contract beside the repository")
    before = contract_recorder.checked
    bs.get_volume(volume.id)
    assert contract_recorder.checked == before + 1
    bad = b'{"id": "x", "kmsKeyId": null, "sizeInMBs": NaN}'
    found = contract_recorder.contract.check("GET", f"/20160918/volumes/{volume.id}", 200, bad)
    assert any("not strict JSON" in v for v in found)
