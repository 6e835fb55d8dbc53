"""Rules shared by every resource family: visibility, compartments, etags, retry tokens,
the end of a deletion (tombstones) and page tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import sqlalchemy as sa

from ocibv.domain import limits
from ocibv.domain.errors import (
    Conflict,
    InvalidatedRetryToken,
    InvalidParameter,
    NoEtagMatch,
    NotAuthorizedOrNotFound,
    RelatedResourceNotAuthorizedOrNotFound,
)
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import ACTIVE, DELETED, TERMINATED, TERMINATING, sources_of
from ocibv.domain.ocid import is_ocid
from ocibv.services.context import Caller, ServiceContext
from ocibv.store import resources as repo
from ocibv.store import retry_tokens
from ocibv.store.database import now_us

MOVABLE_STATES = ("AVAILABLE", "FAULTY", "PROVISIONING", "RESTORING", "UPDATE_PENDING")

Details = TypeVar("Details", bound=Mapping[str, object])
SortKey = tuple[int | str, ...]


def get_visible(conn: sa.Connection, caller: Caller, kind: Kind, resource_id: str) -> repo.Resource:
    """The resource named in a request path, as the caller may see it; else 404."""
    if not is_ocid(resource_id, kind):
        raise NotAuthorizedOrNotFound(f"{kind.label} {resource_id!r} not found or not authorized.")
    res = repo.get(conn, resource_id, kind)
    if res is None or res.tenancy_id != caller.tenancy_id:
        raise NotAuthorizedOrNotFound(f"{kind.label} {resource_id} not found or not authorized.")
    return res


def get_related(
    conn: sa.Connection, caller: Caller, kind: Kind, resource_id: str, field: str
) -> repo.Resource:
    """A resource named in a request body; missing, foreign or terminated answers 400."""
    res = repo.get(conn, resource_id, kind) if is_ocid(resource_id, kind) else None
    if res is None or res.tenancy_id != caller.tenancy_id or res.lifecycle_state == TERMINATED:
        raise RelatedResourceNotAuthorizedOrNotFound(
            f"{field}: {kind.label} {resource_id} not found or not authorized."
        )
    return res


def require_compartment(conn: sa.Connection, caller: Caller, compartment_id: str) -> None:
    """``compartment_id`` must be the caller's tenancy or one of its ACTIVE compartments."""
    if compartment_id == caller.tenancy_id:
        return
    res = repo.get(conn, compartment_id, Kind.COMPARTMENT) if is_ocid(compartment_id) else None
    if res is None or res.tenancy_id != caller.tenancy_id or res.lifecycle_state != ACTIVE:
        raise NotAuthorizedOrNotFound(f"Compartment {compartment_id} not found or not authorized.")


def check_if_match(res: repo.Resource, if_match: str | None) -> None:
    if if_match is not None and if_match.strip('"') != res.etag:
        raise NoEtagMatch(
            f"The if-match etag {if_match} does not match the current etag of {res.id}; "
            "get the resource again and retry with its current etag."
        )


def finish_deletion(ctx: ServiceContext, conn: sa.Connection, res: repo.Resource) -> bool:
    """The last step of every delete: TERMINATED (DELETED for a compartment), kept readable as
    a tombstone for ``tombstone_seconds`` of the service clock, then purged."""
    target = DELETED if res.kind == Kind.COMPARTMENT else TERMINATED
    until = ctx.clock.now_us() + int(ctx.settings.tombstone_seconds * 1_000_000)
    return transition(conn, res, target, purge_after_us=until)


def body_hash(body: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def idempotent_create(
    conn: sa.Connection,
    caller: Caller,
    operation: str,
    token: str | None,
    request_hash: str,
    create: Callable[[], repo.Resource],
) -> tuple[repo.Resource, bool]:
    """Run ``create`` once per retry token: a repeat with the same body returns the resource
    created the first time (``(res, False)``); a different body is a 409 Conflict; a token
    whose resource was purged is a 409 InvalidatedRetryToken. Must run inside a write
    transaction so concurrent duplicates serialise."""
    if token is None:
        return create(), True
    cutoff = now_us() - limits.RETRY_TOKEN_TTL_SECONDS * 1_000_000
    seen = retry_tokens.find(conn, caller.tenancy_id, operation, token, cutoff)
    if seen is not None:
        if seen.body_hash != request_hash:
            raise Conflict(
                f"The opc-retry-token {token!r} was already used for a different "
                f"{operation} request; use a new token."
            )
        existing = repo.get(conn, seen.resource_id)
        if existing is None:
            raise InvalidatedRetryToken(
                f"The resource created with opc-retry-token {token!r} no longer exists; "
                "use a new token."
            )
        return existing, False
    res = create()
    retry_tokens.record(conn, caller.tenancy_id, operation, token, request_hash, res.id, now_us())
    return res, True


def create_once(
    ctx: ServiceContext,
    caller: Caller,
    operation: str,
    retry_token: str | None,
    details: Details,
    create: Callable[[sa.Connection, Caller, Details], repo.Resource],
) -> repo.Resource:
    """A create operation: one write transaction, honouring the retry token; wakes the job
    workers when something new was queued."""
    with ctx.db.write() as conn:
        digest = body_hash(details)
        res, created = idempotent_create(
            conn, caller, operation, retry_token, digest, lambda: create(conn, caller, details)
        )
    if created:
        ctx.wake_jobs()
    return res


def transition(conn: sa.Connection, res: repo.Resource, target: str, **changes: object) -> bool:
    """Move ``res`` to lifecycle state ``target`` with ``changes``, if the transition table
    (``domain.lifecycle``) allows it from the state the row holds now; a conditional UPDATE,
    so a concurrent writer that moved it first wins and nothing changes (returns False)."""
    values = cast(dict[str, Any], changes)
    return repo.update(
        conn, res, expected_states=sources_of(res.kind, target), lifecycle_state=target, **values
    )


def get_for_update(
    conn: sa.Connection, caller: Caller, kind: Kind, resource_id: str, if_match: str | None
) -> repo.Resource:
    """The resource an Update changes: visible, matching ``if-match``, not being deleted."""
    res = get_visible(conn, caller, kind, resource_id)
    check_if_match(res, if_match)
    if res.lifecycle_state in (TERMINATING, TERMINATED):
        raise Conflict(f"{kind.label} {resource_id} is {res.lifecycle_state}.")
    return res


def get_for_delete(
    conn: sa.Connection, caller: Caller, kind: Kind, resource_id: str, if_match: str | None
) -> repo.Resource | None:
    """The resource a Delete removes: visible and matching ``if-match``; None when it is
    already being deleted (a repeated delete changes nothing and answers 204)."""
    res = get_visible(conn, caller, kind, resource_id)
    check_if_match(res, if_match)
    return None if res.lifecycle_state in (TERMINATING, TERMINATED) else res


def get_one(ctx: ServiceContext, caller: Caller, kind: Kind, resource_id: str) -> repo.Resource:
    """A Get operation: the resource as the caller may see it, else 404."""
    with ctx.db.read() as conn:
        return get_visible(conn, caller, kind, resource_id)


def move_compartment(
    ctx: ServiceContext, caller: Caller, kind: Kind, resource_id: str, compartment_id: str
) -> repo.Resource:
    """ChangeCompartment: any live resource may move to another compartment of its tenancy."""
    with ctx.db.write() as conn:
        res = get_visible(conn, caller, kind, resource_id)
        require_compartment(conn, caller, compartment_id)
        if res.lifecycle_state not in MOVABLE_STATES:
            raise Conflict(
                f"{kind.label} {resource_id} is {res.lifecycle_state}; "
                "it cannot change compartment now."
            )
        repo.update(conn, res, compartment_id=compartment_id)
        return res


class PageTokens:
    """Opaque page tokens: the last row's sort key, bound to the query's filters by an HMAC."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, after: SortKey, scope: str) -> str:
        payload = json.dumps(list(after), separators=(",", ":")).encode()
        mac = hmac.new(self._secret, payload + scope.encode(), hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def decode(self, token: str, scope: str) -> SortKey:
        bad = InvalidParameter(
            "page: the page token is not valid for this request; pass the opc-next-page value "
            "of the previous response with the same filters."
        )
        if len(token) > limits.MAX_PAGE_TOKEN:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError as exc:
            raise bad from exc
        mac, payload = raw[:12], raw[12:]
        expected = hmac.new(self._secret, payload + scope.encode(), hashlib.sha256).digest()[:12]
        if not hmac.compare_digest(mac, expected):
            raise bad
        return tuple(json.loads(payload))
