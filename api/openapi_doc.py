"""/openapi: pygeoapi's document with the paths of our own routes merged in.

pygeoapi describes what it serves (landing, conformance, collections, items, tiles, processes).
The routes in front of it (AR, transit, geocoding, live layers, TileJSON, 3D Tiles) bring their
own path items, merged into its JSON here; the HTML (Swagger UI) page is pygeoapi's as is.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from api.departure_boards import board_parameters
from api.html_pages import wants_html
from api.openapi_components import localise
from api.swagger_page import swagger_page
from api.tiles_openapi import tiles_paths

Handler = Callable[[Request], Awaitable[Response]]
# (paths, component schemas, tags) from one group of routes
Contribution = tuple[dict, dict, list[dict]]

_NUM = {"type": "number"}
_LON = {"type": "number", "minimum": -180, "maximum": 180}
_LAT = {"type": "number", "minimum": -90, "maximum": 90}
# an address as /geocode reads it: not blank, at most 200 characters (geocode_routes.MAX_QUERY_CHARS)
_ADDRESS = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}
_ADDRESSES = {"type": "array", "minItems": 1, "maxItems": 1000, "items": _ADDRESS}
_PROBLEM = {"description": "Bad parameter: the message names it and says what is allowed",
            "content": {"application/json": {"schema": {"type": "object", "properties": {
                "type": {"type": "string"}, "code": {"type": "string"}, "description": {"type": "string"}}}}}}


_NO_LIVE_LAYER = {**_PROBLEM, "description": "No such live layer"}


def query(name: str, desc: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": schema}


def path_param(name: str, desc: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "description": desc, "schema": schema or {"type": "string"}}


def json_ok(desc: str) -> dict:
    return {"description": desc, "content": {"application/json": {"schema": {"type": "object"}}}}


def _threed_file(desc: str) -> dict:
    """A 3D Tiles file as threed_routes serves it: tileset JSON, GLB, or another tile format."""
    return {"description": desc, "content": {m: {} for m in (
        "application/3dtiles+json", "model/gltf-binary", "application/octet-stream")}}


def service_paths() -> Contribution:
    """Transit, geocoding, live layers, TileJSON and 3D Tiles."""
    collection = path_param("collection", "Collection (layer) id")
    layer = path_param("layer", "Live layer id (catalog kind live)")
    z, x, y = (path_param(n, d, {"type": "integer", "minimum": 0})
               for n, d in (("z", "Zoom"), ("x", "Tile column"), ("y", "Tile row")))
    mvt = {"description": "Mapbox Vector Tile", "content": {"application/vnd.mapbox-vector-tile": {}}}
    geojson = {"description": "GeoJSON FeatureCollection", "content": {"application/geo+json": {}}}
    paths = {
        "/transit/nearest": {"get": {
            "summary": "Nearest transit stops, with geodesic distance, bearing and serving routes",
            "tags": ["Transit"], "operationId": "transitNearest",
            "parameters": [query("lon", "Longitude (WGS84)", _LON, True), query("lat", "Latitude (WGS84)", _LAT, True),
                           query("radius", "Search radius in metres", {**_NUM, "minimum": 0, "exclusiveMinimum": True}),
                           query("limit", "Most stops", {"type": "integer", "minimum": 1}),
                           query("feed", "Only this GTFS feed (layer prefix)", {"type": "string"}),
                           *board_parameters()],
            "responses": {"200": json_ok("Stops, nearest first"), "400": _PROBLEM,
                          "404": {**_PROBLEM, "description": "The project publishes no transit stops"}}}},
        "/ready": {"get": {
            "summary": "Whether the work the server started in the background (the AR index) is done",
            "tags": ["Server"], "operationId": "ready",
            "responses": {"200": json_ok("Ready: every start-up task is done (a failed one says why)"),
                          "503": {"description": "Still starting; try again after Retry-After seconds",
                                  "content": {"application/json": {}}}}}},
        "/transit/realtime": {"get": {
            "summary": "Each GTFS-Realtime feed's state: the last good load and the last refusal, per feed type",
            "tags": ["Transit"], "operationId": "transitRealtime",
            "responses": {"200": json_ok("Feeds by name, each with its feed types")}}},
        "/geocode": {
            "get": {"summary": "One Korean address (road-name or lot-number) to a point, with tier and score",
                    "tags": ["Geocoding"], "operationId": "geocode",
                    "parameters": [query("q", "The address", _ADDRESS, True)],
                    "responses": {"200": json_ok("The match (or why there is none)"), "400": _PROBLEM}},
            "post": {"summary": "Up to 1000 addresses at once", "tags": ["Geocoding"], "operationId": "geocodeMany",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "oneOf": [_ADDRESSES, {"type": "object", "required": ["q"], "properties": {"q": _ADDRESSES},
                                                 "additionalProperties": False}]}}}},
                     "responses": {"200": json_ok("One result per address, in order"), "400": _PROBLEM}}},
        "/reverse": {"get": {
            "summary": "Administrative areas holding a point, and the nearest address",
            "tags": ["Geocoding"], "operationId": "reverseGeocode",
            "parameters": [query("lon", "Longitude (WGS84)", _LON, True), query("lat", "Latitude (WGS84)", _LAT, True)],
            "responses": {"200": json_ok("Areas and nearest address"), "400": _PROBLEM}}},
        "/live/{layer}/items": {
            "get": {"summary": "Unexpired items of a live layer (short cache)", "tags": ["Live"],
                    "operationId": "liveItems",
                    "parameters": [layer, query("bbox", "minlon,minlat,maxlon,maxlat", {"type": "string"}),
                                   query("limit", "Most items", {"type": "integer"})],
                    "responses": {"200": geojson, "400": _PROBLEM, "404": _NO_LIVE_LAYER}},
            "post": {"summary": "Add or replace items (each with properties.timestamp and properties.expires)",
                     "tags": ["Live"], "operationId": "livePost",
                     "parameters": [layer, {"name": "X-API-Key", "in": "header", "required": True,
                                            "description": "A key from the project's api_keys_file",
                                            "schema": {"type": "string"}}],
                     "requestBody": {"required": True, "content": {"application/geo+json": {},
                                                                    "application/json": {}}},
                     "responses": {"201": json_ok("Stored ids"), "400": _PROBLEM,
                                   "401": {**_PROBLEM, "description": "Missing or unknown X-API-Key"},
                                   "404": _NO_LIVE_LAYER,
                                   "413": {**_PROBLEM, "description": "Body over 1 MB: send fewer items"}}}},
        "/live/{layer}/tiles/{z}/{x}/{y}": {"get": {
            "summary": "A vector tile of a live layer, encoded on the fly", "tags": ["Live"],
            "operationId": "liveTile", "parameters": [layer, z, x, y],
            "responses": {"200": mvt, "204": {"description": "No item in the tile"},
                          "304": {"description": "Unchanged"}, "400": _PROBLEM,
                          "404": {**_PROBLEM, "description": "No such live layer, or a tile outside the grid"}}}},
        "/collections/{collection}/tiles/WebMercatorQuad/tilejson.json": {"get": {
            "summary": "TileJSON 3.0 of a collection's vector tiles", "tags": ["Tiles"],
            "operationId": "tileJson", "parameters": [collection],
            "responses": {"200": json_ok("TileJSON"), "404": {"description": "No tiles for this collection"}}}},
        "/collections/{collection}/3dtiles/{path}": {"get": {
            "summary": "A file of a collection's 3D Tiles (tileset.json, GLB or b3dm content)",
            "tags": ["3D Tiles"], "operationId": "threeDTiles",
            "parameters": [collection, path_param("path", "tileset.json or a content path it names")],
            "responses": {"200": _threed_file("The file"), "206": _threed_file("The byte range asked for"),
                          "304": {"description": "Unchanged"}, "400": _PROBLEM,
                          "404": {**_PROBLEM, "description": "No such file or no 3D Tiles"},
                          "416": {**_PROBLEM, "description": "The range lies past the end of the file"}}}},
    }
    tags = [{"name": "Transit", "description": "GTFS stops near a point"},
            {"name": "Geocoding", "description": "Korean addresses to points and back"},
            {"name": "Live", "description": "Short-lived incidents and congestion"},
            {"name": "3D Tiles", "description": "OGC 3D Tiles of buildings, city models and landmark models"}]
    tile_paths, tile_schemas, tile_tags = tiles_paths()  # tile set metadata and tile matrix sets
    return {**paths, **tile_paths}, tile_schemas, tags + tile_tags


def openapi_route(pygeoapi_openapi: Handler, contributions: list[Contribution]) -> Handler:
    """pygeoapi's /openapi with ``contributions`` merged into its JSON; as HTML, Swagger UI served from here."""

    async def openapi(request: Request) -> Response:
        if wants_html(request):
            return HTMLResponse(swagger_page())
        resp = await pygeoapi_openapi(request)
        ctype = resp.headers.get("content-type", "")
        if resp.status_code != 200 or "json" not in ctype:
            return resp
        doc = localise(json.loads(resp.body.decode(resp.charset or "utf-8")))
        known_tags = {t.get("name") for t in doc.get("tags", []) if isinstance(t, dict)}
        for paths, schemas, tags in contributions:
            doc.setdefault("paths", {}).update(paths)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            for tag in tags:
                if tag["name"] not in known_tags:
                    doc.setdefault("tags", []).append(tag)
                    known_tags.add(tag["name"])
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return Response(json.dumps(doc, ensure_ascii=False), status_code=200, headers=headers)

    return openapi


def records_paths() -> Contribution:
    """The OGC API Records catalog of the layers (api/records_routes.py)."""
    csv = {"type": "string"}
    record = {"description": "A record (GeoJSON Feature)", "content": {"application/geo+json": {"schema": {
        "type": "object", "required": ["id", "type", "properties", "links"],
        "properties": {"id": {"type": "string"}, "type": {"type": "string", "enum": ["Feature"]},
                       "properties": {"type": "object", "required": ["type", "title"]},
                       "links": {"type": "array", "items": {"type": "object"}}}}}}}
    records = {"description": "Records matching the search (GeoJSON FeatureCollection)",
               "content": {"application/geo+json": {"schema": {
                   "type": "object", "required": ["type", "features", "numberMatched", "numberReturned", "links"],
                   "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                                  "features": {"type": "array", "items": {"type": "object"}},
                                  "numberMatched": {"type": "integer", "minimum": 0},
                                  "numberReturned": {"type": "integer", "minimum": 0},
                                  "links": {"type": "array", "items": {"type": "object"}}}}}}}
    fmt = query("f", "Only JSON is offered", {"type": "string", "enum": ["json", "geojson"]})
    paths = {
        "/collections/catalog": {"get": {
            "summary": "The catalog of the layers (a record collection, itemType record)", "tags": ["Records"],
            "operationId": "describeCatalog", "parameters": [fmt],
            "responses": {"200": json_ok("The catalog description"), "400": _PROBLEM}}},
        "/collections/catalog/items": {"get": {
            "summary": "Search the records: one per published layer and per style", "tags": ["Records"],
            "operationId": "searchRecords",
            "parameters": [
                query("q", "Comma-separated terms; any of them in title, description or keywords", csv),
                {**query("bbox", "minlon,minlat,maxlon,maxlat (CRS84): records whose extent touches it",
                         {"type": "array", "minItems": 4, "maxItems": 4,
                          "items": {"type": "number", "minimum": -180, "maximum": 180}}),
                 "style": "form", "explode": False},
                query("type", "Comma-separated record types (dataset, style) or layer kinds (buildings, raster, ...)",
                      csv),
                query("datetime", "Instant or interval (RFC 3339, '..' for an open end) holding the build time", csv),
                query("ids", "Comma-separated record ids", csv),
                query("externalIds", "Comma-separated external ids (records carry none)", csv),
                query("limit", "Most records (1-1000, default 10)", {"type": "integer", "minimum": 1, "maximum": 1000}),
                query("offset", "Records to skip", {"type": "integer", "minimum": 0}), fmt],
            "responses": {"200": records, "400": _PROBLEM}}},
        "/collections/catalog/items/{recordId}": {"get": {
            "summary": "One record", "tags": ["Records"], "operationId": "getRecord",
            "parameters": [path_param("recordId", "Record id: a layer name, or style-<id>"), fmt],
            "responses": {"200": record, "400": _PROBLEM, "404": _PROBLEM}}},
    }
    return paths, {}, [{"name": "Records", "description": "OGC API Records: the catalog of the layers"}]


def jobs_paths() -> Contribution:
    """The job routes as api/auth.py serves them: each needs the API key that started the job."""
    key = {"name": "X-API-Key", "in": "header", "required": True, "schema": {"type": "string"},
           "description": "The API key that started the job (jobs of other keys do not exist for it)"}
    job = path_param("jobId", "Job id (from the Location header of an execute request)")
    fmt = query("f", "Format", {"type": "string", "enum": ["json"]})
    denied = {"401": {**_PROBLEM, "description": "No or an unknown X-API-Key"},
              "404": {**_PROBLEM, "description": "No job of this id started with this key"}}
    paths = {
        "/jobs": {"get": {
            "summary": "The jobs started with this API key, newest first", "tags": ["jobs"], "operationId": "getJobs",
            "parameters": [key, query("limit", "Most jobs (1-1000, default 100)",
                                      {"type": "integer", "minimum": 1, "maximum": 1000}),
                           query("offset", "Jobs to skip", {"type": "integer", "minimum": 0}), fmt],
            "responses": {"200": json_ok("Job list"), "400": _PROBLEM, "401": denied["401"]}}},
        "/jobs/{jobId}": {
            "get": {"summary": "Status of a job (statusInfo)", "tags": ["jobs"], "operationId": "getJob",
                    "parameters": [key, job, fmt],
                    "responses": {"200": json_ok("statusInfo"), "400": _PROBLEM, **denied}},
            "delete": {"summary": "Dismiss a job and its results", "tags": ["jobs"], "operationId": "deleteJob",
                       "parameters": [key, job], "responses": {"200": json_ok("statusInfo, dismissed"), **denied}}},
        "/jobs/{jobId}/results": {"get": {
            "summary": "Results of a finished job", "tags": ["jobs"], "operationId": "getJobResults",
            "parameters": [key, job, fmt],
            "responses": {"200": json_ok("The results"),
                          "400": {**_PROBLEM, "description": "A format not offered, or the job failed"},
                          **denied}}},
    }
    return paths, {}, []
