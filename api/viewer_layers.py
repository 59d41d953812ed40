"""GET /viewer/layers.json: what the map viewer draws and where it opens, from the catalog.

Every catalog layer with vector tiles is listed in catalog order with its title, kind,
geometry, extent, zooms, TileJSON URL (live layers: their tile URL template), a colour and
the MapLibre layers that draw it by kind (api.kind_styles). ``bbox`` is the union of the
stored layers' extents and ``minzoom`` the lowest zoom at which a layer shown at first has
tiles, so the viewer opens on the data wherever it is. Built once at start, from the same
store snapshot as the collections pygeoapi lists.
"""
from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.kind_styles import PALETTE, geometry_family, kind_layers, label_field
from api.tile_sources import TileRegistry
from pipelines.catalog import Catalog
from pipelines.store import Store
from pipelines.transit import split_layer_name
from tiles.live_mvt import MAX_ZOOM as LIVE_MAX_ZOOM

PATH = "/viewer/layers.json"
TILEJSON = "/collections/{}/tiles/WebMercatorQuad/tilejson.json"
LIVE_TILES = "/live/{}/tiles/{{z}}/{{x}}/{{y}}"


def viewer_layers(catalog: Catalog, store: Store, registry: TileRegistry) -> dict:
    stored = set(store.layers())
    vehicles = {rt.vehicles_layer for rt in catalog.realtime.values()}  # drawn in the transit style
    alerts = {rt.alerts_layer for rt in catalog.realtime.values()}
    # a feed's tiles are no-cache, so MapLibre never asks for them again by itself: the viewer
    # refreshes them at the feed's interval
    refresh = {name: rt.interval_s for rt in catalog.realtime.values()
               for name in (rt.vehicles_layer, rt.alerts_layer) if name}
    layers = []
    for name, cfg in catalog.layers.items():
        title = cfg.title or name.replace("_", " ").capitalize()
        colour = PALETTE[len(layers) % len(PALETTE)]
        if cfg.kind == "live":  # items come and go: any geometry, no extent known at start
            layers.append({
                "id": name, "title": title, "kind": cfg.kind, "geometry": None, "colour": colour, "count": None,
                "bbox": None, "minzoom": cfg.minzoom, "maxzoom": LIVE_MAX_ZOOM, "visible": True,
                "tiles": LIVE_TILES.format(name),
                "style": (kind_layers(name, "availability", "point", colour, title, label="free") if cfg.availability
                          else kind_layers(name, "vehicles", "point", colour, title, label="route_short_name")
                          if name in vehicles else kind_layers(name, "alerts", None, colour, title) if name in alerts
                          else kind_layers(name, cfg.kind, None, colour, title)),
                "refresh_s": refresh.get(name),
            })
            continue
        if name not in stored or cfg.kind == "raster" or not registry.available(name):
            continue
        info = store.info(name)
        geometry = geometry_family(info.geometry_type)
        # Departures stack one point per stop and hour on the stops: listed, off at first.
        visible = not (cfg.kind == "transit" and name.endswith("_departures") and split_layer_name(name))
        bounds = [round(float(b), 7) for b in info.bounds]
        layers.append({
            "id": name, "title": title, "kind": cfg.kind, "geometry": geometry, "colour": colour,
            "count": info.count, "bbox": bounds if all(math.isfinite(b) for b in bounds) else None,
            "minzoom": cfg.minzoom, "maxzoom": cfg.maxzoom, "visible": visible,
            "tilejson": TILEJSON.format(name),
            "style": kind_layers(name, cfg.kind, geometry, colour, title,
                                 label=label_field(list(info.fields)), visible=visible),
        })
    return {"bbox": _union([entry["bbox"] for entry in layers if entry["bbox"]]),
            "minzoom": min((entry["minzoom"] for entry in layers if entry["visible"] and entry["bbox"]), default=None),
            "layers": layers}


def _union(boxes: list[list[float]]) -> list[float] | None:
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def viewer_layers_route(doc: dict) -> Route:
    async def layers(request: Request) -> Response:
        return JSONResponse(doc, headers={"Cache-Control": "no-cache"})

    return Route(PATH, layers, methods=["GET", "HEAD"])
