"""The warm tile cache: gzip-compressed tiles, least recently used out first, bounded in bytes.

Keys are tile ETags, which follow the layer's version (PostGIS) or archive (PMTiles). When a
layer is seen with a new version its older entries are dropped at once, so a republished
layer's tiles are made anew and the old ones free their room. Counters (hits, misses, bytes,
entries, evictions, invalidations) are served by ``/stats`` and written at shutdown.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

#: Default bound of the cache (``server.tile_cache_mb`` in citytwin.yaml), in megabytes.
DEFAULT_MB = 256.0
#: A tile larger than this share of the bound is served but not kept: one tile must not flush
#: the whole cache.
_LARGEST_SHARE = 8

_CACHES: weakref.WeakSet[TileCache] = weakref.WeakSet()


@dataclass
class _Counters:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    invalidated: int = 0


class TileCache:
    """LRU of compressed tiles keyed by ETag; b'' marks an empty tile."""

    def __init__(self, max_bytes: int = int(DEFAULT_MB * 1_000_000)):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[str, bytes]] = OrderedDict()  # etag -> (layer, tile)
        self._versions: dict[str, str] = {}  # layer -> the version its entries belong to
        self._size = 0
        self._counts = _Counters()
        self._lock = threading.Lock()
        _CACHES.add(self)

    def get(self, layer: str, version: str, etag: str) -> bytes | None:
        """The tile stored under ``etag``, counting a hit or a miss."""
        with self._lock:
            self._follow(layer, version)
            item = self._items.get(etag)
            if item is None:
                self._counts.misses += 1
                return None
            self._items.move_to_end(etag)
            self._counts.hits += 1
            return item[1]

    def put(self, layer: str, version: str, etag: str, data: bytes) -> None:
        if len(data) > self.max_bytes // _LARGEST_SHARE:
            return
        with self._lock:
            self._follow(layer, version)
            old = self._items.pop(etag, None)
            if old is not None:
                self._size -= len(old[1])
            self._items[etag] = (layer, data)
            self._size += len(data)
            while self._size > self.max_bytes and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self._size -= len(dropped)
                self._counts.evictions += 1

    def _follow(self, layer: str, version: str) -> None:
        """Drop ``layer``'s entries when its version changed (called under the lock)."""
        known = self._versions.get(layer)
        self._versions[layer] = version
        if known is None or known == version:
            return
        stale = [etag for etag, (owner, _) in self._items.items() if owner == layer]
        for etag in stale:
            self._size -= len(self._items.pop(etag)[1])
        self._counts.invalidated += len(stale)

    def stats(self) -> dict[str, int | float]:
        with self._lock:
            c = self._counts
            asked = c.hits + c.misses
            return {"hits": c.hits, "misses": c.misses, "hit_rate": round(c.hits / asked, 4) if asked else 0.0,
                    "bytes": self._size, "max_bytes": self.max_bytes, "entries": len(self._items),
                    "evictions": c.evictions, "invalidated": c.invalidated}


def summary() -> str:
    """One line per cache of this process, for the server's log."""
    lines = []
    for cache in list(_CACHES):
        s = cache.stats()
        lines.append(f"tile cache: {s['hits']} hits, {s['misses']} misses (hit rate {s['hit_rate']:.1%}), "
                     f"{s['entries']} tiles in {s['bytes']} of {s['max_bytes']} bytes, {s['evictions']} evicted, "
                     f"{s['invalidated']} dropped for republished layers")
    return "\n".join(lines)
