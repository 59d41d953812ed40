"""The ingested static GTFS feed as a real-time feed needs it: which ids exist, each trip's
stops and scheduled times, stop positions, route names, colours and lines, the timezone.

Read from the GTFS zip the catalog names for the feed's layers, and kept per process until
that file changes (a realtime feed is matched against the feed the layers were built from).
"""
from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import shapely

from geo.errors import CatalogError, SourceError
from pipelines.catalog import Catalog
from pipelines.departures import feed_timezone
from pipelines.readers.gtfs import read_gtfs
from pipelines.steps.transit_layers import routes_layer
from pipelines.transit import catalog_feed, layer_names

_NOON_MINUS_12H = 12 * 3600


@dataclass(frozen=True)
class Route:
    short_name: str
    color: str | None
    agency_id: str
    route_type: int
    line: shapely.Geometry | None


@dataclass(frozen=True)
class Trip:
    route_id: str
    direction_id: str
    stop_sequence: np.ndarray  # int, ascending
    stop_id: np.ndarray  # str
    arrival_s: np.ndarray  # seconds after the service day's noon-minus-12h, NaN when blank
    departure_s: np.ndarray


@dataclass(frozen=True)
class StaticFeed:
    name: str
    tz: ZoneInfo
    trips: dict[str, Trip]
    routes: dict[str, Route]
    stops: dict[str, tuple[float, float]]  # lon, lat

    def day_origin(self, start_date: str) -> int:
        """POSIX seconds of the service day's noon minus 12 h (GTFS times count from there)."""
        d = dt.datetime.strptime(start_date, "%Y%m%d")
        return int(d.replace(hour=12, tzinfo=self.tz).timestamp()) - _NOON_MINUS_12H

    def service_date(self, trip: Trip, at: float) -> str:
        """The service date (YYYYMMDD) on which ``trip`` runs nearest to POSIX time ``at``
        (for a TripUpdate without start_date): today's, or yesterday's for a trip past 24:00."""
        local = dt.datetime.fromtimestamp(at, self.tz).date()
        times = trip.departure_s[~np.isnan(trip.departure_s)]
        mid = float(np.mean(times)) if len(times) else 0.0
        candidates = [(local + dt.timedelta(days=k)).strftime("%Y%m%d") for k in (-1, 0, 1)]
        return min(candidates, key=lambda day: abs(self.day_origin(day) + mid - at))


_CACHE: dict[str, tuple[tuple, StaticFeed]] = {}
_GUARD = threading.Lock()


def static_feed(catalog: Catalog, name: str) -> StaticFeed:
    """The static feed ingested as ``name`` (layers ``<name>_stops`` ...), cached until its zip changes."""
    stops_layer = layer_names(name)["stops"]
    if stops_layer not in catalog.layers:
        raise CatalogError(f"realtime feed {name!r}: no GTFS feed was ingested under that name (no layer "
                           f"{stops_layer!r}); run 'citytwin ingest feed.zip --layer {name}' first")
    found = catalog_feed(catalog, stops_layer)
    if found is None:
        raise CatalogError(f"realtime feed {name!r}: layer {stops_layer!r} has no GTFS .zip source")
    path = found[1]
    try:
        st = os.stat(path)
    except OSError:
        raise SourceError(f"{path}: the GTFS feed of {name!r} is missing; the realtime feed is matched against it")
    token = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _GUARD:
        cached = _CACHE.get(str(path))
        if cached is None or cached[0] != token:
            cached = _CACHE[str(path)] = (token, _load(name, path, catalog.layers[stops_layer].encoding))
        return cached[1]


def _load(name: str, path: Path, encoding: str | None) -> StaticFeed:
    feed = read_gtfs(path, encoding=encoding)
    lines, _ = routes_layer(feed)
    line_of = dict(zip(lines["id"], lines.geometry))
    r = feed.routes
    routes = {rid: Route(short or long_ or rid, ("#" + c) if c else None, agency, int(kind), line_of.get(rid))
              for rid, short, long_, c, agency, kind in zip(r["route_id"], r["route_short_name"],
                                                            r["route_long_name"], r["route_color"],
                                                            r["agency_id"], r["route_type"])}
    st = feed.stop_times
    trip_info = feed.trips.set_index("trip_id")
    trips: dict[str, Trip] = {}
    for tid, rows in st.groupby("trip_id", sort=False):
        info = trip_info.loc[tid]
        trips[str(tid)] = Trip(str(info["route_id"]), str(info["direction_id"]),
                               rows["stop_sequence"].to_numpy(), rows["stop_id"].to_numpy(dtype=object),
                               rows["arrival_s"].to_numpy(), rows["departure_s"].to_numpy())
    s = feed.stops
    stops = {sid: (float(lon), float(lat)) for sid, lon, lat in zip(s["stop_id"], s["stop_lon"], s["stop_lat"])
             if np.isfinite(lon) and np.isfinite(lat)}
    return StaticFeed(name, feed_timezone(feed), trips, routes, stops)
