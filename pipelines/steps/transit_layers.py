"""GTFS tables -> the three published transit layers (stops, routes, departures).

- stops: one point per row of stops.txt (id = stop_id). ``routes`` is the sorted,
  comma-separated list of route_ids whose trips call there (for a station: at any of its
  child stops).
- routes: one MultiLineString per row of routes.txt (id = route_id): the distinct
  shapes of its trips from shapes.txt; trips without a usable shape contribute the line
  through their stops instead (``geometry_source`` says which). A route with no trips has
  no geometry.
- departures: one row per (stop, hour) on a representative service day (see
  pipelines.steps.service_days), a point at the stop. ``hour`` is the GTFS service-day
  hour 0..47 (times pass 24:00 for trips running after midnight). A departure is a stop
  time that is not the last stop of its trip; blank intermediate times are interpolated
  along the trip.
"""
from __future__ import annotations

import re

import geopandas as gpd
import pandas as pd
import shapely

from pipelines.readers.gtfs import GtfsFeed
from pipelines.steps.service_days import ServiceDay
from pipelines.store.base import ID_COLUMN, STORE_CRS

DEFAULT_ROUTE_COLOR = "#FFFFFF"  # GTFS defaults: white route, black text
DEFAULT_TEXT_COLOR = "#000000"
MAX_HOUR = 47
_HEX = re.compile(r"^#?([0-9A-Fa-f]{6})$")


def route_ids_per_stop(feed: GtfsFeed) -> pd.Series:
    """stop_id -> 'r1,r2' for every stop (stations gather their children's routes)."""
    calls = feed.stop_times[["trip_id", "stop_id"]].merge(feed.trips[["trip_id", "route_id"]], on="trip_id")
    pairs = calls[["stop_id", "route_id"]].drop_duplicates()
    parent = feed.stops.set_index("stop_id")["parent_station"]
    up = pairs.assign(stop_id=pairs["stop_id"].map(parent)).dropna()
    up = up[up["stop_id"] != ""]
    pairs = pd.concat([pairs, up]).drop_duplicates()
    joined = pairs.sort_values("route_id").groupby("stop_id")["route_id"].agg(",".join)
    return joined.reindex(feed.stops["stop_id"]).fillna("")


def stops_layer(feed: GtfsFeed) -> gpd.GeoDataFrame:
    s = feed.stops
    lat, lon = s["stop_lat"].copy(), s["stop_lon"].copy()
    # Generic nodes and boarding areas may omit coordinates: place them at their station.
    missing = lat.isna() | lon.isna()
    if missing.any():
        by_id = s.set_index("stop_id")
        parents = s.loc[missing, "parent_station"]
        lat[missing] = parents.map(by_id["stop_lat"]).to_numpy()
        lon[missing] = parents.map(by_id["stop_lon"]).to_numpy()
    geometry = gpd.points_from_xy(lon, lat)
    geometry[(lat.isna() | lon.isna()).to_numpy()] = None
    return gpd.GeoDataFrame({
        ID_COLUMN: s["stop_id"].to_numpy(),
        "stop_name": s["stop_name"].to_numpy(),
        "stop_code": s["stop_code"].to_numpy(),
        "location_type": s["location_type"].to_numpy(),
        "parent_station": s["parent_station"].to_numpy(),
        "wheelchair_boarding": s["wheelchair_boarding"].to_numpy(),
        "routes": route_ids_per_stop(feed).to_numpy(),
    }, geometry=geometry, crs=STORE_CRS)


def _colour(value: str, default: str) -> tuple[str, bool]:
    """'#RRGGBB' from a GTFS colour; (default, False) for a blank or malformed one."""
    m = _HEX.match(value or "")
    if m:
        return "#" + m.group(1).upper(), True
    return default, not value


def _shape_lines(feed: GtfsFeed) -> pd.Series:
    """shape_id -> LineString, for shapes with at least two points."""
    sh = feed.shapes
    if sh is None or sh.empty:
        return pd.Series([], dtype=object)
    sizes = sh.groupby("shape_id", sort=True).size()
    ok = sh[sh["shape_id"].isin(sizes[sizes >= 2].index)]
    codes, ids = pd.factorize(ok["shape_id"], sort=False)
    lines = shapely.linestrings(ok[["shape_pt_lon", "shape_pt_lat"]].to_numpy(), indices=codes)
    return pd.Series(lines, index=ids)


def _stop_pattern_lines(feed: GtfsFeed, trip_ids: pd.Index) -> pd.DataFrame:
    """(route_id, line) for the distinct stop sequences of the given trips."""
    st = feed.stop_times[feed.stop_times["trip_id"].isin(trip_ids)]
    if st.empty:
        return pd.DataFrame({"route_id": [], "line": []})
    patterns = st.groupby("trip_id", sort=False)["stop_id"].agg(tuple).rename("pattern").reset_index()
    patterns = patterns.merge(feed.trips[["trip_id", "route_id"]], on="trip_id")
    patterns = patterns.drop_duplicates(["route_id", "pattern"])
    xy = feed.stops.set_index("stop_id")[["stop_lon", "stop_lat"]]
    rows = []
    for route_id, pattern in zip(patterns["route_id"], patterns["pattern"]):
        coords = xy.loc[list(pattern)].dropna().to_numpy()
        if len(coords) >= 2:
            rows.append((route_id, shapely.LineString(coords)))
    return pd.DataFrame(rows, columns=["route_id", "line"])


def routes_layer(feed: GtfsFeed) -> tuple[gpd.GeoDataFrame, list[str]]:
    warnings: list[str] = []
    trips = feed.trips
    shape_lines = _shape_lines(feed)
    has_shape = trips["shape_id"].isin(shape_lines.index)
    named_but_missing = (trips["shape_id"] != "") & ~has_shape
    if named_but_missing.any():
        warnings.append(f"{feed.source}: {int(named_but_missing.sum())} trip(s) name a shape_id with fewer than "
                        f"two points in shapes.txt (first: {trips.loc[named_but_missing, 'shape_id'].iloc[0]!r}); "
                        "their lines follow their stops instead")
    from_shapes = trips.loc[has_shape, ["route_id", "shape_id"]].drop_duplicates()
    from_shapes = from_shapes.assign(line=from_shapes["shape_id"].map(shape_lines))[["route_id", "line"]]
    from_stops = _stop_pattern_lines(feed, pd.Index(trips.loc[~has_shape, "trip_id"]))
    parts = pd.concat([from_shapes.assign(kind="shapes"), from_stops.assign(kind="stops")], ignore_index=True)

    r = feed.routes
    geoms, sources = [], []
    grouped = {rid: g for rid, g in parts.groupby("route_id", sort=False)}
    for rid in r["route_id"]:
        g = grouped.get(rid)
        if g is None:
            geoms.append(None)
            sources.append("none")
            continue
        geoms.append(shapely.MultiLineString(list(g["line"])))
        sources.append("+".join(sorted(set(g["kind"]))))  # 'shapes', 'stops' or 'shapes+stops'
    no_geom = [rid for rid, s in zip(r["route_id"], sources) if s == "none"]
    if no_geom:
        warnings.append(f"{feed.source}: {len(no_geom)} route(s) have no trips with a shape or two located stops "
                        f"(first: {no_geom[0]!r}); they are published without geometry")

    colours = [_colour(v, DEFAULT_ROUTE_COLOR) for v in r["route_color"]]
    text_colours = [_colour(v, DEFAULT_TEXT_COLOR) for v in r["route_text_color"]]
    bad = [v for v, (_, ok) in zip(list(r["route_color"]) + list(r["route_text_color"]), colours + text_colours)
           if not ok]
    if bad:
        warnings.append(f"{feed.source}: routes.txt: {len(bad)} colour(s) are not 6-digit hex (first: {bad[0]!r}); "
                        "the GTFS default was used")
    gdf = gpd.GeoDataFrame({
        ID_COLUMN: r["route_id"].to_numpy(),
        "route_short_name": r["route_short_name"].to_numpy(),
        "route_long_name": r["route_long_name"].to_numpy(),
        "route_type": r["route_type"].to_numpy(),
        "route_color": [c for c, _ in colours],
        "route_text_color": [c for c, _ in text_colours],
        "agency_id": r["agency_id"].to_numpy(),
        "geometry_source": sources,
    }, geometry=gpd.GeoSeries(geoms, crs=STORE_CRS), crs=STORE_CRS)
    return gdf, warnings


def departure_times(feed: GtfsFeed, trip_ids: frozenset[str]) -> pd.DataFrame:
    """(stop_id, seconds) of every departure of the given trips; blank times interpolated."""
    st = feed.stop_times[feed.stop_times["trip_id"].isin(trip_ids)]
    if st.empty:
        return pd.DataFrame({"stop_id": [], "seconds": []})
    sec = st["departure_s"].fillna(st["arrival_s"])
    trip = st["trip_id"]
    # stop_times are sorted by trip and sequence: interpolate inside each trip only,
    # i.e. where a timed stop exists both before and after within the same trip.
    inside = sec.groupby(trip).ffill().notna() & sec.groupby(trip).bfill().notna()
    sec = sec.interpolate(limit_area="inside").where(inside)
    last = ~trip.duplicated(keep="last")
    keep = ~last & sec.notna()
    return pd.DataFrame({"stop_id": st.loc[keep, "stop_id"].to_numpy(), "seconds": sec[keep].to_numpy()})


def departures_layer(feed: GtfsFeed, day: ServiceDay, stops: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, list[str]]:
    warnings: list[str] = []
    dep = departure_times(feed, day.trip_ids)
    hours = (dep["seconds"] // 3600).astype("int64")
    late = hours > MAX_HOUR
    if late.any():
        warnings.append(f"{feed.source}: {int(late.sum())} departure(s) at or after 48:00:00 were not counted")
    counts = (pd.DataFrame({"stop_id": dep["stop_id"], "hour": hours})[~late]
              .groupby(["stop_id", "hour"]).size().rename("count").reset_index())
    where = stops.set_index(ID_COLUMN).geometry
    geometry = gpd.GeoSeries(counts["stop_id"].map(where).to_numpy(), crs=STORE_CRS)
    gdf = gpd.GeoDataFrame({
        ID_COLUMN: counts["stop_id"] + "@" + counts["hour"].map("{:02d}".format),
        "stop_id": counts["stop_id"].to_numpy(),
        "hour": counts["hour"].astype("int64").to_numpy(),
        "count": counts["count"].astype("int64").to_numpy(),
        "service_date": day.label,
    }, geometry=geometry, crs=STORE_CRS)
    return gdf, warnings
