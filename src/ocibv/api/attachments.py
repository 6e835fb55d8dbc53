"""ocibv's own operations beside the OCI API (under ``/ocibv``, signed like any OCI request):
attaching a volume as a network block device and detaching it. ``ocibv volume attach``
and ``detach`` call these on the running server."""

from __future__ import annotations

from pydantic import Field
from starlette.responses import Response
from starlette.routing import Route

from ocibv.api.call import Call
from ocibv.api.endpoint import ApiContext, deleted_response
from ocibv.api.models import Body
from ocibv.api.wire import json_response
from ocibv.services.attachments import AttachmentService

PREFIX = "/ocibv"


class AttachVolumeDetails(Body):
    """``{"isReadOnly": false}`` (OCI's name for it on a volume attachment)."""

    is_read_only: bool = Field(default=False)


def routes(api: ApiContext, attachments: AttachmentService) -> list[Route]:
    def attach_volume(call: Call) -> Response:
        details, _ = call.model(AttachVolumeDetails)
        attachment = attachments.attach_volume(
            call.caller, call.path("volumeId"), details.is_read_only
        )
        body = {
            "volumeId": attachment.volume_id,
            "exportName": attachment.export_name,
            "uri": attachment.uri,
            "isReadOnly": attachment.read_only,
        }
        return json_response(body, request_id=call.request_id)

    def detach_volume(call: Call) -> Response:
        attachments.detach_volume(call.caller, call.path("volumeId"))
        return deleted_response(call)

    return [
        Route("/volumes/{volumeId}/actions/attach", api.endpoint(attach_volume), methods=["POST"]),
        Route("/volumes/{volumeId}/actions/detach", api.endpoint(detach_volume), methods=["POST"]),
    ]
