"""OpenAPI path items of the tile metadata routes answered in front of pygeoapi (tile set
metadata, tile matrix sets), with schemas of what those routes send."""
from __future__ import annotations

_ERROR = {"type": "object", "required": ["code", "description"], "properties": {
    "type": {"type": "string"}, "code": {"type": "string"}, "description": {"type": "string"}}}
_LINK = {"type": "object", "required": ["href", "rel"], "properties": {
    "href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
    "title": {"type": "string"}, "templated": {"type": "boolean"}}}
_LIMITS = {"type": "object", "required": ["tileMatrix", "minTileRow", "maxTileRow", "minTileCol", "maxTileCol"],
           "properties": {"tileMatrix": {"type": "string"}, **{k: {"type": "integer", "minimum": 0} for k in (
               "minTileRow", "maxTileRow", "minTileCol", "maxTileCol")}}}
TILESET = {"type": "object", "required": ["dataType", "crs", "tileMatrixSetURI", "links"], "properties": {
    "title": {"type": "string"}, "description": {"type": "string"}, "dataType": {"enum": ["vector"]},
    "crs": {"type": "string"}, "tileMatrixSetURI": {"type": "string"},
    "mediaTypes": {"type": "array", "items": {"type": "string"}},
    "tileMatrixSetLimits": {"type": "array", "items": _LIMITS},
    "links": {"type": "array", "items": _LINK}}}
# /collections/{id}/tiles (pygeoapi's route): pygeoapi's document names the pre-standard
# 'tileMatrixSetLinks' list; the answer, as OGC API Tiles 1.0 says, is 'tilesets'.
TILESETS = {"type": "object", "required": ["tilesets", "links"], "properties": {
    "links": {"type": "array", "items": _LINK},
    "tilesets": {"type": "array", "items": {"type": "object", "required": ["dataType", "crs", "links"], "properties": {
        "title": {"type": "string"}, "dataType": {"enum": ["vector"]}, "crs": {"type": "string"},
        "tileMatrixSetURI": {"type": "string"}, "links": {"type": "array", "items": _LINK}}}}}}
TILE_MATRIX_SET = {"type": "object", "required": ["id", "crs", "tileMatrices"], "properties": {
    "id": {"type": "string"}, "crs": {"type": "string"}, "uri": {"type": "string"},
    "tileMatrices": {"type": "array", "items": {"type": "object"}}}}
TILE_MATRIX_SETS = {"type": "object", "required": ["tileMatrixSets"], "properties": {
    "tileMatrixSets": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "links": {"type": "array", "items": _LINK}}}},
    "links": {"type": "array", "items": _LINK}}}


def _json(desc: str, schema: dict) -> dict:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str, desc: str, enum: list[str] | None = None) -> dict:
    schema: dict = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {"name": name, "in": where, "required": where == "path", "description": desc, "schema": schema}


def tiles_paths() -> tuple[dict, dict, list[dict]]:
    tms = _param("tileMatrixSetId", "path", "Tile matrix set (only WebMercatorQuad is offered)")
    collection = _param("collectionId", "path", "Collection (layer) id")
    fmt = _param("f", "query", "Response format", ["json", "html"])
    missing = _json("No such collection, collection without tiles, or tile matrix set not offered", _ERROR)
    bad_format = _json("A format (f) other than json or html", _ERROR)
    tileset = {"get": {"summary": "Tile set metadata of a collection's vector tiles", "tags": ["Tiles"],
                       "operationId": "collectionTileSet", "parameters": [collection, tms, fmt],
                       "responses": {"200": _json("OGC Tile Set Metadata", TILESET), "404": missing}}}
    paths = {
        "/collections/{collectionId}/tiles/{tileMatrixSetId}": tileset,
        "/collections/{collectionId}/tiles/{tileMatrixSetId}/metadata": {
            "get": dict(tileset["get"], operationId="collectionTileSetMetadata")},
        "/collections/{collectionId}/tiles/WebMercatorQuad/archive.pmtiles": {"get": {
            "summary": "All of a collection's vector tiles as one PMTiles archive, readable by range",
            "tags": ["Tiles"], "operationId": "collectionPMTiles",
            "parameters": [collection, {"name": "Range", "in": "header", "required": False,
                                        "description": "One byte range, e.g. bytes=0-126", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The archive", "content": {"application/vnd.pmtiles": {}}},
                          "206": {"description": "The range asked for", "content": {"application/vnd.pmtiles": {}}},
                          "304": {"description": "Unchanged"},
                          "404": _json("No such collection, or no archive (PostGIS serves tiles per request)", _ERROR),
                          "416": _json("The range starts past the end of the archive", _ERROR)}}},
        "/TileMatrixSets": {"get": {"summary": "The tile matrix sets offered", "tags": ["Tiles"],
                                    "operationId": "tileMatrixSets", "parameters": [fmt],
                                    "responses": {"200": _json("List of tile matrix sets", TILE_MATRIX_SETS),
                                                  "400": bad_format}}},
        "/TileMatrixSets/{tileMatrixSetId}": {"get": {
            "summary": "A tile matrix set definition (OGC TMS 2.0, with the TMS 1.0 members)", "tags": ["Tiles"],
            "operationId": "tileMatrixSet", "parameters": [tms, fmt],
            "responses": {"200": _json("Tile matrix set", TILE_MATRIX_SET), "400": bad_format,
                          "404": _json("Tile matrix set not offered", _ERROR)}}},
    }
    return paths, {"tiles": TILESETS}, [{"name": "Tiles", "description": "OGC API Tiles: tile sets and tile matrix sets"}]
