"""A fast path for the commonest Features request on PostGIS: items by bbox, limit, offset.

pygeoapi's PostgreSQL provider turns every row into SQLAlchemy objects, shapely geometries
and Python dicts before serialising them again. For plain GeoJSON pages (no filter, no
CRS, no sorting, no property selection) PostGIS can write the whole feature array itself,
so this middleware answers those with one SQL statement from the shared psycopg pool and
passes every other request, unchanged, to pygeoapi. The response has the same features,
counts and paging links as pygeoapi's. While the database is down it answers 503 with
Retry-After.
"""
from __future__ import annotations

import json
import math
import re
import time
from urllib.parse import parse_qsl, urlencode

from psycopg import sql
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import unavailable
from geo.errors import StoreUnavailableError
from geo.names import LAYER_NAME_RE

ITEMS_PATH = re.compile(r"^/collections/([^/]+)/items$")
HANDLED = {"bbox", "limit", "offset", "f"}
LAYER_CACHE_SECONDS = 2.0

_QUERY = sql.SQL("""
WITH env AS (SELECT ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326) AS g),
hits AS (SELECT t.* FROM {table} t, env WHERE t.geometry && env.g AND ST_Intersects(t.geometry, env.g)),
page AS (SELECT * FROM hits ORDER BY id LIMIT %(limit)s OFFSET %(offset)s)
SELECT (SELECT count(*) FROM hits), (SELECT count(*) FROM page),
       coalesce((SELECT json_agg(json_build_object(
                    'type', 'Feature', 'id', p.id,
                    'geometry', ST_AsGeoJSON(p.geometry, 15)::json,
                    'properties', to_jsonb(p) - 'geometry' - 'id') ORDER BY p.id) FROM page p), '[]')::text
""")


class FastItems:
    def __init__(self, app: ASGIApp, store, base_url: str, default_limit: int, max_limit: int):
        self.app = app
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.default_limit = default_limit
        self.max_limit = max_limit
        self._layers: tuple[float, set[str]] = (0.0, set())

    def _published(self) -> set[str]:
        at, names = self._layers
        if time.monotonic() - at > LAYER_CACHE_SECONDS:
            names = set(self.store.layers())
            self._layers = (time.monotonic(), names)
        return names

    def _plan(self, scope: Scope) -> dict | None:
        """The query parameters when this request is ours to answer, else None."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        match = ITEMS_PATH.match(scope["path"])
        if not match or not LAYER_NAME_RE.match(match.group(1)):
            return None
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if set(params) - HANDLED or params.get("f", "json") not in ("json", "geojson"):
            return None
        if "f" not in params:
            accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
            if "text/html" in accept:
                return None  # pygeoapi renders the HTML page
        try:
            bbox = [float(v) for v in params["bbox"].split(",")] if "bbox" in params else [-180, -90, 180, 90]
            limit = int(params.get("limit", self.default_limit))
            offset = int(params.get("offset", 0))
        except ValueError:
            return None  # pygeoapi answers malformed parameters with its own 400
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or not 1 <= limit or offset < 0:
            return None
        x0, y0, x1, y1 = bbox
        return {"layer": match.group(1), "params": params, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                "limit": min(limit, self.max_limit), "offset": offset}

    def _page(self, plan: dict) -> bytes | None:
        """The page, or None for a layer not in the store (pygeoapi answers that)."""
        if plan["layer"] not in self._published():
            return None
        query = _QUERY.format(table=self.store.table(plan["layer"]))
        matched, returned, features = self.store.access.run(
            lambda conn: conn.execute(query, plan, prepare=True).fetchone())
        return self._document(plan, matched, returned, features)

    def _document(self, plan: dict, matched: int, returned: int, features: str) -> bytes:
        uri = f"{self.base_url}/collections/{plan['layer']}/items"
        rest = {k: v for k, v in plan["params"].items() if k not in ("f", "offset")}
        query = ("&" + urlencode(rest, safe=",")) if rest else ""
        links = [
            {"type": "application/geo+json", "rel": "self", "title": "This document as GeoJSON",
             "href": f"{uri}?f=json{query}"},
            {"type": "text/html", "rel": "alternate", "title": "This document as HTML", "href": f"{uri}?f=html{query}"},
        ]
        limit, offset = plan["limit"], plan["offset"]
        if offset > 0:
            links.append({"type": "application/geo+json", "rel": "prev", "title": "Items (prev)",
                          "href": f"{uri}?offset={max(0, offset - limit)}{query}"})
        if matched > limit + offset:
            links.append({"type": "application/geo+json", "rel": "next", "title": "Items (next)",
                          "href": f"{uri}?offset={offset + limit}{query}"})
        links.append({"type": "application/json", "rel": "collection", "href": uri.rsplit("/", 1)[0]})
        tail = json.dumps({"numberMatched": matched, "numberReturned": returned, "links": links,
                           "timeStamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())})
        return b'{"type":"FeatureCollection","features":' + features.encode() + b"," + tail[1:].encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self._plan(scope)
        if plan is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await run_in_threadpool(self._page, plan)
        except StoreUnavailableError as exc:
            await unavailable(exc)(scope, receive, send)
            return
        if body is None:
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/geo+json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
