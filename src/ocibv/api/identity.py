"""The Identity subset the tools need: availability domains, tenancy, compartments."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from ocibv.api import render
from ocibv.api.call import Call
from ocibv.api.endpoint import ApiContext, deleted_response, list_response, resource_response
from ocibv.api.models import CreateCompartmentDetails, UpdateCompartmentDetails
from ocibv.api.wire import json_response
from ocibv.domain.lifecycle import COMPARTMENT_STATES
from ocibv.services.identity import IdentityService


def routes(api: ApiContext, identity: IdentityService, region_key: str) -> list[Route]:
    def list_availability_domains(call: Call) -> Response:
        compartment_id = call.query("compartmentId", required=True, max_length=255)
        assert compartment_id is not None
        names = identity.list_availability_domains(call.caller, compartment_id)
        body = [
            {
                "name": name,
                "id": f"ocid1.availabilitydomain.oc1..ad{n + 1}",
                "compartmentId": call.caller.tenancy_id,
            }
            for n, name in enumerate(names)
        ]
        return json_response(body, request_id=call.request_id)

    def get_tenancy(call: Call) -> Response:
        tenancy = identity.get_tenancy(call.caller, call.path("tenancyId"))
        return json_response(render.tenancy(tenancy, region_key), request_id=call.request_id)

    def create_compartment(call: Call) -> Response:
        details, _ = call.model(CreateCompartmentDetails)
        return resource_response(call, identity.create_compartment(call.caller, details.fields()))

    def get_compartment(call: Call) -> Response:
        return resource_response(
            call, identity.get_compartment(call.caller, call.path("compartmentId"))
        )

    def list_compartments(call: Call) -> Response:
        parent = call.query("compartmentId", required=True, max_length=255)
        subtree = call.query_bool("compartmentIdInSubtree")
        call.query_enum("accessLevel", ("ANY", "ACCESSIBLE"))
        filters = {"compartment_id": parent, "display_name": call.query("name")}
        request = call.list_request(
            filters, states=COMPARTMENT_STATES, sort_fields=("TIMECREATED", "NAME")
        )
        return list_response(
            call, *identity.list_compartments(call.caller, request, subtree=bool(subtree))
        )

    def update_compartment(call: Call) -> Response:
        details, _ = call.model(UpdateCompartmentDetails)
        res = identity.update_compartment(
            call.caller, call.path("compartmentId"), details.fields(), call.if_match
        )
        return resource_response(call, res)

    def delete_compartment(call: Call) -> Response:
        identity.delete_compartment(call.caller, call.path("compartmentId"), call.if_match)
        return deleted_response(call)

    return [
        Route(
            "/availabilityDomains",
            api.endpoint(list_availability_domains),
            methods=["GET"],
        ),
        Route("/tenancies/{tenancyId}", api.endpoint(get_tenancy), methods=["GET"]),
        Route("/compartments", api.endpoint(create_compartment), methods=["POST"]),
        Route("/compartments", api.endpoint(list_compartments), methods=["GET"]),
        Route(
            "/compartments/{compartmentId}",
            api.endpoint(get_compartment),
            methods=["GET"],
        ),
        Route("/compartments/{compartmentId}", api.endpoint(update_compartment), methods=["PUT"]),
        Route(
            "/compartments/{compartmentId}", api.endpoint(delete_compartment), methods=["DELETE"]
        ),
    ]
