"""List operations: filters, sorting (spec §7) and keyset pagination with opaque tokens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from ocibv.domain.kinds import Kind
from ocibv.services.common import PageTokens, require_compartment
from ocibv.services.context import Caller, ServiceContext
from ocibv.store import resources as repo


@dataclass(frozen=True)
class ListRequest:
    """Validated list parameters (the API layer checks types, enums and ranges)."""

    filters: Mapping[str, str | None]
    sort_by: str | None = None
    sort_order: str | None = None
    limit: int = 100
    page: str | None = None

    @property
    def compartment_id(self) -> str:
        """The compartment listed (every list names one; the API layer requires it)."""
        return str(self.filters["compartment_id"])


def list_resources(
    conn: sa.Connection,
    tokens: PageTokens,
    caller: Caller,
    kind: Kind,
    request: ListRequest,
    *,
    ad_scoped: bool = False,
) -> tuple[list[repo.Resource], str | None]:
    sort_by = request.sort_by or "TIMECREATED"
    default_order = "DESC" if sort_by == "TIMECREATED" else "ASC"
    descending = (request.sort_order or default_order) == "DESC"
    filters = {k: v for k, v in request.filters.items() if v is not None}
    group_by_ad = ad_scoped and "availability_domain" not in filters
    scope = repr((str(kind), sorted(filters.items()), sort_by, descending))
    after = tokens.decode(request.page, scope) if request.page else None
    query = repo.ListQuery(
        kind=kind,
        tenancy_id=caller.tenancy_id,
        filters=filters,
        sort_by=sort_by,
        descending=descending,
        group_by_ad=group_by_ad,
        limit=request.limit,
        after=after,
    )
    items, more = repo.list_page(conn, query)
    next_token = tokens.encode(repo.sort_key(items[-1], query), scope) if more and items else None
    return items, next_token


def list_in_compartment(
    ctx: ServiceContext,
    tokens: PageTokens,
    caller: Caller,
    kind: Kind,
    request: ListRequest,
    *,
    ad_scoped: bool = False,
) -> tuple[list[repo.Resource], str | None]:
    """A List operation over one compartment (``filters["compartment_id"]``), which must be
    the caller's; one page and the next page's token."""
    with ctx.db.read() as conn:
        require_compartment(conn, caller, request.compartment_id)
        return list_resources(conn, tokens, caller, kind, request, ad_scoped=ad_scoped)
