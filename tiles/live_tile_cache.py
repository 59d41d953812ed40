"""Live tiles kept per server process: one snapshot per layer, its tiles made a zoom at a time.

A GTFS-Realtime feed rewrites every vehicle every 10 s, so after each feed every live tile a
client holds is stale at once. Encoding each requested tile alone (a read of its items and a
per-feature encoding) cost about 30 ms of GIL per tile, and the hundred-odd tiles clients ask
after each feed held up every other request of the server. Now the first request after a
write reads the layer once into a snapshot (tiles.live_mvt.LiveFrame) and makes every tile
of its zoom in one vectorised pass; requests that arrive meanwhile for the same layer wait
for that pass instead of repeating it. A zoom too costly to make whole is made one tile at
a time. The snapshot serves until the layer's version changes (every write bumps it) or its
first item expires. Kept tiles are bounded in bytes, the least recently used zoom going first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from tiles.live_mvt import ZOOM_COST, LiveFrame, LiveTile, encode

MAX_BYTES = 64 * 1024 * 1024
_EMPTY = LiveTile(b"", float("inf"))  # nothing reaches the tile: only a write can change that


@dataclass
class _Snapshot:
    version: str
    frame: LiveFrame
    blocks: dict[tuple, dict[tuple[int, int], LiveTile]] = field(default_factory=dict)  # (z,) or (z, x, y)


class LiveTileCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._snapshots: dict[str, _Snapshot] = {}
        self._used: OrderedDict[tuple, int] = OrderedDict()  # (layer, block) -> bytes, least recent first
        self._lock = threading.Lock()  # the dicts above; held for lookups only
        self._building: dict[str, threading.Lock] = {}  # per layer: one snapshot or zoom made at a time

    def tile(self, layer: str, version: str, now: float, read: Callable[[], LiveFrame],
             z: int, x: int, y: int) -> LiveTile:
        """Tile (z, x, y) of ``layer`` as of ``version`` (read before the items, so a write in between
        can only make the tile newer than its version says); ``read`` gives the layer's items."""
        hit = self._lookup(layer, version, now, z, x, y)
        if hit is not None:
            return hit
        with self._lock:
            building = self._building.setdefault(layer, threading.Lock())
        with building:  # a request that waited here finds what the one before it made
            hit = self._lookup(layer, version, now, z, x, y)
            if hit is not None:
                return hit
            with self._lock:
                snap = self._snapshots.get(layer)
            if snap is None or snap.version != version or now >= snap.frame.valid_until:
                snap = _Snapshot(version, read())
                with self._lock:
                    self._drop(layer)
                    self._snapshots[layer] = snap
            block = (z,) if snap.frame.zoom_cost(z) <= ZOOM_COST else (z, x, y)
            tiles = encode(snap.frame, z, None if len(block) == 1 else (x, y))
            with self._lock:
                if self._snapshots.get(layer) is snap:
                    self._keep(layer, snap, block, tiles)
            return tiles.get((x, y), _EMPTY)

    def _lookup(self, layer: str, version: str, now: float, z: int, x: int, y: int) -> LiveTile | None:
        with self._lock:
            snap = self._snapshots.get(layer)
            if snap is None or snap.version != version or now >= snap.frame.valid_until:
                return None
            for block in ((z,), (z, x, y)):
                tiles = snap.blocks.get(block)
                if tiles is not None:
                    self._used.move_to_end((layer, block))
                    return tiles.get((x, y), _EMPTY)
            return None

    def _keep(self, layer: str, snap: _Snapshot, block: tuple, tiles: dict[tuple[int, int], LiveTile]) -> None:
        size = sum(len(t.data) for t in tiles.values())
        if size > self.max_bytes:
            return
        snap.blocks[block] = tiles
        self._used[(layer, block)] = size
        total = sum(self._used.values())
        while total > self.max_bytes:
            (old_layer, old_block), old_size = self._used.popitem(last=False)
            self._snapshots[old_layer].blocks.pop(old_block, None)
            total -= old_size

    def _drop(self, layer: str) -> None:
        """Forget the layer's previous snapshot and its tiles."""
        if self._snapshots.pop(layer, None) is not None:
            for key in [k for k in self._used if k[0] == layer]:
                del self._used[key]

    def kept_bytes(self) -> int:
        with self._lock:
            return sum(self._used.values())
