"""Volume backup operations (spec §1.4; copy is not built)."""

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
    CreateVolumeBackupDetails,
    UpdateVolumeBackupDetails,
    refuse_unbuilt,
)
from ocibv.domain.lifecycle import VOLUME_BACKUP_STATES
from ocibv.services.volume_backups import VolumeBackupService


def routes(api: ApiContext, backups: VolumeBackupService) -> list[Route]:
    def create_volume_backup(call: Call) -> Response:
        details, raw = call.model(CreateVolumeBackupDetails)
        refuse_unbuilt(raw, "kmsKeyId")
        res = backups.create_volume_backup(call.caller, details.fields(), call.retry_token)
        return resource_response(call, res)

    def get_volume_backup(call: Call) -> Response:
        return resource_response(
            call, backups.get_volume_backup(call.caller, call.path("volumeBackupId"))
        )

    def list_volume_backups(call: Call) -> Response:
        request = call.list_request(
            {
                "compartment_id": call.query("compartmentId", required=True, max_length=255),
                "parent_id": call.query("volumeId"),
                "display_name": call.query("displayName", max_length=255),
                "source_id": call.query("sourceVolumeBackupId", max_length=255),
            },
            states=VOLUME_BACKUP_STATES,
        )
        return list_response(call, *backups.list_volume_backups(call.caller, request))

    def update_volume_backup(call: Call) -> Response:
        details, raw = call.model(UpdateVolumeBackupDetails)
        refuse_unbuilt(raw, "kmsKeyId")
        res = backups.update_volume_backup(
            call.caller, call.path("volumeBackupId"), details.fields(), call.if_match
        )
        return resource_response(call, res)

    def delete_volume_backup(call: Call) -> Response:
        backups.delete_volume_backup(call.caller, call.path("volumeBackupId"), call.if_match)
        return deleted_response(call)

    def change_volume_backup_compartment(call: Call) -> Response:
        details, _ = call.model(ChangeCompartmentDetails)
        res = backups.change_volume_backup_compartment(
            call.caller, call.path("volumeBackupId"), details.compartment_id
        )
        return moved_response(call, res)

    path = "/volumeBackups/{volumeBackupId}"
    return [
        Route("/volumeBackups", api.endpoint(create_volume_backup), methods=["POST"]),
        Route("/volumeBackups", api.endpoint(list_volume_backups), methods=["GET"]),
        Route(path, api.endpoint(get_volume_backup), methods=["GET"]),
        Route(path, api.endpoint(update_volume_backup), methods=["PUT"]),
        Route(path, api.endpoint(delete_volume_backup), methods=["DELETE"]),
        Route(
            f"{path}/actions/changeCompartment",
            api.endpoint(change_volume_backup_compartment),
            methods=["POST"],
        ),
    ]
