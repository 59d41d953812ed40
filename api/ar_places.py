"""/ar/anchors for places with live availability (parking, EV chargers): where to draw them, and their counts.

The places are read from their live layers at each request (they change by the minute), and
stand on the roof of the building they are in (a rooftop car park) or on the ground model.
"""
from __future__ import annotations

import numpy as np

from api.ar_index import ArIndex, ground_function, surface
from api.errors import public
from pipelines.catalog import Catalog
from pipelines.live import LiveLayer, LiveStoreError

AVAILABILITY_FIELDS = ("capacity", "free", "status", "updated")


def availability_layers(catalog: Catalog) -> dict[str, LiveLayer]:
    return {name: LiveLayer(catalog, name) for name, cfg in catalog.layers.items()
            if cfg.kind == "live" and cfg.availability is not None}


def availability_anchors(layers: dict[str, LiveLayer], index: ArIndex, mode: str,
                         bbox: tuple[float, float, float, float], limit: int, notes: list[str]) -> list[dict]:
    """Up to ``limit`` current places inside ``bbox`` as anchors (the caller reports truncation). A layer
    whose database cannot be read is left out with a note: the other anchors still answer."""
    found: list[tuple[str, dict]] = []
    for name, layer in layers.items():
        try:
            found += [(name, f) for f in layer.features(bbox, limit)]
        except LiveStoreError as exc:
            notes.append(f"availability layer {name!r} left out: {public(str(exc))}")
    found = found[:limit]
    if not found:
        return []
    lon = np.array([f["geometry"]["coordinates"][0] for _, f in found], dtype=float)
    lat = np.array([f["geometry"]["coordinates"][1] for _, f in found], dtype=float)
    x, y = index.frame.xy(lon, lat)
    ground = index.grounds[mode]
    height, roof = surface(ground.blocks, np.column_stack([x, y]), ground_function(index, mode)(lon, lat))
    out = []
    for k, (name, f) in enumerate(found):
        props = f["properties"]
        out.append({"type": "availability", "id": str(f["id"]), "layer": name, "name": props.get("name"),
                    "category": props.get("category"), "lon": round(float(lon[k]), 7),
                    "lat": round(float(lat[k]), 7), "height": round(float(height[k]), 3) + 0.0,
                    "surface": "rooftop" if roof[k] else "terrain",
                    **{key: props.get(key) for key in AVAILABILITY_FIELDS}})
    return out
