"""WorldCRS84Quad vector tiles of every tiled collection (tiles/crs84_tiles.py), made from the store:
the tile set GDAL's OGCAPI driver opens. The tile set is listed next to pygeoapi's WebMercatorQuad one."""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.providers.tiles import MVT_MIMETYPE, TileRangeError
from api.tile_sources import TileRegistry
from tiles.crs84_tiles import (WORLD_CRS84_QUAD, WORLD_CRS84_QUAD_URI, crs84_levels, crs84_limits, encode,
                               TileTooFull, in_grid, read_bounds)
from tiles.source import TileSetInfo, TileSource
from tiles.tileset_metadata import CRS84, Grid, tileset_metadata

if TYPE_CHECKING:
    from api.tiles_routes import TileRoutes

Handler = Callable[[Request], Awaitable[Response]]


def _check(info: TileSetInfo, level: int, col: int, row: int) -> None:
    levels = crs84_levels(info.minzoom, info.maxzoom)
    if level not in levels:
        raise TileRangeError(f"level {level} is outside the {WORLD_CRS84_QUAD} levels {levels.start}-{levels.stop - 1} "
                             f"of layer '{info.layer}'")
    if not in_grid(level, row, col):
        raise TileRangeError(f"tile column {col} / row {row} is outside the {2 << level}x{1 << level} grid "
                             f"of level {level}")


def _make(registry: TileRegistry, src: TileSource, info: TileSetInfo, level: int, col: int, row: int) -> bytes:
    gdf = registry.store.read(info.layer, bbox=read_bounds(level, row, col))
    name = info.vector_layers[0]["id"] if info.vector_layers else info.layer
    try:
        return encode(name, gdf, level, row, col)
    except TileTooFull as exc:
        raise TileRangeError(str(exc)) from None


def grid(info: TileSetInfo) -> Grid:
    return Grid(WORLD_CRS84_QUAD, WORLD_CRS84_QUAD_URI, CRS84,
                crs84_limits(info.bounds, crs84_levels(info.minzoom, info.maxzoom)))


class Crs84Tiles:
    def __init__(self, tiles: TileRoutes):
        self.tiles = tiles

    def routes(self) -> list[Route]:
        base = f"/collections/{{collection}}/tiles/{WORLD_CRS84_QUAD}"
        get = ["GET", "HEAD"]
        return [Route(f"{base}/{{z}}/{{y}}/{{x}}", self.tile, methods=get),
                Route(base, self.metadata, methods=get),
                Route(f"{base}/metadata", self.metadata, methods=get)]

    async def tile(self, request: Request) -> Response:
        return await self.tiles.serve_tile(request, WORLD_CRS84_QUAD, _check, _make)

    async def metadata(self, request: Request) -> Response:
        name = request.path_params["collection"]
        src = await self.tiles._source(name)
        if isinstance(src, Response):
            return src
        info = await run_in_threadpool(src.info)
        cfg = self.tiles.registry.catalog.layers[name]
        base = self.tiles._base(request)
        here = f"{base}/collections/{name}/tiles"
        doc = tileset_metadata(info, grid(info), cfg.title or name, cfg.description or "",
                               tiles_url=f"{here}/{WORLD_CRS84_QUAD}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}?f=mvt",
                               tms_url=f"{base}/TileMatrixSets/{WORLD_CRS84_QUAD}",
                               tilejson_url=f"{here}/WebMercatorQuad/tilejson.json", mvt_type=MVT_MIMETYPE)
        return JSONResponse(doc, headers={"Cache-Control": "public, max-age=60"})

    def listing(self, pygeoapi_tiles: Handler) -> Handler:
        """pygeoapi's list of a collection's tile sets, with the WorldCRS84Quad one added."""

        async def tilesets(request: Request) -> Response:
            resp = await pygeoapi_tiles(request)
            if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith("application/json"):
                return resp
            doc = json.loads(resp.body)
            href = f"{self.tiles._base(request)}/collections/{request.path_params['collection_id']}/tiles/{WORLD_CRS84_QUAD}"
            doc.setdefault("tilesets", []).append({
                "title": f"{request.path_params['collection_id']} ({WORLD_CRS84_QUAD})", "dataType": "vector",
                "crs": CRS84, "tileMatrixSetURI": WORLD_CRS84_QUAD_URI,
                "links": [{"rel": "self", "type": "application/json", "href": href,
                           "title": f"{WORLD_CRS84_QUAD} tile set"},
                          {"rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme", "type": "application/json",
                           "href": f"{self.tiles._base(request)}/TileMatrixSets/{WORLD_CRS84_QUAD}"}]})
            return JSONResponse(doc)

        return tilesets
