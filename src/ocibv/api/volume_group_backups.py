"""Volume group backup operations (spec §1.3; copy is not built)."""

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
    CreateVolumeGroupBackupDetails,
    UpdateVolumeGroupBackupDetails,
)
from ocibv.services.volume_group_backups import VolumeGroupBackupService


def routes(api: ApiContext, backups: VolumeGroupBackupService) -> list[Route]:
    def create_volume_group_backup(call: Call) -> Response:
        details, _ = call.model(CreateVolumeGroupBackupDetails)
        res = backups.create_volume_group_backup(call.caller, details.fields(), call.retry_token)
        return resource_response(call, res)

    def get_volume_group_backup(call: Call) -> Response:
        return resource_response(
            call, backups.get_volume_group_backup(call.caller, call.path("volumeGroupBackupId"))
        )

    def list_volume_group_backups(call: Call) -> Response:
        request = call.list_request(
            {
                "compartment_id": call.query("compartmentId", required=True, max_length=255),
                "parent_id": call.query("volumeGroupId"),
                "display_name": call.query("displayName", max_length=255),
            }
        )
        return list_response(call, *backups.list_volume_group_backups(call.caller, request))

    def update_volume_group_backup(call: Call) -> Response:
        details, _ = call.model(UpdateVolumeGroupBackupDetails)
        res = backups.update_volume_group_backup(
            call.caller, call.path("volumeGroupBackupId"), details.fields(), call.if_match
        )
        return resource_response(call, res)

    def delete_volume_group_backup(call: Call) -> Response:
        backups.delete_volume_group_backup(
            call.caller, call.path("volumeGroupBackupId"), call.if_match
        )
        return deleted_response(call)

    def change_volume_group_backup_compartment(call: Call) -> Response:
        details, _ = call.model(ChangeCompartmentDetails)
        res = backups.change_volume_group_backup_compartment(
            call.caller, call.path("volumeGroupBackupId"), details.compartment_id
        )
        return moved_response(call, res)

    path = "/volumeGroupBackups/{volumeGroupBackupId}"
    return [
        Route("/volumeGroupBackups", api.endpoint(create_volume_group_backup), methods=["POST"]),
        Route(
            "/volumeGroupBackups",
            api.endpoint(list_volume_group_backups),
            methods=["GET"],
        ),
        Route(path, api.endpoint(get_volume_group_backup), methods=["GET"]),
        Route(path, api.endpoint(update_volume_group_backup), methods=["PUT"]),
        Route(path, api.endpoint(delete_volume_group_backup), methods=["DELETE"]),
        Route(
            f"{path}/actions/changeCompartment",
            api.endpoint(change_volume_group_backup_compartment),
            methods=["POST"],
        ),
    ]
