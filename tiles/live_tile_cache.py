"""Encoded live tiles kept per server process until the layer changes.

A live tile is encoded on the fly (tiles.live_mvt), which costs a CPU-bound fraction of a
second for a low-zoom tile holding hundreds of vehicles; under tile load that work held the
GIL the next request (and the poller's publication) waited for. A tile is now encoded once
per layer version (bumped by every write, pipelines.live) and served from here until the
layer changes or the first item in it expires. Bounded by count, oldest use dropped first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_TILES = 256


@dataclass(frozen=True)
class CachedTile:
    version: str
    data: bytes
    valid_until: float  # the soonest expiry of the items in it


class LiveTileCache:
    def __init__(self, max_tiles: int = MAX_TILES) -> None:
        self.max_tiles = max_tiles
        self._tiles: OrderedDict[tuple, CachedTile] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, version: str, now: float) -> CachedTile | None:
        """The tile at ``key`` if it was encoded from ``version`` and holds no expired item."""
        with self._lock:
            hit = self._tiles.get(key)
            if hit is None or hit.version != version or now >= hit.valid_until:
                return None
            self._tiles.move_to_end(key)
            return hit

    def put(self, key: tuple, tile: CachedTile) -> None:
        with self._lock:
            self._tiles[key] = tile
            self._tiles.move_to_end(key)
            while len(self._tiles) > self.max_tiles:
                self._tiles.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tiles)
