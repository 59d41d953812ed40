"""3D Tiles over HTTP, and the OGC API - 3D GeoVolumes view of the layers that have them.

Routes (mounted before pygeoapi, so they answer first):
- GET /collections/{id}/3dtiles/tileset.json and /collections/{id}/3dtiles/{path}: the
  files of ``<build>/3dtiles/<id>/`` that ``citytwin build`` writes for a buildings layer
  (tileset JSON, content/*.glb, *.b3dm; with implicit tiling content/{level}/{x}/{y}.glb and
  subtrees/{level}/{x}/{y}.subtree). Only regular files inside that folder, with a
  3D Tiles suffix, are served; ETag from size, mtime and inode; 304 on If-None-Match;
  JSON gzipped when the client accepts it.
- GET /collections and /collections/{id}: pygeoapi's answer; in JSON, a collection with
  a tileset gets the GeoVolumes 3D Tiles link and a 3D bounding box (CRS84h) taken from
  the tileset's root region. Layers that exist only as 3D Tiles (kinds city_model and
  landmark_models: no features, so pygeoapi does not know them) are described here and
  added to the JSON list once built.
- /conformance (JSON): the GeoVolumes Core and 3D Tiles classes when some layer has one.

The GeoVolumes draft (opengeospatial/ogcapi-3d-geovolumes, 2024) names the link relation
``[ogc-rel:3d-geovolumes]``; it spells the media type both ``application/3dtiles+json``
(3D Tiles requirements class, media-type table) and ``application/json+3dtiles`` (core
clause). We use the former, which two of the three places agree on.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

from pyproj import Transformer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from api.byte_ranges import Unsatisfiable, byte_range
from api.errors import error
from api.file_etags import etag_for, etag_matches
from api.html_pages import collection_html, wants_html
from api.tiles_routes import accepts_gzip
from geo.errors import LayerNameError
from geo.names import check_layer_name
from pipelines.build import THREE_D_ONLY, TILES3D_DIR
from pipelines.catalog import Catalog

Handler = Callable[[Request], Awaitable[Response]]

GEOVOLUMES_REL = "http://www.opengis.net/def/rel/ogc/1.0/3d-geovolumes"
TILESET_MEDIA_TYPE = "application/3dtiles+json"
CRS84H = "http://www.opengis.net/def/crs/OGC/0/CRS84h"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GEOVOLUMES_CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-geovolumes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-geovolumes-1/1.0/conf/3d-tiles",
]
MEDIA_TYPES = {
    ".json": TILESET_MEDIA_TYPE,  # the type the GeoVolumes link names; CesiumJS reads any JSON type
    ".glb": "model/gltf-binary",
    ".b3dm": "application/octet-stream",
    ".i3dm": "application/octet-stream",
    ".pnts": "application/octet-stream",
    ".cmpt": "application/octet-stream",
    ".subtree": "application/octet-stream",
}
MAX_PATH = 512
ECEF_TO_LLH = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
EARTH_RADIUS_M = 6_356_752.0  # the polar radius: the smallest, so the widened box holds the sphere
# The tileset root can change on every rebuild: revalidate it; content follows the tiles' rule.
TILESET_CACHE = "no-cache"
CONTENT_CACHE = "public, max-age=300"


class BadPath(ValueError):
    """A request path that can never name a file of a tileset."""


def safe_relative(path: str) -> PurePosixPath:
    """``path`` as a relative POSIX path of plain segments, or BadPath.

    Refuses absolute paths, empty, '.' and '..' segments, hidden names, backslashes and
    control characters, before the file system is ever asked.
    """
    if not path or len(path) > MAX_PATH:
        raise BadPath("empty or over-long path")
    if path.startswith("/") or "\\" in path or any(ord(c) < 32 or c == "\x7f" for c in path):
        raise BadPath("absolute path or forbidden character")
    parts = path.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") or ":" in p for p in parts):
        raise BadPath("path segments must be plain names (no '.', '..', hidden or empty ones)")
    rel = PurePosixPath(*parts)
    if rel.suffix.lower() not in MEDIA_TYPES:
        raise BadPath(f"not a 3D Tiles file type (allowed: {', '.join(sorted(MEDIA_TYPES))})")
    return rel


def region_bbox(region: list[float]) -> list[float]:
    """A 3D Tiles region (radians, metres) as a CRS84h bbox [minx, miny, minz, maxx, maxy, maxz]."""
    w, s, e, n, lo, hi = (float(v) for v in region)
    return [round(math.degrees(w), 7), round(math.degrees(s), 7), round(lo, 3) + 0.0,
            round(math.degrees(e), 7), round(math.degrees(n), 7), round(hi, 3) + 0.0]


def sphere_bbox(sphere: list[float]) -> list[float]:
    """A 3D Tiles sphere (ECEF centre, radius; e.g. placed landmark models) as the CRS84h bbox
    that holds it: the centre's lon/lat/height widened by the radius."""
    x, y, z, r = (float(v) for v in sphere)
    lon, lat, h = ECEF_TO_LLH.transform(x, y, z)
    dlat = math.degrees(r / EARTH_RADIUS_M)
    dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
    return [round(lon - dlon, 7), round(lat - dlat, 7), round(h - r, 3) + 0.0,
            round(lon + dlon, 7), round(lat + dlat, 7), round(h + r, 3) + 0.0]


def vertical_extent(bbox: list[float]) -> dict:
    """The heights of a CRS84h bbox as an extent of their own: the spatial extent stays a 2D CRS84
    box, the only shape Features clients (GDAL: 'Invalid bbox') take."""
    return {"interval": [[bbox[2], bbox[5]]], "vrs": CRS84H,
            "description": "ellipsoidal heights (m) of the 3D Tiles, as in their root bounding volume"}


class ThreeDRoutes:
    """Serves each catalog layer's tileset folder and adds the GeoVolumes view to pygeoapi's."""

    def __init__(self, catalog: Catalog, base_url: str, feature_collections: frozenset[str] = frozenset()):
        self.catalog = catalog
        self.base_url = base_url.rstrip("/")
        self.feature_collections = feature_collections  # pygeoapi serves these, 3D-only or not
        self._bbox_cache: dict[str, tuple[str, list[float] | None]] = {}

    # -- where the tilesets are ------------------------------------------------------
    def folder(self, layer: str) -> Path:
        return self.catalog.build_path / TILES3D_DIR / layer

    def has_tileset(self, layer: str) -> bool:
        return (self.folder(layer) / "tileset.json").is_file()

    def layers_with_tilesets(self) -> list[str]:
        return [name for name in self.catalog.layers if self.has_tileset(name)]

    def tileset_bbox(self, layer: str) -> list[float] | None:
        """The root region of ``layer``'s tileset as a CRS84h bbox (cached per file version)."""
        path = self.folder(layer) / "tileset.json"
        try:
            with open(path, "rb") as fh:
                tag = etag_for(os.fstat(fh.fileno()))
                cached = self._bbox_cache.get(layer)
                if cached and cached[0] == tag:
                    return cached[1]
                doc = json.loads(fh.read())
        except (OSError, ValueError):
            return None
        volume = doc.get("root", {}).get("boundingVolume", {}) if isinstance(doc, dict) else {}
        region, sphere = volume.get("region"), volume.get("sphere")
        bbox = None
        if isinstance(region, list) and len(region) == 6 and all(isinstance(v, (int, float)) for v in region):
            bbox = region_bbox(region)
        elif isinstance(sphere, list) and len(sphere) == 4 and all(isinstance(v, (int, float)) for v in sphere):
            bbox = sphere_bbox(sphere)
        self._bbox_cache[layer] = (tag, bbox)
        return bbox

    def three_d_only(self, layer: str) -> bool:
        cfg = self.catalog.layers.get(layer)
        return cfg is not None and cfg.kind in THREE_D_ONLY and layer not in self.feature_collections

    def describe_3d_only(self, layer: str) -> dict:
        """An OGC API collection description for a layer that is only 3D Tiles (no items link)."""
        cfg = self.catalog.layers[layer]
        doc: dict = {"id": layer, "title": cfg.title or layer, "description": cfg.description or "",
                     "links": [{"rel": "self", "type": "application/json", "title": "This collection",
                                "href": f"{self.base_url}/collections/{layer}?f=json"}, self.link(layer)]}
        bbox = self.tileset_bbox(layer)
        if bbox is not None:
            doc["extent"] = {"spatial": {"bbox": [bbox[:2] + bbox[3:5]], "crs": CRS84}}
            doc["extent"]["vertical"] = vertical_extent(bbox)
        return doc

    def link(self, layer: str) -> dict:
        # the layer's kind tells a viewer whether the tiles are height-coloured blocks or models
        return {"rel": GEOVOLUMES_REL, "type": TILESET_MEDIA_TYPE, "title": "3D Tiles tileset",
                "href": f"{self.base_url}/collections/{layer}/3dtiles/tileset.json",
                "citytwin:kind": self.catalog.layers[layer].kind}

    # -- routes --------------------------------------------------------------------
    def routes(self, pygeoapi_collections: Handler) -> list[Route]:
        collections = self.collections_route(pygeoapi_collections)
        return [
            Route("/collections/{collection}/3dtiles/{path:path}", self.file, methods=["GET", "HEAD"]),
            Route("/collections", collections, methods=["GET", "HEAD"]),
            # the same parameter name as pygeoapi's route, whose handler reads it
            Route("/collections/{collection_id}", collections, methods=["GET", "HEAD"]),
        ]

    async def file(self, request: Request) -> Response:
        layer = request.path_params["collection"]
        known = ", ".join(sorted(self.catalog.layers)) or "none"
        try:
            check_layer_name(layer)
        except LayerNameError:
            return error(404, "NotFound", f"collection {layer!r} does not exist (known: {known})")
        if layer not in self.catalog.layers:
            return error(404, "NotFound", f"collection {layer!r} does not exist (known: {known})")
        try:
            rel = safe_relative(request.path_params["path"])
        except BadPath as exc:
            return error(400, "InvalidParameterValue", f"3D Tiles path {request.path_params['path']!r}: {exc}")
        if not self.has_tileset(layer):
            return error(404, "NotFound", f"collection {layer!r} has no 3D Tiles; run 'citytwin build' "
                                          f"(buildings layers get a tileset)")
        found = await run_in_threadpool(self._read, layer, rel)
        if found is None:
            return error(404, "NotFound", f"no file {str(rel)!r} in the 3D Tiles of {layer!r}")
        data, etag = found
        suffix = rel.suffix.lower()
        headers = {"ETag": etag, "Cache-Control": TILESET_CACHE if suffix == ".json" else CONTENT_CACHE}
        if suffix == ".json":
            headers["Vary"] = "Accept-Encoding"
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        headers["Accept-Ranges"] = "bytes"
        if_range = request.headers.get("if-range")
        if "range" in request.headers and (if_range is None or if_range.strip() == etag):
            try:
                span = byte_range(request.headers["range"], len(data))
            except Unsatisfiable as exc:
                return error(416, "RangeNotSatisfiable", f"{rel}: {exc}", headers={"Content-Range": f"bytes */{len(data)}"})
            if span is not None:
                first, last = span
                headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
                return Response(data[first:last + 1], status_code=206, media_type=MEDIA_TYPES[suffix], headers=headers)
        if suffix == ".json" and accepts_gzip(request.headers.get("accept-encoding")):
            data = gzip.compress(data, compresslevel=6, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return Response(data, media_type=MEDIA_TYPES[suffix], headers=headers)

    def _read(self, layer: str, rel: PurePosixPath) -> tuple[bytes, str] | None:
        """The bytes and ETag of ``rel`` if it resolves to a regular file inside the folder."""
        try:
            folder = self.folder(layer).resolve(strict=True)
            target = (folder / rel).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not target.is_relative_to(folder):
            return None  # a symlink pointing out of the tileset
        try:
            with open(target, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    return None
                return fh.read(), etag_for(st)
        except OSError:
            return None

    # -- GeoVolumes view of pygeoapi's collections -----------------------------------
    def add_geovolumes(self, collection: dict) -> None:
        """Give one collection description its 3D Tiles link and 3D extent, if it has a tileset."""
        layer = collection.get("id")
        if not isinstance(layer, str) or layer not in self.catalog.layers or not self.has_tileset(layer):
            return
        links = collection.setdefault("links", [])
        if not any(isinstance(lk, dict) and lk.get("rel") == GEOVOLUMES_REL for lk in links):
            links.append(self.link(layer))
        bbox = self.tileset_bbox(layer)
        if bbox is not None:
            extent = collection.setdefault("extent", {})
            spatial = extent.setdefault("spatial", {"crs": CRS84})
            if spatial.get("crs", CRS84) == CRS84:  # the extent holds the features and the 3D content
                boxes = spatial.get("bbox") or [bbox[:2] + bbox[3:5]]
                first = boxes[0]
                boxes[0] = [min(first[0], bbox[0]), min(first[1], bbox[1]),
                            max(first[2], bbox[3]), max(first[3], bbox[4])]
                spatial["bbox"] = boxes
            extent["vertical"] = vertical_extent(bbox)

    def collections_route(self, pygeoapi_collections: Handler) -> Handler:
        async def collections(request: Request) -> Response:
            layer = request.path_params.get("collection_id")
            if layer is not None and self.three_d_only(layer):
                return await run_in_threadpool(self._one_3d_only, layer, request)
            resp = await pygeoapi_collections(request)
            if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith("application/json"):
                return resp  # HTML, JSON-LD and errors: pygeoapi's as is
            doc = json.loads(resp.body.decode(resp.charset or "utf-8"))
            if "collections" in doc:
                for item in doc["collections"]:
                    await run_in_threadpool(self.add_geovolumes, item)
                listed = {c.get("id") for c in doc["collections"]}
                doc["collections"] += await run_in_threadpool(
                    lambda: [self.describe_3d_only(name) for name in self.catalog.layers
                             if name not in listed and self.three_d_only(name) and self.has_tileset(name)])
            else:
                await run_in_threadpool(self.add_geovolumes, doc)
            return _replace_body(resp, json.dumps(doc, ensure_ascii=False))

        return collections

    def _one_3d_only(self, layer: str, request: Request) -> Response:
        if not self.has_tileset(layer):
            return error(404, "NotFound", f"collection {layer!r} ({self.catalog.layers[layer].kind}) has no 3D Tiles "
                                          f"yet; run 'citytwin build'")
        doc = self.describe_3d_only(layer)
        if wants_html(request):
            return HTMLResponse(collection_html(doc))
        return Response(json.dumps(doc, ensure_ascii=False), media_type="application/json")

    def conformance_route(self, inner: Handler) -> Handler:
        async def conformance(request: Request) -> Response:
            resp = await inner(request)
            if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith("application/json"):
                return resp
            if not await run_in_threadpool(self.layers_with_tilesets):
                return resp
            doc = json.loads(resp.body.decode(resp.charset or "utf-8"))
            classes = doc.setdefault("conformsTo", [])
            classes += [c for c in GEOVOLUMES_CONFORMANCE if c not in classes]
            return _replace_body(resp, json.dumps(doc, ensure_ascii=False))

        return conformance


def _replace_body(resp: Response, body: str) -> Response:
    headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "content-encoding")}
    return Response(body, status_code=resp.status_code, headers=headers)
