"""The ASGI application: every route under ``/20160918``, OCI-shaped 404 and 405."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Router

from ocibv.api import (
    attachments,
    identity,
    not_built,
    volume_backup_policies,
    volume_backups,
    volume_group_backups,
    volume_groups,
    volumes,
)
from ocibv.api.auth import Authenticator
from ocibv.api.endpoint import ApiContext, request_id_for
from ocibv.api.wire import error_response
from ocibv.domain.errors import MethodNotAllowed, NotFound
from ocibv.services.container import Services

API_VERSION = "/20160918"


def _http_error(request: Request, exc: Exception) -> Response:
    request_id = request_id_for(request)
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return error_response(
            MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}."),
            request_id,
        )
    return error_response(NotFound(f"There is no operation at {request.url.path}."), request_id)


def create_app(services: Services) -> Starlette:
    auth = Authenticator(services.identity.public_key_for)
    api = ApiContext(auth)
    routes = [
        *identity.routes(api, services.identity, services.settings.region_key),
        *volumes.routes(api, services.volumes),
        *volume_groups.routes(api, services.volume_groups),
        *volume_backups.routes(api, services.volume_backups),
        *volume_group_backups.routes(api, services.volume_group_backups),
        *volume_backup_policies.routes(
            api, services.volume_backup_policies, services.volume_backup_policy_assignments
        ),
        *not_built.routes(api),
    ]
    # No trailing-slash redirects (Starlette's default): OCI answers an unknown path with a
    # 404 NotFound body and an opc-request-id, never with a bare 307 to another URL.
    own = attachments.routes(api, services.attachments)
    app = Starlette(
        routes=[
            Mount(API_VERSION, app=Router(routes, redirect_slashes=False)),
            Mount(attachments.PREFIX, app=Router(own, redirect_slashes=False)),
        ],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.router.redirect_slashes = False
    return app
