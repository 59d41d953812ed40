"""A collection's PMTiles archive as a file, readable by range: what PMTiles clients (pmtiles.js,
GDAL's /vsicurl/) fetch instead of single tiles. Only archives ``citytwin build`` wrote for a
catalog layer; a layer served from PostGIS has none.

GET /collections/{id}/tiles/WebMercatorQuad/archive.pmtiles
"""
from __future__ import annotations

import os
from collections.abc import Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from api.byte_ranges import Unsatisfiable, byte_range
from api.errors import error
from api.file_etags import etag_for, etag_matches
from api.tile_sources import TileRegistry, pmtiles_path
from geo.errors import LayerNameError

PMTILES_TYPE = "application/vnd.pmtiles"
CHUNK = 1 << 20  # bytes read per step: a whole-archive request streams, never sits in memory


def _chunks(fd: int, first: int, last: int) -> Iterator[bytes]:
    try:
        pos = first
        while pos <= last:
            data = os.pread(fd, min(CHUNK, last + 1 - pos), pos)
            if not data:
                break
            pos += len(data)
            yield data
    finally:
        os.close(fd)


class PMTilesArchive:
    def __init__(self, registry: TileRegistry):
        self.registry = registry

    def routes(self) -> list[Route]:
        return [Route("/collections/{collection}/tiles/WebMercatorQuad/archive.pmtiles", self.archive,
                      methods=["GET", "HEAD"])]

    async def archive(self, request: Request) -> Response:
        name = request.path_params["collection"]
        catalog = self.registry.catalog
        try:
            path = pmtiles_path(catalog, name)
        except LayerNameError:
            path = None
        if path is None or name not in catalog.layers:
            return error(404, "NotFound", f"collection {name[:80]!r} does not exist")
        if self.registry.store.kind == "postgis":
            return error(404, "NotFound", f"collection {name!r} is served from PostGIS: its tiles are made per "
                                          f"request and there is no archive; read its tiles instead")
        try:
            fd = await run_in_threadpool(os.open, path, os.O_RDONLY)
        except OSError:
            return error(404, "NotFound", f"collection {name!r} has no PMTiles archive yet; run 'citytwin build'")
        st = os.fstat(fd)
        etag = etag_for(st)
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
        if etag_matches(request.headers.get("if-none-match"), etag):
            os.close(fd)
            return Response(status_code=304, headers=headers)
        first, last, status = 0, st.st_size - 1, 200
        if_range = request.headers.get("if-range")
        if "range" in request.headers and (if_range is None or if_range.strip() == etag):
            try:
                span = byte_range(request.headers["range"], st.st_size)
            except Unsatisfiable as exc:
                os.close(fd)
                return error(416, "RangeNotSatisfiable", f"{name}.pmtiles: {exc}",
                             headers={"Content-Range": f"bytes */{st.st_size}"})
            if span is not None:
                (first, last), status = span, 206
                headers["Content-Range"] = f"bytes {first}-{last}/{st.st_size}"
        headers["Content-Length"] = str(last + 1 - first)
        if request.method == "HEAD":
            os.close(fd)
            return Response(status_code=status, headers=headers, media_type=PMTILES_TYPE)
        return StreamingResponse(_chunks(fd, first, last), status_code=status, headers=headers,
                                 media_type=PMTILES_TYPE)
