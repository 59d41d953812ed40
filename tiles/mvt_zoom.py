"""Every tile of one zoom level, encoded as MVT by our own engine.

(feature, tile) pairs are made from bounding boxes and sorted by tile, then by drawing
priority (largest first, then input order, so output is deterministic). Pairs are
encoded in batches of whole tiles, twice:

1. sizes only: each pair's exact feature-message bytes plus the value-table bytes it adds
   to its tile. A tile's running total is then its exact size for that many features, so a
   feature past the budget in any of its tiles is left out of the zoom (the smallest go);
2. bytes: the kept pairs become feature messages, each tile a Layer, each gzip-compressed
   (ISA-L, mtime 0: same bytes every build).

Leaving features out only shrinks the tiles they were in, so no tile ends over the limit
and nothing is encoded twice to find out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from isal import igzip

from tiles.mvt_bytes import interleave, ragged_take, varint_len, varints
from tiles.mvt_geometry import (BUFFER, EXTENT, HALF_WORLD, POINT, POLYGON, EncodedGeometry, encode_pairs,
                                geometry_family, tile_size)
from tiles.mvt_values import ValueTable, tile_tags

SIMPLIFY_PX = 1.0  # simplification tolerance below maxzoom, in tile units
BATCH_PAIRS = 25_000  # pairs encoded at once: bounds the byte-level index arrays (~100 B/pair each);
# smaller runs stay in the CPU caches: the 600k city's zooms took 14.6 s against 18.2 s with 100,000 (two threads)
_GZIP_LEVEL = 3  # ISA-L: ~8x less CPU than zlib 6 for ~8 % more bytes (real tiles, 100k and 600k cities)
_HEAD_SLACK = 1.5  # encode pairs whose guessed running size before them is under this share of the budget
_GUESS_PREFIX = 4096  # pairs per tile guessed at first (a z10 tile of buildings reaches the budget in ~10,000)


@dataclass(frozen=True)
class ZoomTiles:
    tiles: list[tuple[int, int, int, bytes, int]]  # (z, x, y, gzip MVT, uncompressed bytes)
    features_written: int  # distinct features with geometry in some written tile
    dropped_for_size: int  # features left out by the tile budget
    written: np.ndarray  # per input feature: has geometry in some kept tile (of any tile, not only those returned)
    over: np.ndarray  # per input feature: left out of this zoom by the tile budget


@dataclass(frozen=True)
class LayerFrame:
    """The bytes every tile of a layer shares: name, keys, extent, version."""
    head: bytes
    tail: bytes

    @classmethod
    def of(cls, layer: str, keys: list[str]) -> LayerFrame:
        name = layer.encode("utf-8")
        key_fields = b"".join(b"\x1a" + _varint(len(k.encode("utf-8"))) + k.encode("utf-8") for k in keys)
        return cls(b"\x0a" + _varint(len(name)) + name, key_fields + b"\x28" + _varint(EXTENT) + b"\x78\x02")

    def overhead(self, max_tile_bytes: int) -> int:
        return 1 + len(_varint(max_tile_bytes)) + len(self.head) + len(self.tail)


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zoom_tolerance(z: int, maxzoom: int) -> float:
    """Simplification tolerance of zoom ``z`` in metres: about one tile pixel, none at ``maxzoom``."""
    return 0.0 if z == maxzoom else SIMPLIFY_PX * tile_size(z) / EXTENT


def first_drawn_zoom(merc: np.ndarray, maxzoom: int) -> np.ndarray:
    """Per Mercator geometry, the first zoom (0 to ``maxzoom``) at which encode_zoom draws it, or
    ``maxzoom + 1``: simplified with zoom_tolerance and quantised, a feature whose every part
    collapses is too small to draw. Tried in the tile of its bbox centre (the quantisation grid
    is the same in every tile; only where clipping cuts it could another tile differ)."""
    family = geometry_family(merc)
    out = np.full(len(merc), maxzoom + 1, dtype=np.int16)
    todo = np.flatnonzero(family > 0)
    for z in range(maxzoom + 1):
        if not len(todo):
            break
        size, last = tile_size(z), (1 << z) - 1
        b = shapely.bounds(merc[todo]).reshape(-1, 4)
        tx = np.clip(np.floor(((b[:, 0] + b[:, 2]) / 2 + HALF_WORLD) / size), 0, last).astype(np.int64)
        ty = np.clip(np.floor((HALF_WORLD - (b[:, 1] + b[:, 3]) / 2) / size), 0, last).astype(np.int64)
        # Simplifying keeps a subset of the vertices: a bbox that rounds to one row or column of
        # tile units rounds the feature flat too, so only the others are encoded.
        left, top = tx * size - HALF_WORLD, HALF_WORLD - ty * size
        wide = np.rint((b[:, 0] - left) * EXTENT / size) != np.rint((b[:, 2] - left) * EXTENT / size)
        tall = np.rint((top - b[:, 1]) * EXTENT / size) != np.rint((top - b[:, 3]) * EXTENT / size)
        fam = family[todo]
        maybe = np.flatnonzero(np.where(fam == POLYGON, wide & tall, (fam == POINT) | wide | tall))
        tol = zoom_tolerance(z, maxzoom)
        geoms = merc[todo[maybe]]
        geoms = shapely.simplify(geoms, tol, preserve_topology=True) if tol else geoms
        drawn = np.zeros(len(todo), dtype=bool)
        drawn[maybe] = encode_pairs(geoms, fam[maybe], tx[maybe], ty[maybe], z).lengths > 0
        out[todo[drawn]] = z
        todo = todo[~drawn]
    return out


def tile_ranges(bounds: np.ndarray, z: int, buffer_units: float) -> tuple[np.ndarray, ...]:
    """Inclusive tile index ranges (x0, y0, x1, y1) touched by each Mercator bbox."""
    size = tile_size(z)
    pad = buffer_units * size / EXTENT
    last = (1 << z) - 1
    x0 = np.floor((bounds[:, 0] - pad + HALF_WORLD) / size)
    x1 = np.floor((bounds[:, 2] + pad + HALF_WORLD) / size)
    y0 = np.floor((HALF_WORLD - bounds[:, 3] - pad) / size)
    y1 = np.floor((HALF_WORLD - bounds[:, 1] + pad) / size)
    return tuple(np.clip(a, 0, last).astype(np.int64) for a in (x0, y0, x1, y1))


def expand_to_tiles(bounds: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray]:
    """(feature index, tile key) pairs, one per tile each feature's buffered bbox touches."""
    x0, y0, x1, y1 = tile_ranges(bounds, z, BUFFER)
    w = x1 - x0 + 1
    counts = w * (y1 - y0 + 1)
    feat = np.repeat(np.arange(len(bounds)), counts)
    j = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return feat, ((x0[feat] + j % w[feat]) << z) | (y0[feat] + j // w[feat])


def encode_zoom(merc, shape: Shapes, table: ValueTable, frame: LayerFrame, z: int,
                tolerance: float, max_tile_bytes: int,
                tiles_in: tuple[int, int, int, int] | None = None) -> ZoomTiles:
    """Tiles of zoom ``z`` for Mercator ``merc``, simplified with ``tolerance`` (metres; 0: as they are).
    ``merc`` is an array of geometries or anything that gives one when indexed by an index array
    (tiles.pmtiles_partitions.PackedGeometries).

    ``tiles_in`` (x0, y0, x1, y1, inclusive): only those tiles are assembled and returned; the
    others are still sized, since a feature over the budget in any of its tiles leaves the zoom.
    """
    drawable = np.flatnonzero(shape.family > 0)
    feat, key = expand_to_tiles(shape.bounds[drawable], z)
    feat = drawable[feat]
    order = np.lexsort((feat, -shape.area[feat], key))
    feat, key = feat[order], key[order]
    budget = max_tile_bytes - frame.overhead(max_tile_bytes)
    batches = [_sizes(merc, shape, table, feat[s], key[s], z, tolerance, budget) for s in _batches(key)]
    over = np.zeros(len(merc), dtype=bool)
    for b in batches:
        over[b.feat[b.running > budget]] = True
        over[b.cut] = True
    tiles: list[tuple[int, int, int, bytes, int]] = []
    written = np.zeros(len(merc), dtype=bool)
    for b in batches:
        keep = ~over[b.feat]
        written[b.feat[keep]] = True
        if tiles_in is not None:
            tx, ty = b.key >> z, b.key & ((1 << z) - 1)
            keep &= (tx >= tiles_in[0]) & (ty >= tiles_in[1]) & (tx <= tiles_in[2]) & (ty <= tiles_in[3])
        tiles.extend(_assemble(b, keep, shape.family, table, frame, z))
    return ZoomTiles(tiles, int(written.sum()), int(over.sum()), written, over)


def _batches(key: np.ndarray) -> list[slice]:
    """Runs of whole tiles of about BATCH_PAIRS pairs (one busy tile may be a batch alone)."""
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    cuts, last = [0], 0
    for s in starts[1:]:
        if s - last >= BATCH_PAIRS:
            cuts.append(int(s))
            last = s
    cuts.append(len(key))
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


@dataclass(frozen=True)
class Shapes:
    """What the engine needs of each input geometry at every zoom, computed once."""
    family: np.ndarray  # MVT geometry type, 0 where there is nothing to draw
    area: np.ndarray  # drawing priority: area, length for lines
    bounds: np.ndarray  # (n, 4) Mercator bounding boxes
    coords: np.ndarray  # vertex count, for the first guess at a feature's size

    @classmethod
    def of(cls, merc: np.ndarray) -> Shapes:
        return cls(geometry_family(merc), np.maximum(shapely.area(merc), shapely.length(merc)),
                   shapely.bounds(merc), shapely.get_num_coordinates(merc).astype(np.int64))

    _FIELDS = ("family", "area", "bounds", "coords")

    @classmethod
    def concat(cls, parts: list[Shapes]) -> Shapes:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls._FIELDS))

    def take(self, rows: np.ndarray) -> Shapes:
        return Shapes(*(getattr(self, f)[rows] for f in self._FIELDS))


@dataclass(frozen=True)
class _Batch:
    feat: np.ndarray  # encoded pairs with geometry left in their tile, tile by tile
    key: np.ndarray
    geometry: EncodedGeometry
    running: np.ndarray  # the tile's exact size (less its frame) up to and including this pair
    cut: np.ndarray  # features of pairs not encoded: past the budget of their tile


def _feature_lengths(tag_bytes: np.ndarray, geom_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Tile.Layer.features field length, Feature message length) per pair."""
    body = 1 + varint_len(tag_bytes) + tag_bytes + 2 + 1 + varint_len(geom_bytes) + geom_bytes
    return 1 + varint_len(body) + body, body


def _tile_index(key: np.ndarray) -> np.ndarray:
    return np.cumsum(np.r_[False, key[1:] != key[:-1]]) if len(key) else np.empty(0, dtype=np.int64)


def _running(cost: np.ndarray, tile: np.ndarray) -> np.ndarray:
    """Cumulative ``cost`` within each tile (pairs sorted by tile)."""
    total = np.cumsum(cost)
    if not len(tile):
        return total
    tile_start = np.flatnonzero(np.r_[True, tile[1:] != tile[:-1]])
    return total - (total - cost)[tile_start][tile]


def _sizes(merc, shape: Shapes, table: ValueTable, feat, key, z: int, tolerance: float, budget: int) -> _Batch:
    """Exact running sizes of the pairs that can matter; the rest of an over-full tile is cut unseen.

    A tile's features past its budget are left out whatever their size, so only a tile's
    leading run needs encoding: it is guessed from vertex counts, and a tile whose guessed run
    came out under the budget (geometry smaller than guessed, or collapsed) is encoded whole.
    """
    tile = _tile_index(key)
    n_tiles = int(tile[-1]) + 1 if len(tile) else 0
    head = _guessed_head(shape, table, feat, tile, n_tiles, _HEAD_SLACK * budget)
    while True:
        b = _encode_exact(merc, shape.family, table, feat[head], key[head], z, tolerance)
        reached = np.zeros(n_tiles, dtype=bool)
        reached[np.searchsorted(key[np.r_[True, key[1:] != key[:-1]]], b.key[b.running > budget])] = True
        tail = np.zeros(n_tiles, dtype=bool)
        tail[tile[~head]] = True
        short = tail & ~reached
        if not short.any():
            return _Batch(b.feat, b.key, b.geometry, b.running, np.unique(feat[~head]))
        head |= short[tile]


def _guessed_head(shape: Shapes, table: ValueTable, feat, tile, n_tiles: int, limit: float) -> np.ndarray:
    """Pairs whose guessed running size before them is at most ``limit``.

    The guess of a pair depends only on the pairs before it in its tile, so it is made on each
    tile's first ``_GUESS_PREFIX`` pairs, widened only for tiles still under the limit there:
    a low-zoom tile of 100,000s of pairs then costs its head, not its whole tag table.
    """
    first = np.flatnonzero(np.r_[True, tile[1:] != tile[:-1]]) if len(tile) else np.empty(0, dtype=np.int64)
    pos = np.arange(len(tile)) - first[tile] if len(tile) else np.empty(0, dtype=np.int64)
    tile_len = np.bincount(tile, minlength=n_tiles)
    prefix = _GUESS_PREFIX
    while True:
        sel = np.flatnonzero(pos < prefix)
        tags = tile_tags(table, feat[sel], tile[sel], n_tiles)
        guess = _feature_lengths(tags.tag_bytes, 2 * shape.coords[feat[sel]] + 3)[0] + tags.first_use_bytes
        running = _running(guess, tile[sel])
        head = np.zeros(len(tile), dtype=bool)
        head[sel] = running - guess <= limit
        t = tile[sel]
        last = np.r_[t[1:] != t[:-1], True] if len(t) else np.empty(0, dtype=bool)
        end = np.zeros(n_tiles)
        end[t[last]] = running[last]
        if not ((tile_len > prefix) & (end <= limit)).any():
            return head
        prefix *= 4


def _encode_exact(merc, family, table: ValueTable, feat, key, z: int, tolerance: float) -> _Batch:
    tx, ty = key >> z, key & ((1 << z) - 1)
    uniq, inverse = np.unique(feat, return_inverse=True)  # simplify each feature once
    geoms = shapely.simplify(merc[uniq], tolerance, preserve_topology=True) if tolerance else merc[uniq]
    geometry = encode_pairs(geoms[inverse], family[feat], tx, ty, z)
    has = geometry.lengths > 0
    starts = np.cumsum(geometry.lengths) - geometry.lengths
    geometry = EncodedGeometry(ragged_take(geometry.data, starts[has], geometry.lengths[has]), geometry.lengths[has])
    feat, key = feat[has], key[has]
    tile = _tile_index(key)
    tags = tile_tags(table, feat, tile, int(tile[-1]) + 1 if len(tile) else 0)
    cost = _feature_lengths(tags.tag_bytes, geometry.lengths)[0] + tags.first_use_bytes
    return _Batch(feat, key, geometry, _running(cost, tile), np.empty(0, dtype=np.int64))


def _assemble(b: _Batch, keep: np.ndarray, family, table: ValueTable, frame: LayerFrame, z: int) -> list:
    if not keep.any():
        return []
    g_start = np.cumsum(b.geometry.lengths) - b.geometry.lengths
    geom_len = b.geometry.lengths[keep]
    geom = ragged_take(b.geometry.data, g_start[keep], geom_len)
    feat, key = b.feat[keep], b.key[keep]
    tile = _tile_index(key)
    n_tiles = int(tile[-1]) + 1
    tags = tile_tags(table, feat, tile, n_tiles)
    tag_data, tag_int_len = varints(tags.tag_ints)
    body_len = _feature_lengths(tags.tag_bytes, geom_len)[1]
    n = len(feat)
    one = np.ones(n, dtype=np.int64)
    type_field = np.empty(2 * n, dtype=np.uint8)
    type_field[0::2], type_field[1::2] = 0x18, family[feat]
    features, per_pair = interleave([
        (np.full(n, 0x12, np.uint8), one), varints(body_len),  # Layer.features
        (np.full(n, 0x12, np.uint8), one), varints(tags.tag_bytes), (tag_data, tags.tag_bytes),  # Feature.tags
        (type_field, 2 * one),  # Feature.type
        (np.full(n, 0x22, np.uint8), one), varints(geom_len), (geom, geom_len),  # Feature.geometry
    ])
    values = ragged_take(table.data, table.starts[tags.values], table.lengths[tags.values])
    value_tile = np.repeat(np.arange(n_tiles), tags.values_per_tile)
    value_bytes = np.bincount(value_tile, weights=table.lengths[tags.values], minlength=n_tiles).astype(np.int64)
    feature_bytes = np.bincount(tile, weights=per_pair, minlength=n_tiles).astype(np.int64)
    f_end, v_end = np.cumsum(feature_bytes), np.cumsum(value_bytes)
    tile_keys = key[np.flatnonzero(np.r_[True, key[1:] != key[:-1]])]
    out = []
    for i in range(n_tiles):
        layer = b"".join((frame.head, features[f_end[i] - feature_bytes[i]:f_end[i]].tobytes(),
                          values[v_end[i] - value_bytes[i]:v_end[i]].tobytes()))
        # name, features, values, then keys, extent, version: protobuf fields may come in any order
        raw = b"\x1a" + _varint(len(layer) + len(frame.tail)) + layer + frame.tail
        k = int(tile_keys[i])
        out.append((z, k >> z, k & ((1 << z) - 1), igzip.compress(raw, compresslevel=_GZIP_LEVEL, mtime=0), len(raw)))
    return out
