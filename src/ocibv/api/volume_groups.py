"""Volume group operations (spec §1.2)."""

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
    CreateVolumeGroupDetails,
    UpdateVolumeGroupDetails,
    refuse_unbuilt,
)
from ocibv.domain.lifecycle import VOLUME_GROUP_STATES
from ocibv.services.volume_groups import VolumeGroupService


def routes(api: ApiContext, groups: VolumeGroupService) -> list[Route]:
    def create_volume_group(call: Call) -> Response:
        details, raw = call.model(CreateVolumeGroupDetails)
        refuse_unbuilt(
            raw, "volumeGroupReplicas", "clusterPlacementGroupId", "xrcKmsKeyId"
        )
        fields = details.fields()
        fields["source_details"] = details.source_details.model_dump(exclude_none=True)
        return resource_response(
            call, groups.create_volume_group(call.caller, fields, call.retry_token)
        )

    def get_volume_group(call: Call) -> Response:
        return resource_response(
            call, groups.get_volume_group(call.caller, call.path("volumeGroupId"))
        )

    def list_volume_groups(call: Call) -> Response:
        request = call.list_request(
            {
                "compartment_id": call.query("compartmentId", required=True, max_length=255),
                "availability_domain": call.query("availabilityDomain"),
                "display_name": call.query("displayName", max_length=255),
            },
            states=VOLUME_GROUP_STATES,
        )
        return list_response(call, *groups.list_volume_groups(call.caller, request))

    def update_volume_group(call: Call) -> Response:
        details, raw = call.model(UpdateVolumeGroupDetails)
        refuse_unbuilt(raw, "volumeGroupReplicas")
        call.query_bool("preserveVolumeReplica")
        res = groups.update_volume_group(
            call.caller, call.path("volumeGroupId"), details.fields(), call.if_match
        )
        return resource_response(call, res)

    def delete_volume_group(call: Call) -> Response:
        groups.delete_volume_group(call.caller, call.path("volumeGroupId"), call.if_match)
        return deleted_response(call)

    def change_volume_group_compartment(call: Call) -> Response:
        details, _ = call.model(ChangeCompartmentDetails)
        res = groups.change_volume_group_compartment(
            call.caller, call.path("volumeGroupId"), details.compartment_id
        )
        return moved_response(call, res)

    return [
        Route("/volumeGroups", api.endpoint(create_volume_group), methods=["POST"]),
        Route("/volumeGroups", api.endpoint(list_volume_groups), methods=["GET"]),
        Route(
            "/volumeGroups/{volumeGroupId}",
            api.endpoint(get_volume_group),
            methods=["GET"],
        ),
        Route("/volumeGroups/{volumeGroupId}", api.endpoint(update_volume_group), methods=["PUT"]),
        Route(
            "/volumeGroups/{volumeGroupId}", api.endpoint(delete_volume_group), methods=["DELETE"]
        ),
        Route(
            "/volumeGroups/{volumeGroupId}/actions/changeCompartment",
            api.endpoint(change_volume_group_compartment),
            methods=["POST"],
        ),
    ]
