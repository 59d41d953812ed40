"""The parts of /openapi that pygeoapi points at on schemas.opengis.net, written here instead.

pygeoapi's document takes its responses, parameters and schemas by ``$ref`` from OGC's published
YAML. A client that validates against the document (schemathesis, code generators, Swagger UI
offline) has to fetch them, and they describe the standard's answers rather than ours. Here
each referenced part is a local component describing what this server answers, and every
external ``$ref`` is pointed at it. A reference this module does not know is left as it is;
tests/test_schemathesis.py fails on it, so a new pygeoapi cannot bring one in unnoticed.
"""
from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_LINK = {"type": "object", "required": ["href"], "properties": {
    "href": _STR, "rel": _STR, "type": _STR, "title": _STR, "hreflang": _STR, "templated": {"type": "boolean"}}}
_LINKS = {"type": "array", "items": {"$ref": "#/components/schemas/link"}}
_EXCEPTION = {"type": "object", "required": ["code", "description"], "properties": {
    "type": _STR, "code": _STR, "description": _STR}}
_COUNT = {"type": "integer", "minimum": 0}
_FEATURE = {"type": "object", "required": ["type"], "properties": {
    "type": {"type": "string", "enum": ["Feature"]},
    "id": {"anyOf": [_STR, {"type": "integer"}]},
    "geometry": {"type": "object", "nullable": True},
    "properties": {"type": "object", "nullable": True},
    "links": _LINKS}}
_COLLECTION = {"type": "object", "required": ["id", "links"], "properties": {
    "id": _STR, "title": _STR, "description": _STR, "itemType": _STR,
    "keywords": {"type": "array", "items": _STR},
    "extent": {"type": "object"}, "crs": {"type": "array", "items": _STR}, "links": _LINKS}}

SCHEMAS: dict[str, dict] = {
    "link": _LINK,
    "exception": _EXCEPTION,
    "feature": _FEATURE,
    "collection": _COLLECTION,
    # what an execute request may hold; the process itself checks its inputs (400 otherwise)
    "execute": {"type": "object", "properties": {
        "inputs": {"type": "object"}, "outputs": {"type": "object"},
        "response": {"type": "string", "enum": ["raw", "document"]}}},
    # pygeoapi's own "tiles" schema asks for tileMatrixSetLinks; the answer lists tilesets
    "tiles": {"type": "object", "required": ["links", "tilesets"], "properties": {
        "links": _LINKS,
        "tilesets": {"type": "array", "items": {"type": "object", "required": ["dataType", "links"], "properties": {
            "title": _STR, "dataType": _STR, "crs": _STR, "tileMatrixSetURI": _STR, "links": _LINKS}}}}},
    "statusInfo": {"type": "object", "required": ["jobID", "status"], "properties": {
        "jobID": _STR, "type": _STR, "processID": _STR, "message": _STR, "links": _LINKS,
        "status": {"type": "string", "enum": ["accepted", "running", "successful", "failed", "dismissed"]}}},
}


def _json(desc: str, schema: dict, media: tuple[str, ...] = ("application/json",)) -> dict:
    content: dict[str, Any] = {m: {"schema": schema} for m in media}
    content["text/html"] = {"schema": _STR}  # f=html
    return {"description": desc, "content": content}


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


RESPONSES: dict[str, dict] = {
    "LandingPage": _json("Landing page: links to the API's resources", {
        "type": "object", "required": ["links"], "properties": {"title": _STR, "description": _STR, "links": _LINKS}}),
    "ConformanceDeclaration": _json("The conformance classes this API implements", {
        "type": "object", "required": ["conformsTo"], "properties": {"conformsTo": {"type": "array", "items": _STR}}}),
    "Collections": _json("The published collections", {
        "type": "object", "required": ["collections", "links"], "properties": {
            "collections": {"type": "array", "items": _ref("schemas", "collection")}, "links": _LINKS}}),
    "Collection": _json("A collection's description", _ref("schemas", "collection")),
    "Features": _json("A page of features (GeoJSON FeatureCollection)", {
        "type": "object", "required": ["type", "features"], "properties": {
            "type": {"type": "string", "enum": ["FeatureCollection"]},
            "features": {"type": "array", "items": _ref("schemas", "feature")},
            "numberMatched": _COUNT, "numberReturned": _COUNT, "links": _LINKS}},
        ("application/geo+json", "application/json")),
    "Feature": _json("One feature (GeoJSON Feature)", _ref("schemas", "feature"),
                     ("application/geo+json", "application/json")),
    "InvalidParameter": _json("A parameter is invalid: the description names it", _ref("schemas", "exception")),
    "NotFound": _json("No such resource", _ref("schemas", "exception")),
    "ServerError": _json("The server failed", _ref("schemas", "exception")),
    "ProcessList": _json("The processes offered", {
        "type": "object", "required": ["processes", "links"], "properties": {
            "processes": {"type": "array", "items": {"type": "object", "required": ["id", "version", "links"],
                                                       "properties": {"id": _STR, "version": _STR, "title": _STR,
                                                                      "links": _LINKS}}},
            "links": _LINKS}}),
    "ExecuteAsync": {"description": "Job started; its status is at the Location header",
                     "content": {"application/json": {"schema": _ref("schemas", "statusInfo")}}},
}


def _path(name: str, desc: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "description": desc, "schema": schema}


PARAMETERS: dict[str, dict] = {
    "featureId": _path("featureId", "Id of a feature", _STR),
    "tileMatrixSetId": _path("tileMatrixSetId", "Tile matrix set", {"type": "string", "enum": ["WebMercatorQuad"]}),
    "tileMatrix": _path("tileMatrix", "Zoom level", {"type": "string", "pattern": "^[0-9]{1,2}$"}),
    "tileRow": _path("tileRow", "Tile row", {"type": "integer", "minimum": 0}),
    "tileCol": _path("tileCol", "Tile column", {"type": "integer", "minimum": 0}),
    "sortby": {"name": "sortby", "in": "query", "required": False, "style": "form", "explode": False,
               "description": "Properties to sort by, comma-separated; '-' in front sorts descending",
               "schema": {"type": "array", "items": _STR}},
}

# OGC API Features Part 3 on the items of every feature collection. GDAL (3.6 to 3.12) sends its
# -where to the server only when this filter-lang enum lists 'cql-text', the draft name of
# cql2-text that the server also takes (api.cql_compat.TEXT_LANGS)
FILTER_PARAMETERS: list[dict] = [
    {"name": "filter", "in": "query", "required": False, "schema": _STR,
     "description": "CQL2 filter over the queryables (encoding: filter-lang)"},
    {"name": "filter-lang", "in": "query", "required": False,
     "description": "Encoding of filter", "schema": {"type": "string", "enum": ["cql2-text", "cql2-json", "cql-text"],
                                                    "default": "cql2-text"}},
    {"name": "filter-crs", "in": "query", "required": False, "description": "CRS of the filter's geometries",
     "schema": {"type": "string", "format": "uri"}},
]

# the last part of each external reference pygeoapi makes -> the local component standing for it
_LOCAL: dict[str, tuple[str, str]] = {
    **{f"responses/{n}": ("responses", n) for n in (
        "LandingPage", "Collection", "Features", "Feature", "InvalidParameter", "NotFound", "ServerError")},
    **{f"parameters/{n}": ("parameters", n) for n in (
        "featureId", "tileMatrixSetId", "tileMatrix", "tileRow", "tileCol")},
    "schemas/link": ("schemas", "link"),
    "parameters/sortby.yaml": ("parameters", "sortby"),
    "responses/NotFound.yaml": ("responses", "NotFound"),
    "responses/ServerError.yaml": ("responses", "ServerError"),
    "responses/ProcessList.yaml": ("responses", "ProcessList"),
    "responses/ExecuteAsync.yaml": ("responses", "ExecuteAsync"),
    "schemas/exception.yaml": ("schemas", "exception"),
    "schemas/execute.yaml": ("schemas", "execute"),
}


def _local_ref(ref: str) -> str:
    tail = "/".join(ref.rsplit("#", 1)[-1].rsplit("/", 2)[-2:])
    if tail not in _LOCAL:
        return ref
    kind, name = _LOCAL[tail]
    return f"#/components/{kind}/{name}"


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return {**node, "$ref": _local_ref(ref)}
        return {k: _rewrite(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def _temporal(param: dict) -> bool:
    """A date or date-time property's own query parameter. GDAL sends a -where term on every
    property listed on the items operation, and writes a date literal as text ('2024-05-05T'),
    which CQL2 refuses against a date; unlisted, such a term is evaluated by GDAL itself."""
    return param.get("in") == "query" and param.get("schema", {}).get("format") in ("date", "date-time")


def localise(doc: dict) -> dict:
    """``doc`` with every external reference pointing at a component of its own."""
    out = _rewrite(doc)
    components = out.setdefault("components", {})
    for kind, parts in (("schemas", SCHEMAS), ("responses", RESPONSES), ("parameters", PARAMETERS)):
        components.setdefault(kind, {}).update(parts)
    for path, item in out.get("paths", {}).items():
        get = item.get("get") if path.startswith("/collections/") and path.endswith("/items") else None
        if get is not None:
            params = [p for p in get.get("parameters", []) if not _temporal(p)]
            get["parameters"] = params + [p for p in FILTER_PARAMETERS if p["name"] not in {q.get("name") for q in params}]
    # pygeoapi labels these two answers "LandingPage"
    for path, name in (("/conformance", "ConformanceDeclaration"), ("/collections", "Collections")):
        get = out.get("paths", {}).get(path, {}).get("get")
        if get:
            get.setdefault("responses", {})["200"] = _ref("responses", name)
    return out
