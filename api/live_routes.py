"""Live layers over HTTP: post items with an API key, read them as GeoJSON or vector tiles.

- POST /live/{layer}/items   a GeoJSON Feature or FeatureCollection (X-API-Key required);
  each item needs properties.timestamp and properties.expires (ISO 8601 with an offset).
  201 ``{"layer", "stored", "ids", "purged", "privacy"}``; 400 names the bad item; 401 without a key.
  Personal data in properties is screened before storing: RRNs, mobile numbers and e-mails
  masked, person-name properties masked, properties named like identifiers dropped;
  ``privacy`` says which properties and how many values (``masked``, ``dropped``), never the values.
- GET  /live/{layer}/items[?bbox=minlon,minlat,maxlon,maxlat&limit=N]  unexpired items; a layer
  polled for availability adds ``poll``, what its last polls did (api.availability_poller).
- A layer with ``availability`` in the catalog takes places: properties capacity, free, status and
  updated instead of timestamp and expires (pipelines.availability).
- GET  /live/{layer}/tiles/{z}/{x}/{y}  an MVT made on request (204 when empty), ETag/304: the first
  request after a write makes its whole zoom at once, kept per process until the layer's next write
  or its first item's expiry (tiles.live_tile_cache).

Reads are cacheable for a few seconds only, and never past the first expiry they hold; reads of a
layer a GTFS-Realtime feed writes are ``no-cache`` (tiles revalidate by ETag), so the next feed shows.
A layer's watched file is re-read on any request once its mtime/size changed. A layer's database
that cannot be used (a file put in its place that is not a database) is a 503 naming the file; a
deleted one is made again. Every write
(post or file reload) and every refused post goes to the audit log with who, when and what.
"""
from __future__ import annotations

import hashlib
import math
import re
import threading
from datetime import datetime, timezone

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import AUDIT_FILE, ApiKeys, AuditLog
from api.availability_poller import poll_status, polled_layers
from api.bodies import BodyError, parse_json, read_limited
from api.errors import error
from api.params import BadParameter, integer
from geo.errors import CatalogError, LayerNameError
from geo.names import check_layer_name
from pipelines.availability import place_payload
from pipelines.catalog import Catalog
from pipelines.live import LiveItemError, LiveLayer, LiveStoreError, parse_items, screened
from tiles.live_mvt import MAX_ZOOM, LiveFrame, LiveTile
from tiles.live_tile_cache import LiveTileCache

MAX_AGE_S = 15  # upper bound of Cache-Control max-age on live reads
MAX_BODY = 1_000_000  # a few thousand items; a feed of more is a watched file
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MVT_MIMETYPE = "application/vnd.mapbox-vector-tile"
_INT = re.compile(r"^[0-9]{1,9}$")
_CODES = {400: "InvalidParameterValue", 404: "NotFound", 413: "PayloadTooLarge", 503: "ServiceUnavailable"}
_SEND = "a GeoJSON Feature or FeatureCollection"
_SMALLER = "send fewer items per request"


def parse_bbox(raw: str | None) -> tuple[float, float, float, float] | None:
    if raw is None or raw.strip() == "":
        return None
    parts = raw.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise BadParameter(f"bbox must be four numbers minlon,minlat,maxlon,maxlat, got {raw[:80]!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise BadParameter(f"bbox must be four finite numbers minlon,minlat,maxlon,maxlat, got {raw[:80]!r}")
    w, s, e, n = values
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise BadParameter(f"bbox {raw[:80]!r} is not a lon/lat box with min <= max")
    return w, s, e, n


def feed_layers(catalog: Catalog) -> frozenset[str]:
    """Live layers a GTFS-Realtime feed replaces every interval: a copy cached for MAX_AGE_S would
    hide the next update (vehicles every 10 s) from a client that honours Cache-Control."""
    return frozenset(name for cfg in catalog.realtime.values() for name in (cfg.vehicles_layer, cfg.alerts_layer)
                     if name)


def soonest_expiry(features: list[dict]) -> float:
    """When the first of ``features`` expires (POSIX seconds; infinity when none says)."""
    return min((datetime.fromisoformat(exp).timestamp() for f in features if (exp := f["properties"].get("expires"))),
               default=math.inf)


def max_age(expiry: float, now: float) -> int:
    """MAX_AGE_S, or less so a cached answer never outlives the first item in it (expiring at ``expiry``)."""
    return int(min(MAX_AGE_S, max(0.0, expiry - now)))


class LiveLayers:
    """The project's live layers (opened on first use) plus the key store and the audit log."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.keys = ApiKeys(catalog)
        self.audit = AuditLog(catalog.build_path / AUDIT_FILE)
        self._open: dict[str, LiveLayer] = {}
        self._lock = threading.Lock()

    def layer(self, name: str) -> LiveLayer:
        """The live layer ``name``; LayerNameError or CatalogError for anything else."""
        check_layer_name(name)
        with self._lock:
            found = self._open.get(name)
            if found is None:
                found = self._open[name] = LiveLayer(self.catalog, name)
        follow_file(found, self.audit)
        return found


def follow_file(layer: LiveLayer, audit: AuditLog) -> None:
    """Re-read the layer's watched file if it changed, and log the reload as a write."""
    record = layer.refresh()
    if record is not None:
        audit.write(who=f"file:{layer.watched}", action="reload", layer=layer.name,
                    status="error" if "error" in record else "ok", **record)


def _layer_status(exc: LayerNameError | CatalogError) -> int:
    """400 for a name that could never be a layer, 404 for one that is not a live layer here."""
    return 400 if isinstance(exc, LayerNameError) else 404


def live_routes(catalog: Catalog) -> list[BaseRoute]:
    live = LiveLayers(catalog)
    polled = polled_layers(catalog)
    fed = feed_layers(catalog)
    tiles = LiveTileCache()

    def cache_control(layer: str, expiry: float, now: float) -> str:
        return "no-cache" if layer in fed else f"public, max-age={max_age(expiry, now)}"

    def encoded(layer: LiveLayer, z: int, x: int, y: int, now: float) -> LiveTile:
        """The tile from the layer's snapshot (read and made once per version and zoom); the version is
        read before the items, so a write in between can only make a tile newer than its version says."""
        return tiles.tile(layer.name, layer.version(), now, lambda: LiveFrame.of(layer.name, *layer.columns(now)),
                          z, x, y)

    async def _layer(name: str) -> LiveLayer | JSONResponse:
        try:
            return await run_in_threadpool(live.layer, name)
        except (LayerNameError, CatalogError) as exc:
            status = _layer_status(exc)
            return error(status, _CODES[status], str(exc))
        except LiveStoreError as exc:
            return error(503, _CODES[503], str(exc))

    async def post_items(request: Request) -> Response:
        name = request.path_params["layer"]
        action = f"POST /live/{name[:80]}/items"
        presented = request.headers.get("x-api-key")
        who = live.keys.identify(presented.strip() if presented else None)
        if who is None:
            live.audit.write(who=None, action=action, status=401,
                             refused="no key" if not presented else "invalid key")
            return error(401, "Unauthorized", live.keys.refusal(presented),
                         {"WWW-Authenticate": 'ApiKey header="X-API-Key"'})

        def refuse(status: int, message: str) -> JSONResponse:
            live.audit.write(who=who, action=action, status=status, refused=message[:300])
            return error(status, _CODES[status], message)

        try:
            layer = await run_in_threadpool(live.layer, name)
        except (LayerNameError, CatalogError) as exc:
            return refuse(_layer_status(exc), str(exc))
        except LiveStoreError as exc:
            return refuse(503, str(exc))
        try:
            body = await read_limited(request.stream(), MAX_BODY, _SMALLER, request.headers.get("content-length"))
            payload = parse_json(body or b"null", _SEND)
            places = live.catalog.layers[name].availability  # parking, chargers: counts checked, expiry derived
            items = parse_items(place_payload(payload, places) if places else payload)
        except BodyError as exc:
            return refuse(exc.status, str(exc))
        except LiveItemError as exc:
            return refuse(400, str(exc))
        try:
            result = await run_in_threadpool(layer.put, items, who)
        except LiveStoreError as exc:
            return refuse(503, str(exc))
        privacy = screened(items).as_dict()
        live.audit.write(who=who, action=action, layer=name, status=201, stored=result.stored,
                         ids=result.ids[:50], purged=result.purged, privacy=privacy)
        return JSONResponse({"layer": name, "stored": result.stored, "ids": result.ids, "purged": result.purged,
                             "privacy": privacy}, status_code=201)

    async def get_items(request: Request) -> Response:
        layer = await _layer(request.path_params["layer"])
        if isinstance(layer, Response):
            return layer
        try:
            bbox = parse_bbox(request.query_params.get("bbox"))
            limit = integer(request.query_params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        except BadParameter as exc:
            return error(400, "InvalidParameterValue", str(exc))
        now = datetime.now(timezone.utc)
        try:
            features = await run_in_threadpool(layer.features, bbox, limit, now.timestamp())
        except LiveStoreError as exc:
            return error(503, _CODES[503], str(exc))
        body = {"type": "FeatureCollection", "features": features, "numberReturned": len(features),
                "timeStamp": now.isoformat(timespec="seconds").replace("+00:00", "Z")}
        if layer.name in polled:  # what the last polls of its source did
            body["poll"] = await run_in_threadpool(poll_status, catalog, layer.name)
        cache = cache_control(layer.name, soonest_expiry(features), now.timestamp())
        return JSONResponse(body, media_type="application/geo+json", headers={"Cache-Control": cache})

    async def get_tile(request: Request) -> Response:
        p = request.path_params
        bad = [f"{k} must be a non-negative integer, got {p[k][:20]!r}" for k in ("z", "x", "y") if not _INT.match(p[k])]
        if bad:
            return error(400, "InvalidParameterValue", "; ".join(bad))
        z, x, y = int(p["z"]), int(p["x"]), int(p["y"])
        if z > MAX_ZOOM or x >= 1 << z or y >= 1 << z:
            return error(404, "NotFound", f"tile {z}/{x}/{y} is outside the WebMercatorQuad grid (z <= {MAX_ZOOM})")
        layer = await _layer(p["layer"])
        if isinstance(layer, Response):
            return layer
        now = datetime.now(timezone.utc).timestamp()
        try:
            tile = await run_in_threadpool(encoded, layer, z, x, y, now)
        except LiveStoreError as exc:
            return error(503, _CODES[503], str(exc))
        data = tile.data
        etag = '"' + hashlib.sha1(f"{layer.name}/{z}/{x}/{y}|".encode() + data).hexdigest()[:24] + '"'
        headers = {"ETag": etag, "Cache-Control": cache_control(layer.name, tile.valid_until, now)}
        inm = request.headers.get("if-none-match")
        if inm and etag in [t.strip().removeprefix("W/") for t in inm.split(",")]:
            return Response(status_code=304, headers=headers)
        if not data:
            return Response(status_code=204, headers=headers)
        return Response(data, media_type=MVT_MIMETYPE, headers=headers)

    return [
        Route("/live/{layer}/items", post_items, methods=["POST"]),
        Route("/live/{layer}/items", get_items, methods=["GET", "HEAD"]),
        Route("/live/{layer}/tiles/{z}/{x}/{y}", get_tile, methods=["GET", "HEAD"]),
    ]
