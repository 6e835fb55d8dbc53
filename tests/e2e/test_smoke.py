"""The quick start, as a newcomer runs it: the installed ``oci`` program (a process of its own)
and the SDK against the server."""

from __future__ import annotations

import oci

from tests.e2e.server import Server


def test_cli_quick_start(server: Server, compartment: str, ad: str) -> None:
    ads = server.cli("iam", "availability-domain", "list", spawn=True).json["data"]
    assert ad in [a["name"] for a in ads]
    vol = server.cli(
        "bv", "volume", "create", "--compartment-id", compartment, "--availability-domain", ad,
        "--size-in-gbs", "50", "--wait-for-state", "AVAILABLE", "--wait-interval-seconds", "1",
        spawn=True,
    ).json["data"]
    assert vol["lifecycle-state"] == "AVAILABLE"
    assert vol["size-in-gbs"] == 50
    listed = server.cli(
        "bv", "volume", "list", "--compartment-id", compartment, "--all", spawn=True
    ).json
    assert [v["id"] for v in listed["data"]] == [vol["id"]]


def test_sdk_waiter(bs: oci.core.BlockstorageClient, compartment: str, ad: str) -> None:
    created = bs.create_volume(
        oci.core.models.CreateVolumeDetails(
            compartment_id=compartment, availability_domain=ad, size_in_gbs=50
        )
    ).data
    assert created.lifecycle_state == "PROVISIONING"
    done = oci.wait_until(bs, bs.get_volume(created.id), "lifecycle_state", "AVAILABLE").data
    assert done.is_hydrated is True
