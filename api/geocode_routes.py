"""Geocoding over HTTP, from the project's own gazetteer (boundaries, address points, buildings).

    GET  /geocode?q=서울특별시 중구 세종대로 110     one address -> GeocodeResult.as_dict()
    POST /geocode  {"q": ["...", ...]} or ["...", ...]  up to 1000 addresses -> {"items": [...], "count"}
    GET  /reverse?lon=126.978&lat=37.566          admin areas holding the point and the nearest address

The geocoder is built lazily on the first request, from the same load_gazetteer the
``citytwin geotag`` pipeline uses, and rebuilt when a cheap token changes: the catalog
file's stat plus the store's layer list and versions (GeoPackage file stat, PostGIS layer
versions). Bad input is a 400 ``{"type", "code", "description"}``; a batch over the size limit a 413.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.bodies import BodyError, json_depth, read_limited
from api.errors import error
from api.params import BadParameter, number
from geo.errors import CitytwinError
from geo.geocoder import Geocoder
from pipelines.catalog import CATALOG_FILE, Catalog, load_catalog
from pipelines.store import Store

MAX_QUERY_CHARS = 200
MAX_BATCH = 1000
MAX_BODY_BYTES = MAX_BATCH * (MAX_QUERY_CHARS * 4 + 16) + 1024  # UTF-8 Hangul is 3 bytes; JSON quoting


_BATCH_SHAPE = 'body must be JSON: {"q": ["address", ...]} or ["address", ...]'


class BadRequest(ValueError):
    pass


def _stat(path: Path) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class GeocoderCache:
    """One Geocoder per store state, built on first use."""

    def __init__(self, catalog: Catalog, store: Store) -> None:
        self.catalog = catalog
        self.store = store
        self._lock = threading.Lock()
        self._token: object = None
        self._geocoder: Geocoder | None = None
        self.builds = 0  # how many times the gazetteer was (re)built

    def _current_token(self) -> tuple:
        parts: list = [_stat(self.catalog.root / CATALOG_FILE)]
        path = getattr(self.store, "path", None)
        if self.store.kind == "gpkg" and path is not None:
            parts.append(_stat(Path(path)))
        else:
            names = self.store.layers()
            version = getattr(self.store, "version", None)
            parts.append(tuple((n, version(n) if version else self.store.info(n).count) for n in names))
        return tuple(parts)

    def get(self) -> Geocoder:
        from pipelines.geotag import load_gazetteer

        token = self._current_token()
        with self._lock:
            if self._geocoder is None or token != self._token:
                if self._token is not None and token[0] != self._token[0]:
                    self.catalog = load_catalog(self.catalog.root)  # new layers entered the catalog
                self._geocoder = load_gazetteer(self.catalog, self.store)
                self._token = token
                self.builds += 1
            return self._geocoder


def _query_text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a string")
    if not value.strip():
        raise BadRequest(f"{where} is empty")
    if len(value) > MAX_QUERY_CHARS:
        raise BadRequest(f"{where} is {len(value)} characters; at most {MAX_QUERY_CHARS} are allowed")
    return value


def _batch(body: bytes) -> list[str]:
    if json_depth(body) > 2:  # the batch is a list of strings, at most inside one object
        raise BadRequest(_BATCH_SHAPE)
    try:
        doc = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(_BATCH_SHAPE) from None
    items = doc.get("q") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise BadRequest(_BATCH_SHAPE)
    if not items:
        raise BadRequest("no addresses given")
    if len(items) > MAX_BATCH:
        raise BadRequest(f"{len(items)} addresses given; at most {MAX_BATCH} per request")
    return [_query_text(v, f"q[{i}]") for i, v in enumerate(items)]


def geocode_routes(catalog: Catalog, store: Store) -> list[BaseRoute]:
    cache = GeocoderCache(catalog, store)

    async def geocode(request: Request) -> Response:
        try:
            if request.method == "POST":
                body = await read_limited(request.stream(), MAX_BODY_BYTES, f"send at most {MAX_BATCH} addresses",
                                          request.headers.get("content-length"))
                texts = _batch(body)
                g = await run_in_threadpool(cache.get)
                results = await run_in_threadpool(lambda: [r.as_dict() for r in g.geocode_many(texts)])
                return JSONResponse({"items": results, "count": len(results)})
            q = _query_text(request.query_params.get("q"), "parameter 'q'") if "q" in request.query_params \
                else None
            if q is None:
                raise BadRequest("parameter 'q' (the address) is required")
            g = await run_in_threadpool(cache.get)
            return JSONResponse((await run_in_threadpool(g.geocode, q)).as_dict())
        except BodyError as exc:
            return error(exc.status, "PayloadTooLarge", str(exc))
        except BadRequest as exc:
            return error(400, "InvalidParameterValue", str(exc))
        except CitytwinError as exc:
            return error(503, "StoreError", str(exc))

    async def reverse(request: Request) -> Response:
        try:
            lon = number(request.query_params, "lon", None, -180.0, 180.0)
            lat = number(request.query_params, "lat", None, -90.0, 90.0)
            g = await run_in_threadpool(cache.get)
            r = await run_in_threadpool(g.reverse, lon, lat)
        except BadParameter as exc:
            return error(400, "InvalidParameterValue", str(exc))
        except CitytwinError as exc:
            return error(503, "StoreError", str(exc))
        return JSONResponse({"lon": r.lon, "lat": r.lat, "areas": r.areas, "nearest": r.nearest})

    return [Route("/geocode", geocode, methods=["GET", "HEAD", "POST"]),
            Route("/reverse", reverse, methods=["GET", "HEAD"])]
