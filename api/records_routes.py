"""OGC API Records over HTTP: the searchable catalog of this server's layers.

- GET /collections/catalog: the record collection (itemType ``record``), also listed in the
  JSON of /collections, where OWSLib's Records client looks for catalogs.
- GET /collections/catalog/items: GeoJSON records, searched as ``api.records_search`` says.
- GET /collections/catalog/items/{id}: one record.

The records come from ``api.records`` at start. Answers are JSON only. The routes sit in front
of the items checks for Features collections (``in_front``).
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error
from api.params import BadParameter
from api.records import CATALOG_ID, CRS84, RecordMaker, Sources, check_catalog_id, union_bbox
from api.records_search import parse_query, record_box, search
from api.static_routes import STYLES_DIR
from api.threed_routes import ThreeDRoutes
from pipelines.catalog import Catalog
from pipelines.store import Store

Handler = Callable[[Request], Awaitable[Response]]
GEOJSON = "application/geo+json"
CATALOG_REL = "http://www.opengis.net/def/rel/ogc/1.0/catalog"
_SPEC = "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/"
CONFORMANCE = [_SPEC + c for c in ("record-core", "record-collection", "record-core-query-parameters",
                                   "records-api", "searchable-catalog", "json")]


class RecordsRoutes:
    def __init__(self, records: list[dict], base_url: str, server_title: str) -> None:
        self.records = records
        self.by_id = {r["id"]: r for r in records}
        self.url = base_url.rstrip("/")
        self.description = self._describe(server_title)

    def landing_link(self) -> dict:
        return {"rel": CATALOG_REL, "type": "application/json", "title": "Catalog of the layers (OGC API Records)",
                "href": f"{self.url}/collections/{CATALOG_ID}"}

    def _describe(self, server_title: str) -> dict:
        boxes = [list(b) for r in self.records if (b := record_box(r)) is not None]
        times = sorted(r["time"]["timestamp"] for r in self.records if r.get("time"))
        extent: dict = {"spatial": {"bbox": [union_bbox(boxes) or [-180.0, -90.0, 180.0, 90.0]], "crs": CRS84}}
        if times:
            extent["temporal"] = {"interval": [[times[0], times[-1]]]}
        kinds = sorted({r["properties"]["kind"] for r in self.records})
        base = f"{self.url}/collections/{CATALOG_ID}"
        return {
            "id": CATALOG_ID, "type": "Catalog", "itemType": "record",
            "title": f"{server_title}: catalog of layers",
            "description": "One record per published layer (vector, 3D, raster, live, transit) and per style, "
                           "with its extent, CRS, build time and links to its features, tiles, 3D Tiles and COG. "
                           "Search with q, bbox, type, datetime, ids.",
            "keywords": ["catalog", "records", *kinds], "conformsTo": CONFORMANCE,
            "extent": extent, "crs": [CRS84],
            "links": [{"rel": "self", "type": "application/json", "title": "This catalog", "href": base},
                      {"rel": "items", "type": GEOJSON, "title": "The records", "href": f"{base}/items"},
                      {"rel": "root", "type": "application/json", "title": "Landing page", "href": f"{self.url}/"}],
        }

    def in_front(self, app: ASGIApp) -> ASGIApp:
        """``app`` with the catalog's paths answered first, before the Features checks of items
        requests: the catalog takes the Records parameters, where an empty value is no filter."""
        own = Router(routes=self.routes(), default=app)
        prefix = f"/collections/{CATALOG_ID}"

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "") if scope["type"] == "http" else ""
            await (own if path == prefix or path.startswith(prefix + "/") else app)(scope, receive, send)

        return dispatch

    def routes(self) -> list[Route]:
        get = ["GET", "HEAD"]
        return [Route(f"/collections/{CATALOG_ID}", self.collection, methods=get),
                Route(f"/collections/{CATALOG_ID}/items", self.items, methods=get),
                Route(f"/collections/{CATALOG_ID}/items/{{record_id}}", self.item, methods=get)]

    @staticmethod
    def _only_f(request: Request) -> Response | None:
        extra = sorted(k for k in request.query_params if k != "f")
        fmt = request.query_params.get("f", "json")
        if extra:
            return error(400, "InvalidParameterValue",
                         f"unknown query parameter {extra[0][:40]!r}; this resource takes only f=json")
        if fmt not in ("json", "geojson"):
            return error(400, "InvalidParameterValue", f"f={fmt[:20]!r}: the catalog is offered as JSON only (f=json)")
        return None

    async def collection(self, request: Request) -> Response:
        return self._only_f(request) or JSONResponse(self.description)

    async def item(self, request: Request) -> Response:
        refused = self._only_f(request)
        if refused:
            return refused
        record = self.by_id.get(request.path_params["record_id"])
        if record is None:
            return error(404, "NotFound", f"no record {request.path_params['record_id'][:80]!r} in the catalog; "
                                          f"list them at /collections/{CATALOG_ID}/items")
        return JSONResponse(record, media_type=GEOJSON)

    async def items(self, request: Request) -> Response:
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        try:
            query = parse_query(pairs)
        except BadParameter as exc:
            return error(400, "InvalidParameterValue", str(exc))
        page, matched = search(self.records, query)
        base = f"{self.url}/collections/{CATALOG_ID}/items"
        kept = [(k, v) for k, v in pairs if k not in ("offset", "f")]

        def page_link(rel: str, offset: int, title: str) -> dict:
            return {"rel": rel, "type": GEOJSON, "title": title,
                    "href": f"{base}?{urlencode([*kept, ('offset', offset)])}"}

        links = [page_link("self", query.offset, "This page"),
                 {"rel": "collection", "type": "application/json", "title": "The catalog",
                  "href": f"{self.url}/collections/{CATALOG_ID}"}]
        if query.offset + len(page) < matched:
            links.append(page_link("next", query.offset + query.limit, "Next records"))
        if query.offset > 0:
            links.append(page_link("prev", max(query.offset - query.limit, 0), "Previous records"))
        body = {"type": "FeatureCollection", "features": page, "numberMatched": matched,
                "numberReturned": len(page), "links": links,
                "timeStamp": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")}
        return JSONResponse(body, media_type=GEOJSON)

    def listed(self, pygeoapi_collections: Handler) -> Handler:
        """pygeoapi's /collections with the catalog added to the JSON list."""

        async def collections(request: Request) -> Response:
            resp = await pygeoapi_collections(request)
            if (request.path_params.get("collection_id") is not None or resp.status_code != 200
                    or not resp.headers.get("content-type", "").startswith("application/json")):
                return resp
            doc = json.loads(resp.body.decode(resp.charset or "utf-8"))
            doc.setdefault("collections", []).append(self.description)
            return _rewritten(resp, doc)

        return collections

    @staticmethod
    def conformance(inner: Handler) -> Handler:
        """/conformance (JSON) with the Records classes this catalog implements."""

        async def conformance(request: Request) -> Response:
            resp = await inner(request)
            if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith("application/json"):
                return resp
            doc = json.loads(resp.body.decode(resp.charset or "utf-8"))
            doc["conformsTo"] = [*doc.get("conformsTo", []), *CONFORMANCE]
            return _rewritten(resp, doc)

        return conformance


def _rewritten(resp: Response, doc: dict) -> Response:
    headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "content-encoding")}
    return Response(json.dumps(doc, ensure_ascii=False), status_code=resp.status_code, headers=headers)


def catalog_routes(catalog: Catalog, store: Store, resources: dict, threed: ThreeDRoutes, url: str) -> RecordsRoutes:
    """The catalog of what ``create_app`` serves: ``resources`` is the generated pygeoapi config's."""
    check_catalog_id(catalog)
    store_file = getattr(store, "path", None) if store.kind != "postgis" else None
    records = RecordMaker(Sources(catalog, resources, threed, url, store_file, STYLES_DIR)).records()
    return RecordsRoutes(records, url, catalog.server.title)
