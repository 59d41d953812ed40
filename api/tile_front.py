"""PostGIS tiles answered in front of the app's middleware and router.

A warm tile is a dictionary look-up, but through the whole stack (six middlewares, a router
that tries its routes in order, Request and query parsing) it cost most of the request's time
(benchmarks/notes.md). Requests this front recognises exactly are answered by the route's own
code (TileRoutes.postgis_tile): GET or HEAD of /collections/{id}/tiles/WebMercatorQuad/{z}/{y}/{x},
no query string or f=mvt|pbf, a layer whose PostGIS source is open. Everything else goes on
unchanged, so errors keep the route's messages. It sits inside CORS, which still adds its headers.
"""
from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.providers.tiles import TILE_MATRIX_SET
from api.tiles_routes import TileRoutes
from tiles.postgis_source import PostGISTileSource

_PATH = re.compile(rf"/collections/([^/]+)/tiles/{TILE_MATRIX_SET}/([0-9]{{1,9}})/([0-9]{{1,9}})/([0-9]{{1,9}})")
_QUERIES = (b"", b"f=mvt", b"f=pbf")


class TileFront:
    """ASGI app: PostGIS tiles straight to TileRoutes, anything else to ``app``."""

    def __init__(self, app: ASGIApp, tiles: TileRoutes):
        self.app = app
        self.tiles = tiles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["query_string"] in _QUERIES
                and (m := _PATH.fullmatch(scope["path"]))
                and isinstance(src := self.tiles.registry.opened(m[1]), PostGISTileSource)):
            z, y, x = int(m[2]), int(m[3]), int(m[4])
            response = await self.tiles.postgis_tile(Headers(scope=scope), src, z, x, y)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
