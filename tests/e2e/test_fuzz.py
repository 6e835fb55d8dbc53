"""Property-based fuzzing of every implemented operation through the wire, signed with the
SDK's own signer: generated paths, query parameters, headers and bodies (JSON close to the
real shapes, JSON of any shape, and bytes that are not JSON).

For every request: no 5xx, every body is strict JSON (RFC 8259) without ``null``, every error
is an OCI error (``code`` and ``message`` strings) and every answer has an
``opc-request-id``. After the run the server is still up and answers.

``make test`` runs a bounded number of examples (profile ``ci``); ``make fuzz`` sets
``OCIBV_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import oci
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contract import nulls, strict_loads
from tests.e2e.helpers import M, create_group, create_volume, wait_state
from tests.e2e.raw import RawClient
from tests.e2e.server import Server

settings.register_profile(
    "ocibv",
    max_examples=int(os.environ.get("OCIBV_FUZZ_EXAMPLES", "1200")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# (method, path template) of every implemented operation; {kind} is an id of that kind.
OPERATIONS = [
    ("POST", "/volumes"),
    ("GET", "/volumes"),
    ("GET", "/volumes/{volume}"),
    ("PUT", "/volumes/{volume}"),
    ("DELETE", "/volumes/{volume}"),
    ("POST", "/volumes/{volume}/actions/changeCompartment"),
    ("POST", "/volumeGroups"),
    ("GET", "/volumeGroups"),
    ("GET", "/volumeGroups/{group}"),
    ("PUT", "/volumeGroups/{group}"),
    ("DELETE", "/volumeGroups/{group}"),
    ("POST", "/volumeGroups/{group}/actions/changeCompartment"),
    ("POST", "/volumeBackups"),
    ("GET", "/volumeBackups"),
    ("GET", "/volumeBackups/{backup}"),
    ("PUT", "/volumeBackups/{backup}"),
    ("DELETE", "/volumeBackups/{backup}"),
    ("POST", "/volumeBackups/{backup}/actions/changeCompartment"),
    ("POST", "/volumeGroupBackups"),
    ("GET", "/volumeGroupBackups"),
    ("GET", "/volumeGroupBackups/{group_backup}"),
    ("PUT", "/volumeGroupBackups/{group_backup}"),
    ("DELETE", "/volumeGroupBackups/{group_backup}"),
    ("POST", "/volumeGroupBackups/{group_backup}/actions/changeCompartment"),
    ("GET", "/availabilityDomains"),
    ("GET", "/tenancies/{tenancy}"),
    ("POST", "/compartments"),
    ("GET", "/compartments"),
    ("GET", "/compartments/{compartment}"),
    ("PUT", "/compartments/{compartment}"),
    ("DELETE", "/compartments/{compartment}"),
]

FIELDS = [
    "compartmentId", "availabilityDomain", "displayName", "sizeInGBs", "sizeInMBs", "vpusPerGB",
    "sourceDetails", "volumeBackupId", "isAutoTuneEnabled", "autotunePolicies", "kmsKeyId",
    "freeformTags", "definedTags", "volumeIds", "volumeId", "volumeGroupId", "type",
    "retentionPeriod", "isPreventDeletionEnabled", "isRetentionLockEnabled",
    "isIndefiniteRetentionEnabled", "name", "description", "backupPolicyId",
    "clusterPlacementGroupId", "isReservationsEnabled", "blockVolumeReplicas",
]
QUERY = [
    "compartmentId", "availabilityDomain", "limit", "page", "displayName", "sortBy",
    "sortOrder", "volumeGroupId", "volumeId", "lifecycleState", "sourceVolumeBackupId",
    "clusterPlacementGroupId", "compartmentIdInSubtree", "accessLevel", "name",
    "preserveVolumeReplica",
]
HEADERS = ["if-match", "opc-retry-token", "opc-request-id"]
RAW_BODIES = [
    b"", b"{", b"null", b"[]", b'"x"', b"{}{}", b"\xff\xfe", b'{"sizeInGBs": NaN}',
    b'{"definedTags": {"a": {"b": Infinity}}}', b'{"freeformTags": {"k": "\\ud800"}}',
    b'{"sizeInGBs": 1e400}', b"[" * 5000, b'{"displayName": "' + b"x" * 5000 + b'"}',
]


@dataclass
class World:
    raw: RawClient
    ids: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = Server(tmp_path_factory.mktemp("fuzz") / "data").start()
    bs = server.blockstorage()
    tenancy = server.config()["tenancy"]
    identity = server.identity()
    comp = identity.create_compartment(oci.identity.models.CreateCompartmentDetails(
        compartment_id=tenancy, name=f"fuzz-{uuid.uuid4().hex[:6]}", description="fuzz",
    )).data.id
    ad = identity.list_availability_domains(tenancy).data[0].name
    volume = create_volume(bs, comp, ad)
    group = create_group(bs, comp, ad, [create_volume(bs, comp, ad).id])
    backup = bs.create_volume_backup(M.CreateVolumeBackupDetails(volume_id=volume.id)).data
    group_backup = bs.create_volume_group_backup(
        M.CreateVolumeGroupBackupDetails(volume_group_id=group.id)
    ).data
    wait_state(lambda: bs.get_volume_backup(backup.id).data, "AVAILABLE")
    wait_state(lambda: bs.get_volume_group_backup(group_backup.id).data, "AVAILABLE")
    ids = {
        "tenancy": tenancy, "compartment": comp, "volume": volume.id, "group": group.id,
        "backup": backup.id, "group_backup": group_backup.id, "ad": ad,
    }
    yield World(RawClient(server), ids)
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    server.stop()


def text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


@st.composite
def requests(draw: st.DrawFn, ids: dict[str, str]) -> tuple[str, str, Any, dict[str, str]]:
    method, template = draw(st.sampled_from(OPERATIONS))
    real = st.sampled_from(sorted(ids.values()))
    path = template
    for kind in ("volume", "group", "backup", "group_backup", "compartment", "tenancy"):
        if "{" + kind + "}" in path:
            value = draw(st.one_of(st.just(ids[kind]), real, text(300)))
            path = path.replace("{" + kind + "}", quote(value, safe=""))
    params = draw(st.lists(st.tuples(st.sampled_from(QUERY), st.one_of(real, text(300))),
                           max_size=5))
    if draw(st.booleans()):
        params.insert(0, ("compartmentId", ids["compartment"]))
    if params:
        path += "?" + urlencode(params)
    value = st.one_of(real, st.sampled_from(["FULL", "DAYS", "YEARS", "volume", "volumeIds"]))
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                     st.floats(allow_nan=False, allow_infinity=False), text(300), value)
    json_value = st.recursive(
        leaf,
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.dictionaries(st.one_of(st.sampled_from(FIELDS), text(20)),
                                                inner, max_size=4)),
        max_leaves=12,
    )
    body: Any = None
    if method in ("POST", "PUT"):
        body = draw(st.one_of(
            st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=6),
            json_value,
            st.sampled_from(RAW_BODIES),
        ))
    header_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=80)
    headers = draw(st.dictionaries(st.sampled_from(HEADERS), header_text, max_size=2))
    return method, path, body, headers


def test_every_operation_answers_oci_errors(world: World) -> None:
    @settings(settings.get_profile("ocibv"))
    @given(request=requests(world.ids))
    def check(request: tuple[str, str, Any, dict[str, str]]) -> None:
        method, path, body, headers = request
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        resp = world.raw.request(method, path, body, headers=headers)
        where = f"{method} {path[:200]} {str(body)[:200]} -> {resp.status}"
        assert resp.status < 500, f"{where}: {resp.body[:300]!r}"
        assert resp.headers.get("opc-request-id"), where
        if resp.body:
            value = strict_loads(resp.body)
            assert not nulls(value), (where, nulls(value))
        if resp.status >= 400:
            error = strict_loads(resp.body)
            assert isinstance(error.get("code"), str) and error["code"], where
            assert isinstance(error.get("message"), str) and error["message"], where

    check()
    # Still healthy: the same server answers a plain read.
    resp = world.raw.get(f"/volumes?compartmentId={world.ids['compartment']}")
    assert resp.status == 200 and isinstance(strict_loads(resp.body), list)
