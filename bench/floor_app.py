"""The floor for bench/api.py: a bare uvicorn + starlette app that answers GetVolume and
ListVolumes with the JSON ocibv answers, unsigned and without a database. ocibv cannot be faster
than this on the same machine; the benchmark reports ocibv as a fraction of it.

    python bench/floor_app.py --port 18080 --volume-json volume.json
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_app(volume: dict[str, Any], list_size: int = 100) -> Starlette:
    """GET /20160918/volumes/{volumeId} and GET /20160918/volumes, serialised per request like
    ocibv does (same JSON encoder settings, same opc-request-id and etag headers)."""
    items = [dict(volume, id=f"{volume['id'][:-4]}{n:04d}") for n in range(list_size)]

    def respond(body: Any, headers: dict[str, str]) -> Response:
        return Response(
            json.dumps(body, separators=(",", ":")).encode(),
            media_type="application/json",
            headers={"opc-request-id": uuid.uuid4().hex.upper(), **headers},
        )

    async def get_volume(request: Request) -> Response:
        body = dict(volume, id=request.path_params["volumeId"])
        return respond(body, {"etag": uuid.uuid4().hex})

    async def list_volumes(request: Request) -> Response:
        return respond(items, {"opc-next-page": "floor-next-page"})

    return Starlette(
        routes=[
            Route("/20160918/volumes/{volumeId}", get_volume, methods=["GET"]),
            Route("/20160918/volumes", list_volumes, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--volume-json", required=True, help="one volume as ocibv renders it")
    args = parser.parse_args()
    with open(args.volume_json) as f:
        volume = json.load(f)
    # The same server settings as `ocibv serve`.
    uvicorn.run(
        create_app(volume), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
