"""Volume operations (spec §1.1)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from ocibv.api.call import Call
from ocibv.api.endpoint import (
    ApiContext,
    deleted_response,
    list_response,
    moved_response,
    resource_response,
)
from ocibv.api.models import (
    ChangeCompartmentDetails,
    CreateVolumeDetails,
    UpdateVolumeDetails,
    refuse_unbuilt,
)
from ocibv.domain.lifecycle import VOLUME_STATES
from ocibv.services.volumes import VolumeService


def routes(api: ApiContext, volumes: VolumeService) -> list[Route]:
    def create_volume(call: Call) -> Response:
        details, raw = call.model(CreateVolumeDetails)
        refuse_unbuilt(
            raw,
            "kmsKeyId",
            "xrcKmsKeyId",
            "clusterPlacementGroupId",
            "blockVolumeReplicas",
        )
        fields = details.fields()
        if "source_details" in fields and fields["source_details"] is not None:
            fields["source_details"] = details.source_details.model_dump(exclude_none=True)  # type: ignore[union-attr]
        return resource_response(call, volumes.create_volume(call.caller, fields, call.retry_token))

    def get_volume(call: Call) -> Response:
        return resource_response(call, volumes.get_volume(call.caller, call.path("volumeId")))

    def list_volumes(call: Call) -> Response:
        request = call.list_request(
            {
                "compartment_id": call.query("compartmentId", required=True, max_length=255),
                "availability_domain": call.query("availabilityDomain"),
                "display_name": call.query("displayName", max_length=255),
                "parent_id": call.query("volumeGroupId"),
            },
            states=VOLUME_STATES,
        )
        group = call.query("clusterPlacementGroupId", max_length=255)
        items, next_page = volumes.list_volumes(call.caller, request)
        if group is not None:  # no volume is in a cluster placement group
            return list_response(call, [], None)
        return list_response(call, items, next_page)

    def update_volume(call: Call) -> Response:
        details, raw = call.model(UpdateVolumeDetails)
        refuse_unbuilt(raw, "blockVolumeReplicas")
        res = volumes.update_volume(
            call.caller, call.path("volumeId"), details.fields(), call.if_match
        )
        return resource_response(call, res)

    def delete_volume(call: Call) -> Response:
        volumes.delete_volume(call.caller, call.path("volumeId"), call.if_match)
        return deleted_response(call)

    def change_volume_compartment(call: Call) -> Response:
        details, _ = call.model(ChangeCompartmentDetails)
        res = volumes.change_volume_compartment(
            call.caller, call.path("volumeId"), details.compartment_id
        )
        return moved_response(call, res)

    return [
        Route("/volumes", api.endpoint(create_volume), methods=["POST"]),
        Route("/volumes", api.endpoint(list_volumes), methods=["GET"]),
        Route("/volumes/{volumeId}", api.endpoint(get_volume), methods=["GET"]),
        Route("/volumes/{volumeId}", api.endpoint(update_volume), methods=["PUT"]),
        Route("/volumes/{volumeId}", api.endpoint(delete_volume), methods=["DELETE"]),
        Route(
            "/volumes/{volumeId}/actions/changeCompartment",
            api.endpoint(change_volume_compartment),
            methods=["POST"],
        ),
    ]
