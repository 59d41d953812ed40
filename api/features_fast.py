"""A fast path for Features items on PostGIS: GeoJSON pages written by PostGIS itself.

pygeoapi's PostgreSQL provider turns every row into SQLAlchemy objects, shapely geometries
and Python dicts before serialising them again. For GeoJSON pages PostGIS can write the
feature array itself, so this middleware answers items requests by bbox (and bbox-crs),
limit, offset, sortby, properties, a CQL2 filter (and filter-crs) and an output crs with one
SQL statement from the shared psycopg pool (api.features_plan says which requests,
api.features_sql builds the statement, api.features_crs moves coordinates as pygeoapi does).
Every other request, and every request pygeoapi would refuse, goes on to pygeoapi unchanged.
The answer has the same features, order, counts, paging links and Content-Crs as pygeoapi's;
pages with equal sort keys end with the id, so they do not overlap. While the database is
down it answers 503 with Retry-After.
"""
from __future__ import annotations

import json
import logging
import re
import time
from urllib.parse import parse_qsl, quote

import psycopg
from pygeoapi.api import DEFAULT_CRS_LIST
from pygeoapi.util import get_supported_crs_list
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import unavailable
from api.features_crs import geojson_in
from api.features_plan import HANDLED, Collection, Plan, plan
from api.features_sql import LayerColumns, read_columns, statement
from geo.errors import StoreUnavailableError
from pipelines.store.postgis import PostGISStore

log = logging.getLogger(__name__)
ITEMS_PATH = re.compile(r"^/collections/([^/]+)/items$")
COLUMNS_CACHE_SECONDS = 2.0  # a republished layer may gain or lose columns
POSTGIS_PROVIDER = "api.providers.postgis_features.TimedPostgreSQLProvider"
# formats pygeoapi picks from an Accept header before JSON (pygeoapi.api.FORMAT_TYPES)
OTHER_FORMATS = ("text/html", "application/ld+json", "image/png", "image/jpeg",
                 "application/vnd.mapbox-vector-tile", "application/x-netcdf")


def fast_collections(resources: dict) -> dict[str, Collection]:
    """The collections of pygeoapi's configuration that its PostGIS provider serves."""
    out = {}
    for name, resource in resources.items():
        for provider in resource.get("providers", []):
            if provider.get("type") == "feature" and provider.get("name") == POSTGIS_PROVIDER:
                offered = get_supported_crs_list({"crs": list(provider.get("crs", []))}, DEFAULT_CRS_LIST)
                out[name] = Collection(resource.get("title", name), provider["table"], tuple(offered),
                                       provider.get("storage_crs", DEFAULT_CRS_LIST[0]))
    return out


class FastItems:
    def __init__(self, app: ASGIApp, store: PostGISStore, base_url: str, default_limit: int, max_limit: int,
                 collections: dict[str, Collection]):
        self.app = app
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.collections = collections
        self._columns: dict[str, tuple[float, LayerColumns | None]] = {}

    def _request(self, scope: Scope) -> tuple[str, dict[str, str]] | None:
        """(collection, query parameters) of a GeoJSON items request that may be ours, else None."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        match = ITEMS_PATH.match(scope["path"])
        if not match or match.group(1) not in self.collections:
            return None
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if set(params) - HANDLED or params.get("f", "json") != "json":
            return None
        if "f" not in params:
            accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
            if any(mime in accept for mime in OTHER_FORMATS):
                return None  # pygeoapi answers in that format
        return match.group(1), params

    def _layer_columns(self, table: str) -> LayerColumns | None:
        at, columns = self._columns.get(table, (0.0, None))
        if time.monotonic() - at > COLUMNS_CACHE_SECONDS:
            try:
                columns = self.store.access.run(lambda conn: read_columns(conn, self.store.table(table)))
            except psycopg.errors.UndefinedTable:
                columns = None  # dropped from the store: pygeoapi answers
            self._columns[table] = (time.monotonic(), columns)
        return columns

    def _page(self, name: str, params: dict[str, str]) -> tuple[bytes, str] | None:
        """The page and its CRS, or None when pygeoapi should answer."""
        collection = self.collections[name]
        columns = self._layer_columns(collection.table)
        if columns is None:
            return None
        asked = plan(params, collection, columns, self.default_limit, self.max_limit)
        if asked is None:
            return None
        query, args = statement(self.store.table(collection.table), asked.where, asked.sortby,
                                wkb=asked.transform is not None)
        args.update(ff_limit=asked.limit, ff_offset=asked.offset, ff_drop=asked.drop)
        try:  # a filter's shapes are many: only the fixed ones are prepared at once
            row = self.store.access.run(lambda conn: conn.execute(
                query, args, prepare=True if asked.where.filter_sql is None else None).fetchone())
        except psycopg.Error as exc:  # e.g. a value the column cannot take: pygeoapi's 400 says so
            log.info("items of %s left to pygeoapi: %s", name, str(exc).splitlines()[0] if str(exc) else exc)
            return None
        matched, returned, *rest = row
        features = rest[0] if asked.transform is None else _features(rest, asked.transform)
        return self._document(name, collection, params, asked, matched, returned, features), asked.content_crs

    def _document(self, name: str, collection: Collection, params: dict[str, str], asked: Plan, matched: int,
                  returned: int, features: str) -> bytes:
        """pygeoapi's page document around ``features`` (its links, in its order and spelling)."""
        uri = f"{self.base_url}/collections/{name}/items"
        query = "".join(f"&{quote(k, safe='')}={quote(v, safe=',')}" for k, v in params.items()
                        if k not in ("f", "offset"))
        links = [
            {"type": "application/geo+json", "rel": "self", "title": "This document as GeoJSON",
             "href": f"{uri}?f=json{query}"},
            {"rel": "alternate", "type": "application/ld+json", "title": "This document as RDF (JSON-LD)",
             "href": f"{uri}?f=jsonld{query}"},
            {"type": "text/html", "rel": "alternate", "title": "This document as HTML", "href": f"{uri}?f=html{query}"},
        ]
        limit, offset = asked.limit, asked.offset
        if offset > 0:
            links.append({"type": "application/geo+json", "rel": "prev", "title": "Items (prev)",
                          "href": f"{uri}?offset={max(0, offset - limit)}{query}"})
        if matched > limit + offset or returned == limit:
            links.append({"type": "application/geo+json", "rel": "next", "title": "Items (next)",
                          "href": f"{uri}?offset={offset + limit}{query}"})
        links.append({"type": "application/json", "title": collection.title, "rel": "collection",
                      "href": uri.rsplit("/", 1)[0]})
        tail = json.dumps({"numberMatched": matched, "numberReturned": returned, "links": links,
                           "timeStamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())})
        return b'{"type":"FeatureCollection","features":' + features.encode() + b"," + tail[1:].encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = self._request(scope)
        if request is None:
            await self.app(scope, receive, send)
            return
        try:
            answer = await run_in_threadpool(self._page, *request)
        except StoreUnavailableError as exc:
            await unavailable(exc)(scope, receive, send)
            return
        if answer is None:
            await self.app(scope, receive, send)
            return
        body, crs = answer
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/geo+json"), (b"content-length", str(len(body)).encode()),
            (b"content-crs", f"<{crs}>".encode())]})
        await send({"type": "http.response.body", "body": body})


def _features(arrays: list, transform: tuple[str, str]) -> str:
    """The GeoJSON feature array from ids, WKB geometries and properties, geometries moved."""
    ids, wkbs, props = (a or [] for a in arrays)
    geometries = geojson_in(wkbs, transform)
    return "[" + ",".join(f'{{"type":"Feature","id":{i},"geometry":{g},"properties":{p}}}'
                          for i, g, p in zip(ids, geometries, props)) + "]"
