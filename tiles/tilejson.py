"""TileJSON 3.0.0 documents for a tile set (https://github.com/mapbox/tilejson-spec)."""
from __future__ import annotations

from tiles.source import TileSetInfo

TILEJSON_VERSION = "3.0.0"


def tilejson(info: TileSetInfo, tiles_url_template: str, name: str | None = None,
             description: str | None = None, attribution: str | None = None) -> dict:
    """The TileJSON for ``info``; ``tiles_url_template`` holds {z}, {x} and {y}."""
    for part in ("{z}", "{x}", "{y}"):
        if part not in tiles_url_template:
            raise ValueError(f"tiles URL template {tiles_url_template!r} lacks {part}")
    doc: dict = {
        "tilejson": TILEJSON_VERSION,
        "name": name or info.layer,
        "scheme": "xyz",
        "tiles": [tiles_url_template],
        "minzoom": info.minzoom,
        "maxzoom": info.maxzoom,
        "bounds": [float(b) for b in info.bounds],
        "center": [float(info.center[0]), float(info.center[1]), int(info.center[2])],
        "vector_layers": [_vector_layer(v, info) for v in info.vector_layers],
    }
    if description:
        doc["description"] = description
    if attribution:
        doc["attribution"] = attribution
    return doc


def _vector_layer(entry: dict, info: TileSetInfo) -> dict:
    # TileJSON 3.0.0 requires id and fields; zooms default to the tile set's.
    out = {
        "id": entry["id"],
        "fields": dict(entry.get("fields", {})),
        "minzoom": int(entry.get("minzoom", info.minzoom)),
        "maxzoom": int(entry.get("maxzoom", info.maxzoom)),
    }
    if entry.get("description"):
        out["description"] = entry["description"]
    return out
