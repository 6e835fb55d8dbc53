"""List operations: filters, sort orders, keyset paging with tokens bound to their query, and
availability-domain grouping."""

from __future__ import annotations

from typing import Any

import pytest

from ocibv.domain.errors import InvalidParameter, NotAuthorizedOrNotFound
from ocibv.services.listing import ListRequest
from tests.services.conftest import AD1, AD2, Cloud


def all_pages(cloud: Cloud, limit: int, **params: Any) -> tuple[list[str], int]:
    """Every volume id over every page, and how many pages it took."""
    filters = {"compartment_id": cloud.compartment, **params.pop("filters", {})}
    out: list[str] = []
    page: str | None = None
    pages = 0
    while True:
        items, page = cloud.services.volumes.list_volumes(
            cloud.caller, ListRequest(filters, limit=limit, page=page, **params)
        )
        pages += 1
        assert len(items) <= limit
        out += [v.id for v in items]
        if page is None:
            return out, pages


def test_pages_newest_first_without_loss_or_repeats(cloud: Cloud) -> None:
    made = [cloud.create_volume(display_name=f"p{i}").id for i in range(7)]
    assert all_pages(cloud, 2) == (made[::-1], 4)
    assert all_pages(cloud, 7) == (made[::-1], 1)  # no trailing empty page
    assert all_pages(cloud, 6) == (made[::-1], 2)
    assert all_pages(cloud, 3, sort_by="DISPLAYNAME", sort_order="DESC")[0] == made[::-1]
    assert all_pages(cloud, 3, sort_by="TIMECREATED", sort_order="ASC")[0] == made


def test_a_page_token_only_serves_its_query(cloud: Cloud) -> None:
    for _ in range(3):
        cloud.create_volume()
    _, token = cloud.services.volumes.list_volumes(
        cloud.caller, ListRequest({"compartment_id": cloud.compartment}, limit=2)
    )
    assert token
    tampered = token[:5] + ("B" if token[5] != "B" else "C") + token[6:]  # inside the MAC
    for changed in (
        ListRequest({"compartment_id": cloud.compartment}, sort_by="DISPLAYNAME", limit=2,
                    page=token),
        ListRequest({"compartment_id": cloud.compartment, "display_name": "x"}, limit=2,
                    page=token),
        ListRequest({"compartment_id": cloud.compartment}, limit=2, page=tampered),
        ListRequest({"compartment_id": cloud.compartment}, limit=2, page="not a token"),
    ):
        with pytest.raises(InvalidParameter, match="page"):
            cloud.services.volumes.list_volumes(cloud.caller, changed)
    # nor another compartment's
    other = cloud.new_compartment()
    with pytest.raises(InvalidParameter, match="page"):
        cloud.services.volumes.list_volumes(
            cloud.caller, ListRequest({"compartment_id": other}, limit=2, page=token)
        )


def test_sorting_is_case_sensitive_with_stated_defaults(cloud: Cloud) -> None:
    b, c, a, upper = (cloud.create_volume(display_name=n).id for n in ("b", "c", "a", "Z"))
    created = [b, c, a, upper]
    assert all_pages(cloud, 100)[0] == created[::-1]  # TIMECREATED DESC
    assert all_pages(cloud, 100, sort_by="DISPLAYNAME")[0] == [upper, a, b, c]  # ASC
    assert all_pages(cloud, 100, sort_order="ASC")[0] == created


def test_grouped_by_availability_domain_and_ties_paged(cloud: Cloud) -> None:
    made = [cloud.create_volume(availability_domain=ad, display_name="same")
            for ad in (AD1, AD2, AD1, AD2, AD1)]
    by_id = {v.id: v.availability_domain for v in made}
    for sort_by in ("TIMECREATED", "DISPLAYNAME"):
        for sort_order in ("ASC", "DESC"):
            paged, _ = all_pages(cloud, 2, sort_by=sort_by, sort_order=sort_order)
            assert sorted(paged) == sorted(by_id)
            ads = [by_id[v] for v in paged]
            assert ads in ([AD1] * 3 + [AD2] * 2, [AD2] * 2 + [AD1] * 3), ads
            assert paged == all_pages(cloud, 100, sort_by=sort_by, sort_order=sort_order)[0]
    per_ad, _ = all_pages(cloud, 2, filters={"availability_domain": AD1}, sort_order="ASC")
    assert per_ad == [made[0].id, made[2].id, made[4].id]


def test_filters(cloud: Cloud) -> None:
    a = cloud.volume(display_name="alpha")
    b = cloud.volume(display_name="alpha-2")
    c = cloud.volume(display_name="gamma", availability_domain=AD2)
    group = cloud.group([b])
    gone = cloud.volume()
    cloud.services.volumes.delete_volume(cloud.caller, gone, None)
    cloud.settle()
    assert set(cloud.list_volumes()) == {a, b, c, gone}  # tombstones are listed
    assert cloud.list_volumes(display_name="alpha") == [a]  # exact, not a prefix
    assert cloud.list_volumes(display_name="alph") == []
    assert cloud.list_volumes(availability_domain=AD2) == [c]
    assert cloud.list_volumes(parent_id=group) == [b]
    assert set(cloud.list_volumes(lifecycle_state="AVAILABLE")) == {a, b, c}
    assert cloud.list_volumes(lifecycle_state="TERMINATED") == [gone]
    with pytest.raises(NotAuthorizedOrNotFound):
        cloud.list_volumes(compartment_id="ocid1.compartment.oc1..aaaaaaaanosuch")
