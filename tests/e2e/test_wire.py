"""Wire conventions (spec §0, §4, §6, §7, §9): timestamps, request ids, etags and if-match,
retry tokens, paging, parameter validation, body limits, routing, and path-like ids."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import oci
import pytest

from tests.e2e.helpers import (
    GIB,
    M,
    create_group,
    create_volume,
    per_thread,
    service_error,
    wait_group,
    wait_volume,
)
from tests.e2e.raw import RawClient, RawResponse
from tests.e2e.server import InProcessServer, Server

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UNKNOWN_VOLUME = "ocid1.volume.oc1.phx.aaaaaaaanotthereatall"


@pytest.fixture(scope="module")
def server(own_server: InProcessServer) -> Server:
    """This module's own server: test_path_like_ids checks no file appeared anywhere near
    its data dir."""
    return own_server


@pytest.fixture
def raw(server: Server) -> RawClient:
    return RawClient(server)


def assert_error(resp: RawResponse, status: int, code: str, *mentions: str) -> None:
    assert resp.status == status, (resp.status, resp.body)
    assert resp.headers.get("opc-request-id")
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.code == code, resp.body
    assert resp.message
    for text in mentions:
        assert text in resp.message, (text, resp.message)


def volume_body(compartment: str, ad: str, **extra: Any) -> dict[str, Any]:
    return {"compartmentId": compartment, "availabilityDomain": ad, "sizeInGBs": 50, **extra}


# --- timestamps and request ids -------------------------------------------------------------


def test_timestamps_rfc3339_ms_utc(
    raw: RawClient, bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    vol = create_volume(bs, compartment, ad)
    group = create_group(bs, compartment, ad, [vol.id])
    bodies = [
        raw.get(f"/volumes/{vol.id}").json,
        raw.get(f"/volumeGroups/{group.id}").json,
        raw.get(f"/compartments/{compartment}").json,
        *raw.get(f"/volumes?compartmentId={compartment}").json,
        *raw.get(f"/volumeGroups?compartmentId={compartment}").json,
    ]
    for body in bodies:
        assert RFC3339_MS_UTC.match(body["timeCreated"]), body["timeCreated"]
    created = datetime.strptime(bodies[0]["timeCreated"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(created.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    # And the SDK reads it as an aware UTC datetime.
    parsed = bs.get_volume(vol.id).data.time_created
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.replace(tzinfo=None) == created


def test_request_id_on_every_response(
    server: Server, raw: RawClient, bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    vol = create_volume(bs, compartment, ad)
    responses = {
        "create": raw.post("/volumes", volume_body(compartment, ad)),
        "get": raw.get(f"/volumes/{vol.id}"),
        "list": raw.get(f"/volumes?compartmentId={compartment}"),
        "update": raw.put(f"/volumes/{vol.id}", {"displayName": "x"}),
        "400": raw.post("/volumes", {"availabilityDomain": ad}),
        "401": raw.get(f"/volumes/{vol.id}", sign=False),
        "404 resource": raw.get(f"/volumes/{UNKNOWN_VOLUME}"),
        "404 route": raw.get("/nothingHere"),
        "404 outside api": raw.get("/20150101/volumes", sign=False),
        "405": raw.request("PATCH", f"/volumes/{vol.id}", {}),
        "412": raw.put(f"/volumes/{vol.id}", {"displayName": "y"}, headers={"if-match": "nope"}),
        "413": raw.post("/volumes", b"{" + b" " * (1024 * 1024 + 10) + b"}"),
    }
    responses["delete"] = raw.delete(f"/volumes/{vol.id}")
    expected = {
        "create": 200,
        "get": 200,
        "list": 200,
        "update": 200,
        "delete": 204,
        "400": 400,
        "401": 401,
        "404 resource": 404,
        "404 route": 404,
        "404 outside api": 404,
        "405": 405,
        "412": 412,
        "413": 413,
    }
    for name, resp in responses.items():
        assert resp.status == expected[name], (name, resp.status, resp.body)
        assert resp.headers.get("opc-request-id"), name
    ids = [r.headers["opc-request-id"] for r in responses.values()]
    assert len(set(ids)) == len(ids)
    # A client-chosen id is carried along (OCI answers "<client id>/<server id>").
    mine = "C0FFEE0123456789C0FFEE0123456789"
    for path in (f"/volumes/{vol.id}", f"/volumes/{UNKNOWN_VOLUME}", "/nothingHere"):
        echoed = raw.get(path, headers={"opc-request-id": mine}).headers["opc-request-id"]
        assert echoed.startswith(mine) and echoed != mine
    # The SDK surfaces the server's id, on success and in errors.
    assert bs.get_volume(vol.id).request_id
    with service_error(404, "NotAuthorizedOrNotFound") as info:
        bs.get_volume(UNKNOWN_VOLUME)
    assert info.value.request_id


# --- etags ----------------------------------------------------------------------------------


def test_etag_changes_on_every_change(make_inprocess_server: Callable[..., Server]) -> None:
    srv = make_inprocess_server(env={"OCIBV_JOB_DELAY_SECONDS": "1"}).start()
    bs = srv.blockstorage()
    tenancy = srv.config()["tenancy"]
    ad = srv.identity().list_availability_domains(tenancy).data[0].name
    compartment = (
        srv.identity()
        .create_compartment(
            oci.identity.models.CreateCompartmentDetails(
                compartment_id=tenancy, name="etags", description="etags"
            )
        )
        .data.id
    )
    seen: list[tuple[str, str]] = []

    def record(step: str, etag: str) -> None:
        assert etag, step
        seen.append((step, etag))

    created = bs.create_volume(
        M.CreateVolumeDetails(compartment_id=tenancy, availability_domain=ad, size_in_gbs=50)
    )
    record("create", created.headers["etag"])
    got = bs.get_volume(created.data.id)
    assert got.data.lifecycle_state == "PROVISIONING"
    assert got.headers["etag"] == created.headers["etag"]  # nothing changed yet
    vol_id = created.data.id
    wait_volume(bs, vol_id)
    record("available", bs.get_volume(vol_id).headers["etag"])
    record(
        "update", bs.update_volume(vol_id, M.UpdateVolumeDetails(display_name="e")).headers["etag"]
    )
    record(
        "tags",
        bs.update_volume(vol_id, M.UpdateVolumeDetails(freeform_tags={"a": "b"})).headers["etag"],
    )
    record("grow", bs.update_volume(vol_id, M.UpdateVolumeDetails(size_in_gbs=51)).headers["etag"])
    record(
        "move",
        bs.change_volume_compartment(
            vol_id, M.ChangeVolumeCompartmentDetails(compartment_id=compartment)
        ).headers["etag"],
    )
    assert bs.get_volume(vol_id).headers["etag"] == seen[-1][1]
    group = bs.create_volume_group(
        M.CreateVolumeGroupDetails(
            compartment_id=compartment,
            availability_domain=ad,
            source_details=M.VolumeGroupSourceFromVolumesDetails(volume_ids=[vol_id]),
        )
    )
    record("joined group", bs.get_volume(vol_id).headers["etag"])
    group_etags = [group.headers["etag"]]
    wait_group(bs, group.data.id)
    group_etags.append(bs.get_volume_group(group.data.id).headers["etag"])
    bs.delete_volume_group(group.data.id)
    assert bs.get_volume_group(group.data.id).data.lifecycle_state == "TERMINATING"
    group_etags.append(bs.get_volume_group(group.data.id).headers["etag"])
    wait_group(bs, group.data.id, "TERMINATED")
    group_etags.append(bs.get_volume_group(group.data.id).headers["etag"])
    assert len(set(group_etags)) == 4, group_etags
    record("left group", bs.get_volume(vol_id).headers["etag"])

    bs.delete_volume(vol_id)
    assert bs.get_volume(vol_id).data.lifecycle_state == "TERMINATING"
    record("terminating", bs.get_volume(vol_id).headers["etag"])
    wait_volume(bs, vol_id, "TERMINATED")
    record("terminated", bs.get_volume(vol_id).headers["etag"])
    etags = [e for _, e in seen]
    assert len(set(etags)) == len(etags), seen


def test_if_match(bs: oci.core.BlockstorageClient, compartment: str, ad: str) -> None:
    vol = create_volume(bs, compartment, ad)
    etag = bs.get_volume(vol.id).headers["etag"]
    with service_error(412, "NoEtagMatch"):
        bs.update_volume(vol.id, M.UpdateVolumeDetails(display_name="x"), if_match="stale")
    with service_error(412, "NoEtagMatch"):
        bs.delete_volume(vol.id, if_match="stale")
    assert bs.get_volume(vol.id).data.display_name == vol.display_name
    updated = bs.update_volume(vol.id, M.UpdateVolumeDetails(display_name="x"), if_match=etag)
    assert updated.data.display_name == "x"
    # The old etag is stale now.
    with service_error(412, "NoEtagMatch"):
        bs.delete_volume(vol.id, if_match=etag)
    assert bs.get_volume(vol.id).data.lifecycle_state == "AVAILABLE"
    assert bs.delete_volume(vol.id, if_match=updated.headers["etag"]).status == 204

    (member,) = [create_volume(bs, compartment, ad).id]
    group = create_group(bs, compartment, ad, [member])
    group_etag = bs.get_volume_group(group.id).headers["etag"]
    with service_error(412, "NoEtagMatch"):
        bs.update_volume_group(
            group.id, M.UpdateVolumeGroupDetails(display_name="g"), if_match="stale"
        )
    with service_error(412, "NoEtagMatch"):
        bs.delete_volume_group(group.id, if_match="stale")
    assert bs.delete_volume_group(group.id, if_match=group_etag).status == 204


# --- retry tokens ---------------------------------------------------------------------------


def test_retry_token_same_body_same_volume(
    bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    details = M.CreateVolumeDetails(
        compartment_id=compartment, availability_domain=ad, size_in_gbs=50, display_name="rt"
    )
    first = bs.create_volume(details, opc_retry_token="token-one").data
    again = bs.create_volume(details, opc_retry_token="token-one").data
    assert again.id == first.id
    other = bs.create_volume(details, opc_retry_token="token-two").data
    assert other.id != first.id
    changed = M.CreateVolumeDetails(
        compartment_id=compartment, availability_domain=ad, size_in_gbs=60, display_name="rt"
    )
    with service_error(409, "Conflict", "token-one"):
        bs.create_volume(changed, opc_retry_token="token-one")
    assert len(bs.list_volumes(compartment_id=compartment).data) == 2
    # The repeat answers the current state of the volume, not a stale copy.
    wait_volume(bs, first.id)
    assert bs.create_volume(details, opc_retry_token="token-one").data.lifecycle_state == (
        "AVAILABLE"
    )


def test_retry_token_not_consumed_by_a_failed_request(
    bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    bad = M.CreateVolumeDetails(compartment_id=compartment, availability_domain=ad, size_in_gbs=49)
    with service_error(400, "InvalidParameter"):
        bs.create_volume(bad, opc_retry_token="token-after-failure")
    good = M.CreateVolumeDetails(compartment_id=compartment, availability_domain=ad, size_in_gbs=50)
    assert bs.create_volume(good, opc_retry_token="token-after-failure").status == 200
    with service_error(400, "InvalidParameter", "opc-retry-token"):
        bs.create_volume(good, opc_retry_token="x" * 65)


def test_retry_token_for_groups(bs: oci.core.BlockstorageClient, compartment: str, ad: str) -> None:
    a = create_volume(bs, compartment, ad).id
    details = M.CreateVolumeGroupDetails(
        compartment_id=compartment,
        availability_domain=ad,
        source_details=M.VolumeGroupSourceFromVolumesDetails(volume_ids=[a]),
    )
    first = bs.create_volume_group(details, opc_retry_token="group-token").data
    assert bs.create_volume_group(details, opc_retry_token="group-token").data.id == first.id
    details.display_name = "different"
    with service_error(409, "Conflict"):
        bs.create_volume_group(details, opc_retry_token="group-token")


def test_retry_token_survives_sdk_retries(server: Server, compartment: str, ad: str) -> None:
    """Under DEFAULT_RETRY_STRATEGY the SDK adds its own token; one call, one volume."""
    bs = server.blockstorage(retry_strategy=oci.retry.DEFAULT_RETRY_STRATEGY)
    resp = bs.create_volume(
        M.CreateVolumeDetails(compartment_id=compartment, availability_domain=ad, size_in_gbs=50)
    )
    assert resp.status == 200
    assert [v.id for v in bs.list_volumes(compartment_id=compartment).data] == [resp.data.id]


def test_concurrent_creates(server: Server, compartment: str, ad: str) -> None:
    client = per_thread(server.blockstorage)

    def create(token: str) -> str:
        details = M.CreateVolumeDetails(
            compartment_id=compartment, availability_domain=ad, size_in_gbs=50
        )
        return str(client().create_volume(details, opc_retry_token=token).data.id)

    with ThreadPoolExecutor(16) as pool:
        distinct = list(pool.map(create, [f"distinct-{i}" for i in range(50)]))
        duplicates = list(pool.map(create, ["the-same-token"] * 10))
    assert len(set(distinct)) == 50
    assert len(set(duplicates)) == 1
    listed = oci.pagination.list_call_get_all_results(
        server.blockstorage().list_volumes, compartment_id=compartment
    ).data
    assert sorted(v.id for v in listed) == sorted({*distinct, *duplicates})
    assert len(listed) == 51


# --- paging ---------------------------------------------------------------------------------


def test_paging(
    server: Server, raw: RawClient, bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    made = [
        create_volume(bs, compartment, ad, wait=False, display_name=f"p{i}").id for i in range(7)
    ]
    newest_first = made[::-1]

    everything = oci.pagination.list_call_get_all_results(
        bs.list_volumes, compartment_id=compartment, limit=2
    )
    assert [v.id for v in everything.data] == newest_first

    pages: list[list[str]] = []
    page: str | None = None
    while True:
        resp = bs.list_volumes(compartment_id=compartment, limit=2, page=page)
        pages.append([v.id for v in resp.data])
        if not resp.has_next_page:
            assert resp.next_page is None
            break
        assert resp.next_page
        page = resp.next_page
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [v for p in pages for v in p] == newest_first

    # Exactly a multiple of the page size: no trailing empty page, no empty header.
    last = raw.get(f"/volumes?compartmentId={compartment}&limit=7")
    assert len(last.json) == 7
    assert "opc-next-page" not in last.headers
    first = raw.get(f"/volumes?compartmentId={compartment}&limit=6")
    assert first.headers["opc-next-page"]
    rest = raw.get(
        f"/volumes?compartmentId={compartment}&limit=6&page={first.headers['opc-next-page']}"
    )
    assert [v["id"] for v in rest.json] == [made[0]]
    assert "opc-next-page" not in rest.headers

    by_name = oci.pagination.list_call_get_all_results(
        bs.list_volumes,
        compartment_id=compartment,
        limit=3,
        sort_by="DISPLAYNAME",
        sort_order="DESC",
    ).data
    assert [v.display_name for v in by_name] == [f"p{i}" for i in range(6, -1, -1)]

    # A token only works with the filters it was issued for.
    token = bs.list_volumes(compartment_id=compartment, limit=2).next_page
    with service_error(400, "InvalidParameter", "page"):
        bs.list_volumes(compartment_id=compartment, limit=2, page=token, sort_by="DISPLAYNAME")

    cli = server.cli(
        "bv", "volume", "list", "--compartment-id", compartment, "--all", "--page-size", "3"
    ).json
    assert [v["id"] for v in cli["data"]] == newest_first


@pytest.mark.parametrize(
    "limit", ["0", "101", "abc", "-1", "1.5", "", "+5", "%205", "%C2%B2", "%D9%A1", "1e1"]
)
def test_bad_limit(raw: RawClient, compartment: str, limit: str) -> None:
    resp = raw.get(f"/volumes?compartmentId={compartment}&limit={limit}")
    assert_error(resp, 400, "InvalidParameter", "limit")


def test_limit_bounds_accepted(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    assert bs.list_volumes(compartment_id=compartment, limit=1).status == 200
    assert bs.list_volumes(compartment_id=compartment, limit=100).status == 200
    with service_error(400, "InvalidParameter", "limit"):
        bs.list_volumes(compartment_id=compartment, limit=0)


@pytest.mark.parametrize(
    "page", ["garbage", "AAAA", "x" * 5000, "%00%01", "eyJhIjoxfQ", "bm90IGEgdG9rZW4gYXQgYWxs"]
)
def test_garbage_page_token(raw: RawClient, compartment: str, page: str) -> None:
    resp = raw.get(f"/volumes?compartmentId={compartment}&page={page}")
    assert_error(resp, 400, "InvalidParameter", "page")
    resp = raw.get(f"/volumeGroups?compartmentId={compartment}&page={page}")
    assert_error(resp, 400, "InvalidParameter", "page")


# --- request validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"compartmentId": ',
        b"not json",
        b"\xff\xfe{}",
        b'{"a": 1}{"b": 2}',
        b"[1, 2]",
        b'"x"',
        b"null",
        b'{"compartmentId": "x", "sourceDetails": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ],
    ids=["truncated", "text", "bad-utf8", "two-objects", "array", "string", "null", "deep"],
)
def test_malformed_json(raw: RawClient, body: bytes) -> None:
    assert_error(raw.post("/volumes", body), 400, "CannotParseRequest")


def test_malformed_json_on_update(
    raw: RawClient, bs: oci.core.BlockstorageClient, compartment: str, ad: str
) -> None:
    vol = create_volume(bs, compartment, ad, wait=False)
    assert_error(raw.put(f"/volumes/{vol.id}", b"{nope"), 400, "CannotParseRequest")
    assert_error(raw.post("/volumeGroups", b"{nope"), 400, "CannotParseRequest")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"sizeInGBs": "50"}, "sizeInGBs"),
        ({"sizeInGBs": 50.5}, "sizeInGBs"),
        ({"sizeInGBs": True}, "sizeInGBs"),
        ({"vpusPerGB": "10"}, "vpusPerGB"),
        ({"displayName": 7}, "displayName"),
        ({"displayName": ""}, "displayName"),
        ({"freeformTags": {"k": 1}}, "freeformTags"),
        ({"freeformTags": ["k"]}, "freeformTags"),
        ({"definedTags": {"ns": "flat"}}, "definedTags"),
        ({"sourceDetails": {"type": "snapshot", "id": "x"}}, "sourceDetails"),
        ({"sourceDetails": "volume"}, "sourceDetails"),
        ({"isAutoTuneEnabled": "yes"}, "isAutoTuneEnabled"),
        ({"autotunePolicies": [{"autotuneType": "FAST"}]}, "autotunePolicies"),
        ({"compartmentId": 12}, "compartmentId"),
    ],
)
def test_wrong_types(
    raw: RawClient, compartment: str, ad: str, extra: dict[str, Any], field: str
) -> None:
    resp = raw.post("/volumes", volume_body(compartment, ad, **extra))
    assert_error(resp, 400, "InvalidParameter", field)


def test_missing_required(raw: RawClient, compartment: str, ad: str) -> None:
    assert_error(
        raw.post("/volumes", {"availabilityDomain": ad}), 400, "MissingParameter", "compartmentId"
    )
    assert_error(raw.post("/volumes", b""), 400, "MissingParameter")
    assert_error(raw.get("/volumes"), 400, "MissingParameter", "compartmentId")
    assert_error(raw.get("/volumeGroups"), 400, "MissingParameter", "compartmentId")
    group = {"compartmentId": compartment, "availabilityDomain": ad}
    assert_error(raw.post("/volumeGroups", group), 400, "MissingParameter", "sourceDetails")
    # Fields the source type makes required.
    assert_error(
        raw.post("/volumeGroups", {**group, "sourceDetails": {"type": "volumeIds"}}),
        400,
        "MissingParameter",
        "sourceDetails.volumeIds",
    )
    assert_error(
        raw.post("/volumeGroups", {**group, "sourceDetails": {"type": "volumeGroupId"}}),
        400,
        "MissingParameter",
        "sourceDetails.volumeGroupId",
    )
    volume = {"compartmentId": compartment, "availabilityDomain": ad}
    for source_type in ("volume", "volumeBackup", "blockVolumeReplica"):
        assert_error(
            raw.post("/volumes", {**volume, "sourceDetails": {"type": source_type}}),
            400,
            "MissingParameter",
            "sourceDetails.id",
        )
    assert_error(
        raw.post(
            "/volumes",
            {**volume, "sourceDetails": {"type": "volumeBackupDelta", "firstBackupId": "x"}},
        ),
        400,
        "MissingParameter",
        "sourceDetails.secondBackupId",
    )
    assert_error(
        raw.post("/volumes", {**volume, "sourceDetails": {"id": "x"}}),
        400,
        "MissingParameter",
        "sourceDetails.type",
    )
    assert_error(
        raw.post("/volumes/x/actions/changeCompartment", {}),
        400,
        "MissingParameter",
        "compartmentId",
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("sortBy=FOO", "sortBy"),
        ("sortBy=timecreated", "sortBy"),
        ("sortOrder=UP", "sortOrder"),
        ("lifecycleState=RUNNING", "lifecycleState"),
        ("displayName=", "displayName"),
        ("limit=5&limit=6", "limit"),
    ],
)
def test_bad_query(raw: RawClient, compartment: str, query: str, field: str) -> None:
    resp = raw.get(f"/volumes?compartmentId={compartment}&{query}")
    assert_error(resp, 400, "InvalidParameter", field)
    if not query.startswith("lifecycleState"):
        resp = raw.get(f"/volumeGroups?compartmentId={compartment}&{query}")
        assert_error(resp, 400, "InvalidParameter", field)


def test_sdk_sees_field_errors(bs: oci.core.BlockstorageClient, compartment: str) -> None:
    with service_error(400, "InvalidParameter", "sortBy"):
        bs.base_client.call_api(
            resource_path="/volumes",
            method="GET",
            query_params={"compartmentId": compartment, "sortBy": "FOO"},
            header_params={"accept": "application/json", "content-type": "application/json"},
        )


def test_oversized_body(raw: RawClient, compartment: str, ad: str) -> None:
    big = volume_body(
        compartment, ad, displayName="big", freeformTags={f"k{i}": "v" * 200 for i in range(6000)}
    )
    body = json.dumps(big).encode()
    assert len(body) > 1024 * 1024
    assert_error(raw.post("/volumes", body), 413, "PayloadTooLarge")
    # Just under the limit is parsed (and judged on its content, not its size).
    small = json.dumps(volume_body(compartment, ad, displayName="n" * 1000)).encode()
    padded = small[:-1] + b" " * (1024 * 1024 - len(small)) + b"}"
    assert len(padded) == 1024 * 1024
    assert_error(raw.post("/volumes", padded), 400, "InvalidParameter", "displayName")


def test_oversized_chunked_body(server: Server) -> None:
    """Without a content-length nothing is read before authentication: an unsigned stream is
    refused with 401 (not 413) and the connection closed."""

    def chunks() -> Iterator[bytes]:
        for _ in range(2):
            yield b" " * 16384
        yield b"{}"

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/20160918/volumes",
            body=chunks(),
            encode_chunked=True,
            headers={"content-type": "application/json"},
        )
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert (resp.status, body["code"]) == (401, "NotAuthenticated")
    assert resp.getheader("opc-request-id")


def test_unknown_path_and_method(raw: RawClient) -> None:
    assert_error(raw.get("/nothingHere"), 404, "NotFound")
    assert_error(raw.get("/volumes/x/y/z"), 404, "NotFound")
    assert_error(raw.get("/", sign=False), 404, "NotFound")
    # No redirects to a "corrected" URL (they would carry no OCI body or request id).
    for path in ("/volumes/", f"/volumes/{UNKNOWN_VOLUME}/", "/20160918", "/volumeGroups/"):
        assert_error(raw.get(path), 404, "NotFound")
        assert_error(raw.get(path, sign=False), 404, "NotFound")
    assert_error(raw.request("PATCH", "/volumes", {}), 405, "MethodNotAllowed")
    assert_error(raw.delete("/volumes"), 405, "MethodNotAllowed")
    assert_error(raw.put("/volumeGroups", {}), 405, "MethodNotAllowed")
    assert_error(
        raw.get(f"/volumes/{UNKNOWN_VOLUME}/actions/changeCompartment"), 405, "MethodNotAllowed"
    )


def test_malformed_ids_are_not_found(raw: RawClient) -> None:
    for bad in ("not-an-ocid", "ocid1.volumegroup.oc1.phx.aaaaaaaaxxxxxxxx", "%20", "a" * 300):
        assert_error(raw.get(f"/volumes/{bad}"), 404, "NotAuthorizedOrNotFound")
        assert_error(raw.delete(f"/volumes/{bad}"), 404, "NotAuthorizedOrNotFound")


# --- path-like ids --------------------------------------------------------------------------


TRAVERSALS = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2E%2E/%2E%2E/victim",
    "..%2f..%2fvictim",
    "..%252f..%252fvictim",
    "..",
    "%2e%2e",
    "ocid1.volume.oc1.phx.aaaaaaaa%2F..%2F..%2Fvictim",
    "..%5C..%5Cvictim",
    "%00",
]


def test_path_like_ids(server: Server, raw: RawClient, compartment: str) -> None:
    outside = server.data_dir.parent / "victim.img"
    inside = server.data_dir / "victim.img"
    volumes_dir = server.data_dir / "volumes"
    volumes_dir.mkdir(exist_ok=True)
    for path in (outside, inside):
        path.write_bytes(b"do not touch")
    before = {p: p.stat() for p in (outside, inside)}
    listing = sorted(p.name for p in volumes_dir.iterdir())

    for bad in TRAVERSALS:
        for resp in (
            raw.get(f"/volumes/{bad}"),
            raw.put(f"/volumes/{bad}", {"sizeInGBs": 100}),
            raw.delete(f"/volumes/{bad}"),
            raw.post(f"/volumes/{bad}/actions/changeCompartment", {"compartmentId": compartment}),
            raw.get(f"/volumeGroups/{bad}"),
            raw.delete(f"/volumeGroups/{bad}"),
            raw.post(
                "/volumes",
                {"compartmentId": compartment, "sourceDetails": {"type": "volume", "id": bad}},
            ),
        ):
            assert resp.status in (400, 404), (bad, resp.status, resp.body)
            assert resp.headers.get("opc-request-id")
            if resp.status == 404:
                assert resp.code in ("NotFound", "NotAuthorizedOrNotFound"), resp.body
            else:
                assert resp.code in (
                    "RelatedResourceNotAuthorizedOrNotFound",
                    "InvalidParameter",
                ), resp.body

    for path, stat in before.items():
        assert path.read_bytes() == b"do not touch"
        now = path.stat()
        assert (now.st_size, now.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert sorted(p.name for p in volumes_dir.iterdir()) == listing
    assert not (server.data_dir.parent / "etc").exists()
    assert not any(p.stat().st_size >= 100 * GIB for p in server.data_dir.parent.rglob("*.img"))


def test_path_like_ids_through_the_sdk(bs: oci.core.BlockstorageClient) -> None:
    for bad in ("../../etc/passwd", "..%2F..%2Fvictim", ".."):
        with pytest.raises(oci.exceptions.ServiceError) as info:
            bs.get_volume(bad)
        assert info.value.status == 404
        with pytest.raises(oci.exceptions.ServiceError) as info:
            bs.delete_volume(bad)
        assert info.value.status in (404, 405)
