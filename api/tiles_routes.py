"""The fast tile path: MVT bytes with ETag, 304, gzip and the bounded warm cache, plus TileJSON.

Routes (mounted before pygeoapi, so they answer first):
- GET /collections/{id}/tiles/WebMercatorQuad/{z}/{y}/{x}[?f=mvt]  (OGC order:
  tileMatrix/tileRow/tileCol)
- GET /collections/{id}/tiles/WebMercatorQuad/tilejson.json and /tilejson/{id}.json

Status codes: 200 with the tile; 204 for an empty tile inside the layer's range (MapLibre
treats it as an empty tile); 304 when If-None-Match matches; 400 for a malformed address
or format; 404 for an unknown collection, a layer without tiles, or an address outside
the grid or the layer's zoom range; 503 with Retry-After while the database is down.
Errors are JSON ``{"code", "description"}``. GET /stats gives the tile cache's counters.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType

from isal import igzip
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.crs84_routes import Crs84Tiles
from api.errors import error, unavailable
from api.pmtiles_routes import PMTilesArchive
from api.providers.tiles import MVT_MIMETYPE, TILE_MATRIX_SET, TileRangeError, check_tile_address
from api.tile_cache import TileCache
from api.tile_matrix_sets import not_offered, tile_matrix_set_route, tile_matrix_sets_route
from api.tile_sources import TileRegistry
from geo.errors import CitytwinError, LayerNameError, StoreUnavailableError
from geo.names import check_layer_name
from pipelines.build import THREE_D_ONLY
from tiles.postgis_source import PostGISTileSource
from tiles.source import TileSetInfo, TileSource

_INT = re.compile(r"^[0-9]{1,9}$")
_FORMATS = (None, "", "mvt", "pbf")
CACHE_CONTROL = "public, max-age=300"
# Live tiles are compressed once per miss while the database works on the same cores: ISA-L's
# gzip at level 1 took 0.28 ms of CPU per tile of the 600k bench city against zlib level 1's
# 1.26 ms, for the same size (53% of the MVT); its output is plain gzip.
GZIP_LEVEL = 1
# A PostGIS tile made on the event loop is packed on a worker thread from this size, so a large
# tile does not hold the loop (~0.3 ms for 64 kB); smaller ones cost less than the hop.
GZIP_ON_LOOP_BYTES = 64_000

TileMaker = Callable[[TileRegistry, TileSource, TileSetInfo, int, int, int], bytes | None]


def accepts_gzip(header: str | None) -> bool:
    """True when Accept-Encoding allows gzip (a 'q=0' entry refuses it)."""
    for part in (header or "").split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            if not q.startswith("q="):
                return True
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False  # a malformed weight: play safe, send identity
    return False


@dataclass(frozen=True)
class _Found:
    layer: str
    seed: str  # the layer's etag seed: the cache drops a layer's tiles when it changes
    headers: dict[str, str]
    packed: bytes | None  # the cached gzip tile (b'' for an empty one), or None on a miss
    raw: bytes | None  # on a miss, the MVT made (None when empty)


class TileRoutes:
    """Starlette routes for tiles and TileJSON of the catalog's layers."""

    def __init__(self, registry: TileRegistry, public_url: str | None = None, cache: TileCache | None = None):
        self.registry = registry
        self.public_url = public_url.rstrip("/") if public_url else None
        self.cache = cache or TileCache(int(registry.catalog.server.tile_cache_mb * 1_000_000))

    def routes(self, pygeoapi: ModuleType) -> list[Route]:
        """Our tile routes, and guards in front of pygeoapi's tile metadata routes (which answer an
        unknown tile matrix set with a 500 and a collection without tiles with a 400)."""
        base = f"/collections/{{collection}}/tiles/{TILE_MATRIX_SET}"
        get = ["GET", "HEAD"]
        tileset = self._guarded(pygeoapi.get_collection_tiles_metadata)
        crs84 = Crs84Tiles(self)
        return [
            Route(f"{base}/tilejson.json", self.tilejson, methods=get),
            Route("/tilejson/{collection}.json", self.tilejson, methods=get),
            Route(f"{base}/{{z}}/{{y}}/{{x}}", self.tile, methods=get),
            *PMTilesArchive(self.registry).routes(),
            *crs84.routes(),
            Route("/collections/{collection}/tiles/{tms}/{z}/{y}/{x}", self._other_tms_tile, methods=get),
            Route("/collections/{collection_id}/tiles", self._guarded(crs84.listing(pygeoapi.get_collection_tiles)),
                  methods=get),
            Route("/collections/{collection_id}/tiles/{tileMatrixSetId}", tileset, methods=get),
            Route("/collections/{collection_id}/tiles/{tileMatrixSetId}/metadata", tileset, methods=get),
            Route("/TileMatrixSets", tile_matrix_sets_route(pygeoapi.get_tilematrix_sets), methods=get),
            Route("/TileMatrixSets/{tileMatrixSetId}", tile_matrix_set_route(pygeoapi.get_tilematrix_set), methods=get),
            Route("/tiles", self._no_dataset_tiles, methods=get),
            Route("/tiles/{rest:path}", self._no_dataset_tiles, methods=get),
            Route("/stats", self.stats, methods=get),
        ]

    def _guarded(self, pygeoapi_handler: Callable[[Request], Awaitable[Response]]):
        async def guarded(request: Request) -> Response:
            tms = request.path_params.get("tileMatrixSetId")
            if tms is not None and tms != TILE_MATRIX_SET:
                return not_offered(tms)
            src = await self._source(request.path_params["collection_id"])
            if isinstance(src, Response):
                return src
            return await pygeoapi_handler(request)

        return guarded

    async def _other_tms_tile(self, request: Request) -> Response:
        src = await self._source(request.path_params["collection"])
        return src if isinstance(src, Response) else not_offered(request.path_params["tms"])

    async def _no_dataset_tiles(self, request: Request) -> Response:
        return error(404, "NotFound", "this server has no dataset tiles; each collection has its own "
                                      "(its 'tilesets-vector' link in /collections)")

    # -- helpers ----------------------------------------------------------------
    async def _source(self, name: str) -> TileSource | JSONResponse:
        if (refused := self._unknown(name)) is not None:
            return refused
        src = self.registry.opened(name)
        if src is None:  # opening reads the store (or a file): on a thread
            try:
                src = await run_in_threadpool(self.registry.source, name)
            except StoreUnavailableError as exc:
                return unavailable(exc)
        return self._no_tiles(name) if src is None else src

    def _unknown(self, name: str) -> JSONResponse | None:
        """A 404 for a name that is not a collection of the catalog."""
        try:
            check_layer_name(name)
        except LayerNameError:
            name_ok = False
        else:
            name_ok = name in self.registry.catalog.layers
        if name_ok:
            return None
        known = ", ".join(sorted(self.registry.catalog.layers)) or "none"
        return error(404, "NotFound", f"collection {name!r} does not exist (known: {known})")

    def _no_tiles(self, name: str) -> JSONResponse:
        kind = self.registry.catalog.layers[name].kind
        if kind in THREE_D_ONLY or kind == "raster":
            return error(404, "NotFound", f"collection {name!r} ({kind}) has no vector tiles")
        return error(404, "NotFound", f"collection {name!r} has no tiles yet; run 'citytwin build' for it")

    def _base(self, request: Request) -> str:
        return self.public_url or str(request.base_url).rstrip("/")

    # -- endpoints --------------------------------------------------------------
    async def tilejson(self, request: Request) -> Response:
        from tiles.tilejson import tilejson

        name = request.path_params["collection"]
        src = await self._source(name)
        if isinstance(src, Response):
            return src
        try:
            info = await run_in_threadpool(src.info)
        except StoreUnavailableError as exc:
            return unavailable(exc)
        cfg = self.registry.catalog.layers[name]
        url = f"{self._base(request)}/collections/{name}/tiles/{TILE_MATRIX_SET}/{{z}}/{{y}}/{{x}}"
        doc = tilejson(info, url, name=cfg.title or name, description=cfg.description or "", attribution="")
        return JSONResponse(doc, headers={"Cache-Control": "public, max-age=60"})

    async def stats(self, request: Request) -> Response:
        """The warm tile cache's counters since start, and the id of the process that has them."""
        return JSONResponse({"pid": os.getpid(), "tile_cache": self.cache.stats()}, headers={"Cache-Control": "no-store"})

    async def tile(self, request: Request) -> Response:
        return await self.serve_tile(request, TILE_MATRIX_SET, check_tile_address, _web_mercator_tile, own_tiles=True)

    async def serve_tile(self, request: Request, grid: str, check: Callable[[TileSetInfo, int, int, int], None],
                         make: TileMaker, *, own_tiles: bool = False) -> Response:
        """One tile of ``grid``: ``check`` refuses an address outside it (TileRangeError), ``make`` gives
        its MVT bytes. ``own_tiles``: ``make`` is the source's own tile, so a PostGIS source's
        tile is read on the event loop (``postgis_tile``)."""
        p = request.path_params
        fmt = request.query_params.get("f")
        if fmt not in _FORMATS:
            return error(400, "InvalidParameterValue", f"format f={fmt!r} is not offered for tiles; use f=mvt")
        bad = [f"{label} must be a non-negative integer, got {p[k]!r}"
               for k, label in (("z", "tileMatrix"), ("y", "tileRow"), ("x", "tileCol")) if not _INT.match(p[k])]
        if bad:
            return error(400, "InvalidParameterValue", "; ".join(bad))
        z, y, x = int(p["z"]), int(p["y"]), int(p["x"])
        src = await self._source(p["collection"])
        if isinstance(src, Response):
            return src
        if own_tiles and isinstance(src, PostGISTileSource):
            return await self.postgis_tile(request.headers, src, z, x, y)
        # one hop to a worker thread per request: the source's reads, the tile and its gzip run there
        return await run_in_threadpool(self._answer, request.headers, src, grid, check, make, z, x, y)

    async def postgis_tile(self, headers: Headers, src: PostGISTileSource, z: int, x: int, y: int) -> Response:
        """A PostGIS tile read on the event loop from the store's async pool: no worker-thread hop
        per tile, no connection for a tile in the cache (benchmarks/notes.md). api.tile_front
        calls it for requests it recognises, the route for the others."""
        store = self.registry.store
        try:
            check_tile_address(src, z, x, y)
            access = await store.async_access()
            # the version as last heard from the database: a warm tile takes no connection
            version = await store.layer_versions().get(src.layer, lambda: access.run(src.version_on))
            seed = src.etag_seed(version)
            found = self._lookup(headers, src.layer, seed, TILE_MATRIX_SET, z, x, y)
            fresh = None
            if isinstance(found, _Found) and found.packed is None:
                raw = await access.run(lambda conn: src.tile_on(conn, z, x, y))
                found = _Found(src.layer, seed, found.headers, None, raw)
                small = raw is None or len(raw) < GZIP_ON_LOOP_BYTES
                fresh = _pack(raw) if small else await run_in_threadpool(_pack, raw)
        except (TileRangeError, CitytwinError) as exc:
            return _failure(exc)
        return found if isinstance(found, Response) else self._respond(headers, found, fresh)

    def _answer(self, headers: Headers, src: TileSource, grid: str, check: Callable[[TileSetInfo, int, int, int], None],
                make: TileMaker, z: int, x: int, y: int) -> Response:
        """The tile's response, made on a worker thread."""
        try:
            found = self._find(headers, src, grid, check, make, z, x, y)
        except (TileRangeError, CitytwinError) as exc:
            return _failure(exc)
        return found if isinstance(found, Response) else self._respond(headers, found)

    def _respond(self, headers: Headers, found: _Found, fresh: bytes | None = None) -> Response:
        """The tile's 200 (gzip when accepted) or 204; a tile just made is kept, packed here
        unless ``fresh`` holds it packed already."""
        out, packed = found.headers, found.packed
        if packed is None:
            packed = _pack(found.raw) if fresh is None else fresh
            self.cache.put(found.layer, found.seed, out["ETag"], packed)
        if not packed:
            return Response(status_code=204, headers=out)
        if accepts_gzip(headers.get("accept-encoding")):
            out["Content-Encoding"] = "gzip"
            return Response(packed, media_type=MVT_MIMETYPE, headers=out)
        return Response(gzip.decompress(packed), media_type=MVT_MIMETYPE, headers=out)

    def _find(self, headers: Headers, src: TileSource, grid: str, check: Callable[[TileSetInfo, int, int, int], None],
              make: TileMaker, z: int, x: int, y: int) -> Response | _Found:
        """A 304, or the tile from the cache or made."""
        info = src.info()
        check(info, z, x, y)
        found = self._lookup(headers, info.layer, info.etag_seed, grid, z, x, y)
        if isinstance(found, _Found) and found.packed is None:
            return _Found(info.layer, info.etag_seed, found.headers, None, make(self.registry, src, info, z, x, y))
        return found

    def _lookup(self, headers: Headers, layer: str, seed: str, grid: str, z: int, x: int, y: int) -> Response | _Found:
        """A 304, or the tile's headers and its cached bytes (``packed`` None on a miss, nothing made)."""
        key = f"{layer}|{seed}|{grid}|{z}/{x}/{y}"
        etag = '"' + hashlib.sha1(key.encode()).hexdigest()[:20] + '"'
        out = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
        inm = headers.get("if-none-match")
        if inm and (inm.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in inm.split(",")]):
            return Response(status_code=304, headers=out)
        return _Found(layer, seed, out, self.cache.get(layer, seed, etag), None)


def _failure(exc: TileRangeError | CitytwinError) -> Response:
    """404 for an address outside the grid or zooms, 503 (with Retry-After when the database is down)."""
    if isinstance(exc, TileRangeError):
        return error(404, "NotFound", str(exc))
    if isinstance(exc, StoreUnavailableError):
        return unavailable(exc)
    return error(503, "ServiceUnavailable", str(exc))


def _pack(raw: bytes | None) -> bytes:
    """A tile as the cache keeps it: gzip, or b'' for an empty one."""
    return igzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0) if raw else b""


def _web_mercator_tile(registry: TileRegistry, src: TileSource, info: TileSetInfo, z: int, x: int, y: int) -> bytes | None:
    return src.tile(z, x, y)
