"""One tile-source abstraction behind every backend (PMTiles archive, PostGIS ST_AsMVT)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: No tile, built ahead (PMTiles) or made per request (PostGIS), holds more uncompressed MVT
#: than this; the smallest features of a fuller tile are left out at that zoom.
MAX_TILE_BYTES = 500_000


@dataclass(frozen=True)
class TileSetInfo:
    layer: str
    minzoom: int
    maxzoom: int
    bounds: tuple[float, float, float, float]  # lon/lat
    center: tuple[float, float, int]
    vector_layers: list[dict]  # TileJSON 'vector_layers' entries
    etag_seed: str  # changes whenever the tiles change (archive mtime, layer version)


class TileSource(Protocol):
    """Vector tiles of one layer in WebMercatorQuad (z/x/y, XYZ row order)."""

    def info(self) -> TileSetInfo: ...

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """Uncompressed MVT bytes, or None when the tile holds no data."""
