"""Identity: tenancies, users, API keys, availability domains and compartments."""

from __future__ import annotations

from dataclasses import dataclass

from ocibv.domain.errors import Conflict, InvalidParameter, NotAuthorizedOrNotFound
from ocibv.domain.keys import fingerprint_of_public_key, generate_key_pair, load_public_key
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import ACTIVE, DELETED, DELETING, TERMINATED
from ocibv.domain.ocid import new_ocid
from ocibv.jobs.context import JobContext
from ocibv.jobs.registry import JobRegistry
from ocibv.services.backup_rules import tags_of
from ocibv.services.common import (
    PageTokens,
    check_if_match,
    finish_deletion,
    get_visible,
    require_compartment,
    transition,
)
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.listing import ListRequest, list_resources
from ocibv.services.requests import CreateCompartmentDetails, UpdateCompartmentDetails
from ocibv.store import identity as ids
from ocibv.store import jobs as job_rows
from ocibv.store import resources as repo


@dataclass(frozen=True)
class NewPrincipal:
    """A tenancy admin created by bootstrap or ``tenancy create``, with its private key."""

    tenancy_id: str
    tenancy_name: str
    user_id: str
    fingerprint: str
    private_key_pem: bytes


class IdentityService:
    def __init__(self, ctx: ServiceContext, tokens: PageTokens) -> None:
        self.ctx = ctx
        self.tokens = tokens

    def register_jobs(self, jobs: JobRegistry) -> None:
        jobs.register("delete_compartment", self.run_delete_compartment)

    # --- administration (ocibv command line, not the API) ---------------------------------

    def has_tenancy(self) -> bool:
        with self.ctx.db.read() as conn:
            return ids.count_tenancies(conn) > 0

    def create_tenancy(self, name: str) -> NewPrincipal:
        """A tenancy with an admin user and a fresh RSA key pair."""
        private_pem, public_pem = generate_key_pair()
        fingerprint = fingerprint_of_public_key(public_pem)
        tenancy_id = new_ocid("tenancy")
        user_id = new_ocid("user")
        with self.ctx.db.write() as conn:
            if ids.find_tenancy_by_name(conn, name) is not None:
                raise Conflict(f"A tenancy named {name!r} already exists.")
            ids.add_tenancy(conn, tenancy_id, name)
            ids.add_user(conn, user_id, tenancy_id, f"{name}-admin")
            ids.add_key(conn, user_id, tenancy_id, fingerprint, public_pem.decode())
        return NewPrincipal(tenancy_id, name, user_id, fingerprint, private_pem)

    def add_api_key(self, user_id: str, public_pem: bytes) -> str:
        """Register an existing public key for a user; returns its fingerprint."""
        try:
            load_public_key(public_pem)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from exc
        fingerprint = fingerprint_of_public_key(public_pem)
        with self.ctx.db.write() as conn:
            tenancy_id = ids.user_tenancy(conn, user_id)
            if tenancy_id is None:
                raise NotAuthorizedOrNotFound(f"User {user_id} not found.")
            if ids.find_key(conn, tenancy_id, user_id, fingerprint) is None:
                ids.add_key(conn, user_id, tenancy_id, fingerprint, public_pem.decode())
        return fingerprint

    def public_key_for(self, tenancy_id: str, user_id: str, fingerprint: str) -> str | None:
        with self.ctx.db.read() as conn:
            return ids.find_key(conn, tenancy_id, user_id, fingerprint)

    # --- API operations ---------------------------------------------------------------------

    def list_availability_domains(self, caller: Caller, compartment_id: str) -> list[str]:
        with self.ctx.db.read() as conn:
            require_compartment(conn, caller, compartment_id)
        return list(self.ctx.settings.availability_domains)

    def get_tenancy(self, caller: Caller, tenancy_id: str) -> ids.Tenancy:
        if tenancy_id != caller.tenancy_id:
            raise NotAuthorizedOrNotFound(f"Tenancy {tenancy_id} not found or not authorized.")
        with self.ctx.db.read() as conn:
            tenancy = ids.get_tenancy(conn, tenancy_id)
        if tenancy is None:
            raise NotAuthorizedOrNotFound(f"Tenancy {tenancy_id} not found or not authorized.")
        return tenancy

    def create_compartment(
        self, caller: Caller, details: CreateCompartmentDetails
    ) -> repo.Resource:
        parent = details["compartment_id"]
        with self.ctx.db.write() as conn:
            require_compartment(conn, caller, parent)
            siblings, _ = list_resources(
                conn,
                self.tokens,
                caller,
                Kind.COMPARTMENT,
                ListRequest({"compartment_id": parent, "display_name": details["name"]}, limit=1),
            )
            if any(s.lifecycle_state == ACTIVE for s in siblings):
                raise Conflict(
                    f"A compartment named {details['name']!r} already exists in {parent}."
                )
            res = repo.Resource(
                id=new_ocid(Kind.COMPARTMENT),
                kind=Kind.COMPARTMENT,
                tenancy_id=caller.tenancy_id,
                compartment_id=parent,
                display_name=details["name"],
                lifecycle_state=ACTIVE,
                created_us=self.ctx.clock.now_us(),
                attrs={
                    "description": details["description"],
                    "freeform_tags": {},
                    "defined_tags": {},
                    **tags_of(details),
                },
            )
            return repo.insert(conn, res)

    def get_compartment(self, caller: Caller, compartment_id: str) -> repo.Resource:
        with self.ctx.db.read() as conn:
            return get_visible(conn, caller, Kind.COMPARTMENT, compartment_id)

    def list_compartments(
        self, caller: Caller, request: ListRequest, *, subtree: bool = False
    ) -> tuple[list[repo.Resource], str | None]:
        """Direct children of a compartment; with ``subtree`` from the tenancy, all of them."""
        parent = request.compartment_id
        with self.ctx.db.read() as conn:
            require_compartment(conn, caller, parent)
            if subtree and parent == caller.tenancy_id:
                filters = {k: v for k, v in request.filters.items() if k != "compartment_id"}
                request = ListRequest(
                    filters, request.sort_by, request.sort_order, request.limit, request.page
                )
            return list_resources(conn, self.tokens, caller, Kind.COMPARTMENT, request)

    def update_compartment(
        self,
        caller: Caller,
        compartment_id: str,
        details: UpdateCompartmentDetails,
        if_match: str | None,
    ) -> repo.Resource:
        with self.ctx.db.write() as conn:
            res = get_visible(conn, caller, Kind.COMPARTMENT, compartment_id)
            check_if_match(res, if_match)
            if res.lifecycle_state != ACTIVE:
                raise Conflict(f"Compartment {compartment_id} is {res.lifecycle_state}.")
            attrs = dict(res.attrs, **tags_of(details))
            description = details.get("description")
            if description is not None:
                attrs["description"] = description
            name = details.get("name") or res.display_name
            repo.update(conn, res, display_name=name, attrs=attrs)
            return res

    def delete_compartment(self, caller: Caller, compartment_id: str, if_match: str | None) -> None:
        with self.ctx.db.write() as conn:
            res = get_visible(conn, caller, Kind.COMPARTMENT, compartment_id)
            check_if_match(res, if_match)
            if res.lifecycle_state in (DELETING, DELETED):
                return
            live = repo.first_alive_in(
                conn, caller.tenancy_id, compartment_id, (DELETED, TERMINATED)
            )
            if live is not None:
                raise Conflict(
                    f"Compartment {compartment_id} is not empty: it still holds {live.id}."
                )
            transition(conn, res, DELETING)
            job_rows.enqueue(conn, "delete_compartment", res.id)
        self.ctx.wake_jobs()

    def run_delete_compartment(self, job: JobContext) -> None:
        with self.ctx.db.write() as conn:
            res = repo.get(conn, job.job.resource_id, Kind.COMPARTMENT)
            if res is not None:
                finish_deletion(self.ctx, conn, res)
