"""Transit from GTFS: one feed .zip becomes three layers, ``<name>_stops``,
``<name>_routes`` and ``<name>_departures`` (see pipelines.steps.transit_layers).

Catalog shape: each of the three layers is an ordinary catalog entry with kind
``transit`` and the *same* GTFS zip as its source, e.g.::

    caltrain_stops:      {kind: transit, source: data/caltrain.zip, minzoom: 10}
    caltrain_routes:     {kind: transit, source: data/caltrain.zip, minzoom: 8}
    caltrain_departures: {kind: transit, source: data/caltrain.zip, minzoom: 12}

So every layer stays self-describing, and everything that iterates catalog layers
(build's tiling, the API's collections) needs no special case. ``citytwin build`` reads
the feed once per prefix and publishes all three. The three frames are prepared in full
before anything is written, so a bad feed leaves the store untouched.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd

from geo.errors import CatalogError
from geo.names import check_layer_name
from pipelines.catalog import Catalog, edit_catalog
from pipelines.project import project_store, relative_to_project
from pipelines.readers.gtfs import read_gtfs
from pipelines.steps.service_days import representative_day
from pipelines.steps.transit_layers import departures_layer, routes_layer, stops_layer
from pipelines.store import Store

PARTS = ("stops", "routes", "departures")
_ZOOMS = {"stops": (10, 16), "routes": (8, 15), "departures": (12, 15)}
_DESCRIPTIONS = {
    "stops": "Stops and stations of the GTFS feed; 'routes' lists the route_ids calling there.",
    "routes": "One line per GTFS route, from shapes.txt (else through its stops), coloured by route_color.",
    "departures": "Departures per stop and hour (0-47: GTFS times pass 24:00) on the feed's busiest weekday; "
                  "service_date says which.",
}


def layer_names(prefix: str) -> dict[str, str]:
    return {part: check_layer_name(f"{prefix}_{part}") for part in PARTS}


def split_layer_name(name: str) -> str | None:
    """The feed prefix of a transit layer name ('caltrain' for 'caltrain_routes'), else None."""
    for part in PARTS:
        if name.endswith(f"_{part}") and len(name) > len(part) + 1:
            return name[: -len(part) - 1]
    return None


@dataclass
class TransitReport:
    prefix: str
    source: str
    counts: dict[str, int] = field(default_factory=dict)  # layer -> features
    service: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        layers = ", ".join(f"'{name}' {n}" for name, n in self.counts.items())
        lines = [f"transit '{self.prefix}' from {self.source}: published {layers} features in {self.seconds:.1f}s",
                 f"  departures: {self.service}"]
        return "\n".join(lines + [f"  warning: {w}" for w in self.warnings])


def prepare_transit(path: Path, prefix: str, encoding: str | None = None
                    ) -> tuple[dict[str, gpd.GeoDataFrame], TransitReport]:
    """Read and check the feed and build the three layers; nothing is written."""
    names = layer_names(prefix)
    feed = read_gtfs(path, encoding=encoding)
    stops = stops_layer(feed)
    routes, route_warnings = routes_layer(feed)
    day = representative_day(feed)
    departures, dep_warnings = departures_layer(feed, day, stops)
    frames = {names["stops"]: stops, names["routes"]: routes, names["departures"]: departures}
    report = TransitReport(prefix=prefix, source=str(path), service=day.basis,
                           counts={n: len(g) for n, g in frames.items()},
                           warnings=feed.warnings + route_warnings + dep_warnings)
    return frames, report


def ingest_transit(store: Store, prefix: str, path: Path, encoding: str | None = None) -> TransitReport:
    t0 = time.perf_counter()
    frames, report = prepare_transit(path, prefix, encoding)
    for name, gdf in frames.items():
        store.publish(name, gdf)
    report.seconds = time.perf_counter() - t0
    return report


def catalog_feed(catalog: Catalog, name: str) -> tuple[str, Path] | None:
    """(prefix, zip) when catalog layer ``name`` is part of a GTFS feed, else None."""
    cfg = catalog.layer(name)
    paths = catalog.source_paths(name)
    if cfg.kind != "transit" or len(paths) != 1 or paths[0].suffix.lower() != ".zip":
        return None
    prefix = split_layer_name(name)
    if prefix is None:
        raise CatalogError(
            f"{catalog.root / 'citytwin.yaml'}: layer '{name}' has a GTFS source, which publishes three layers; "
            f"name them {name}_stops, {name}_routes and {name}_departures (or run "
            f"'citytwin ingest {cfg.source[0]} --layer {name}')")
    for other in layer_names(prefix).values():
        if other in catalog.layers and catalog.layers[other].source and catalog.source_paths(other) != paths:
            raise CatalogError(f"{catalog.root / 'citytwin.yaml'}: layers '{name}' and '{other}' come from one "
                               "GTFS feed but name different sources; give them the same source")
    return prefix, paths[0]


def ingest_transit_into_project(project: Path, path: Path, prefix: str, *, kind: str | None = None,
                                crs: str | None = None, encoding: str | None = None) -> TransitReport:
    """``citytwin ingest feed.zip --layer PREFIX``: publish the three layers, add their catalog entries."""
    if kind not in (None, "transit"):
        raise CatalogError(f"--kind {kind}: {path} is a GTFS feed, which is published as kind transit")
    if crs is not None:
        raise CatalogError(f"--crs {crs}: a GTFS feed is WGS84 (EPSG:4326) by definition; drop --crs")
    check_layer_name(prefix)
    changes: list[str] = []
    with edit_catalog(project) as edit:  # the feed and encoding given become the entries the next build reads
        source = relative_to_project(Path(path), edit.catalog.root)
        for part, name in layer_names(prefix).items():
            values: dict[str, object] = {"encoding": encoding} if encoding else {}
            if name not in edit.catalog.layers:
                values = {"kind": "transit", "source": source, "description": _DESCRIPTIONS[part],
                          "minzoom": _ZOOMS[part][0], "maxzoom": _ZOOMS[part][1], **values}
            elif edit.catalog.source_paths(name) != [Path(path).resolve()]:
                values["source"] = source
            changes += [f"'{name}' {change}" for change in edit.set_layer(name, values)]
        catalog = edit.check()
        encoding = catalog.layers[layer_names(prefix)["stops"]].encoding  # as the next build will read it
        report = ingest_transit(project_store(catalog), prefix, Path(path), encoding)
    if changes:
        report.warnings.append(f"updated {catalog.root / 'citytwin.yaml'}: {'; '.join(changes)}")
    return report
