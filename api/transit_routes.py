"""GET /transit/nearest?lon=&lat=&radius=&limit=[&feed=]: the nearest transit stops.

Stops come from the project's ``<feed>_stops`` layers (catalog kind ``transit``) and
their route names and colours from ``<feed>_routes``, read through the store API, so
both stores work. Each feed is held in memory as an STRtree of its boardable stops
(location_type 0), rebuilt when the store changes (GeoPackage file replaced, PostGIS
layer version bumped). A request asks the tree for the stops inside a lon/lat box that
surely contains the search circle, then measures geodesic distances (WGS84 ellipsoid,
pyproj.Geod) to those few candidates only.

Answer: ``{"items": [{feed, stop_id, name, lon, lat, distance_m, bearing_deg, routes:
[{route_id, short_name, color}], departures: [...]}], "count", "radius_m", "limit", "notes"}``,
nearest first (ties by feed and stop_id). ``departures=N`` (default 3, at most 10, 0 for none)
gives each stop's next N departures per route after ``at`` (default now), with the real-time
estimate and delay where a TripUpdate covers the trip (api.departure_boards).
Bad parameters are 400 ``{"type", "code", "description"}``.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import Geod
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.departure_boards import BoardQuery, DepartureBoards, board_query
from api.errors import error
from api.params import BadParameter, integer, number
from geo.errors import CitytwinError
from pipelines.catalog import Catalog
from pipelines.store import Store
from pipelines.transit import split_layer_name

DEFAULT_RADIUS_M = 500.0
MAX_RADIUS_M = 5000.0
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_GEOD = Geod(ellps="WGS84")
# Metres per degree of latitude is at least this anywhere on the ellipsoid (at the equator).
_MIN_M_PER_DEG_LAT = 110_574.0


def degrees_around(lat: float, radius_m: float) -> tuple[float, float]:
    """Half sides (dlon, dlat) of a lon/lat box that surely holds a circle of ``radius_m`` around a
    point at ``lat``: degrees of longitude shrink with cos(latitude)."""
    dlat = radius_m / _MIN_M_PER_DEG_LAT * 1.01
    lat_edge = min(89.999, abs(lat) + dlat)
    return min(180.0, dlat / max(math.cos(math.radians(lat_edge)), 1e-6)), dlat


@dataclass(frozen=True)
class Query:
    lon: float
    lat: float
    radius_m: float
    limit: int
    feed: str | None
    notes: tuple[str, ...]


def parse_query(params, feeds: list[str]) -> Query:
    notes: list[str] = []
    lon = number(params, "lon", None, -180, 180)
    lat = number(params, "lat", None, -90, 90)
    radius = number(params, "radius", DEFAULT_RADIUS_M, 0, None, lo_open=True)
    if radius > MAX_RADIUS_M:
        notes.append(f"radius {radius:g} m was capped at {MAX_RADIUS_M:g} m")
        radius = MAX_RADIUS_M
    limit = integer(params, "limit", DEFAULT_LIMIT, 1)
    if limit > MAX_LIMIT:
        notes.append(f"limit {limit} was capped at {MAX_LIMIT}")
        limit = MAX_LIMIT
    feed = params.get("feed") or None
    if feed is not None and feed not in feeds:
        raise BadParameter(f"parameter 'feed': no transit feed {feed[:40]!r} (known: {', '.join(feeds) or 'none'})")
    return Query(lon, lat, radius, limit, feed, tuple(notes))


@dataclass
class StopIndex:
    """One feed's boardable stops in an STRtree, with their routes ready to answer."""

    feed: str
    ids: np.ndarray
    names: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    routes: list[list[dict]]
    tree: shapely.STRtree

    @classmethod
    def build(cls, store: Store, feed: str, stops_layer: str, routes_layer: str | None) -> StopIndex:
        stops = store.read(stops_layer)
        if "location_type" in stops.columns:
            lt = stops["location_type"].fillna(0).astype("int64")
            stops = stops[lt == 0]
        stops = stops[stops.geometry.notna() & ~stops.geometry.is_empty]
        lookup: dict[str, dict] = {}
        if routes_layer is not None:
            routes = store.read(routes_layer)
            text = {c: (routes[c].fillna("").astype(str) if c in routes.columns else [""] * len(routes))
                    for c in ("route_short_name", "route_long_name", "route_color")}
            for rid, short, long_, colour in zip(routes["id"].astype(str), text["route_short_name"],
                                                 text["route_long_name"], text["route_color"]):
                lookup[rid] = {"route_id": rid, "short_name": short or long_ or rid, "color": colour or None}
        serving = stops["routes"].fillna("") if "routes" in stops.columns else [""] * len(stops)
        route_lists = [[lookup.get(r, {"route_id": r, "short_name": r, "color": None})
                        for r in str(text).split(",") if r] for text in serving]
        points = stops.geometry.to_numpy()
        name_col = stops["stop_name"] if "stop_name" in stops.columns else stops["id"]
        return cls(feed=feed, ids=stops["id"].astype(str).to_numpy(), names=name_col.fillna("").to_numpy(),
                   lon=shapely.get_x(points), lat=shapely.get_y(points), routes=route_lists,
                   tree=shapely.STRtree(points))

    def within(self, q: Query) -> list[dict]:
        dlon, dlat = degrees_around(q.lat, q.radius_m)
        box = shapely.box(q.lon - dlon, q.lat - dlat, q.lon + dlon, q.lat + dlat)
        idx = self.tree.query(box)
        if len(idx) == 0:
            return []
        az, _, dist = _GEOD.inv(np.full(len(idx), q.lon), np.full(len(idx), q.lat), self.lon[idx], self.lat[idx])
        az, dist = np.atleast_1d(az), np.atleast_1d(dist)
        keep = dist <= q.radius_m
        return [
            {"feed": self.feed, "stop_id": str(self.ids[i]), "name": str(self.names[i]),
             "lon": float(self.lon[i]), "lat": float(self.lat[i]),
             "distance_m": round(float(d), 2), "bearing_deg": round(float(a) % 360.0, 1),
             "routes": self.routes[i]}
            for i, d, a in zip(idx[keep], dist[keep], az[keep])
        ]


class TransitIndex:
    """The stop indexes of a project's feeds, rebuilt when the store changes."""

    def __init__(self, catalog: Catalog, store: Store):
        self.catalog = catalog
        self.store = store
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[object, StopIndex]] = {}

    def feeds(self) -> dict[str, tuple[str, str | None]]:
        """feed -> (stops layer, routes layer or None), for transit layers in catalog and store."""
        stored = set(self.store.layers())
        out = {}
        for name, cfg in self.catalog.layers.items():
            if cfg.kind == "transit" and name.endswith("_stops") and name in stored:
                feed = split_layer_name(name)
                routes = f"{feed}_routes"
                out[feed] = (name, routes if routes in stored else None)
        return out

    def _token(self, layers: list[str]) -> object:
        """Changes whenever the layers may have changed."""
        path = getattr(self.store, "path", None)
        if self.store.kind == "gpkg" and path is not None:
            st = os.stat(path)
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        version = getattr(self.store, "version", None)
        if version is not None:
            return tuple(version(n) for n in layers)
        return tuple(self.store.info(n).count for n in layers)

    def index(self, feed: str, stops: str, routes: str | None) -> StopIndex:
        token = self._token([stops] + ([routes] if routes else []))
        with self._lock:
            cached = self._cache.get(feed)
            if cached is None or cached[0] != token:
                cached = self._cache[feed] = (token, StopIndex.build(self.store, feed, stops, routes))
            return cached[1]

    def nearest(self, q: Query) -> list[dict]:
        items: list[dict] = []
        for feed, (stops, routes) in self.feeds().items():
            if q.feed is None or q.feed == feed:
                items += self.index(feed, stops, routes).within(q)
        items.sort(key=lambda it: (it["distance_m"], it["feed"], it["stop_id"]))
        return items[: q.limit]


def transit_routes(catalog: Catalog, store: Store, boards: DepartureBoards) -> list[BaseRoute]:
    index = TransitIndex(catalog, store)

    def answer(q: Query, bq: BoardQuery) -> tuple[list[dict], list[str]]:
        items = index.nearest(q)
        board = boards.request()
        for item in items:
            item["departures"] = board.departures(item["feed"], item["stop_id"], bq)
        return items, [*q.notes, *board.notes]

    async def nearest(request: Request) -> Response:
        try:
            feeds = await run_in_threadpool(index.feeds)
            if not feeds:
                return error(404, "NotFound", "this project publishes no transit stops; ingest a GTFS feed with "
                                               "'citytwin ingest feed.zip --layer NAME' and build")
            q = parse_query(request.query_params, sorted(feeds))
            items, notes = await run_in_threadpool(answer, q, board_query(request.query_params))
        except BadParameter as exc:
            return error(400, "InvalidParameterValue", str(exc))
        except CitytwinError as exc:
            return error(503, "StoreError", str(exc))
        return JSONResponse({"items": items, "count": len(items), "radius_m": q.radius_m, "limit": q.limit,
                             "notes": notes}, headers={"Cache-Control": "no-cache"})

    return [Route("/transit/nearest", nearest, methods=["GET", "HEAD"])]
