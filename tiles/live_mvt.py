"""Live vector tiles: a snapshot of a live layer's items as columns, and its tiles made a zoom at a time.

A live layer holds a few thousand short-lived items (vehicles every 10 s, incidents). A feed
changes all of them at once, so every tile a client holds is stale together. Encoding each
requested tile with per-feature Python cost tens of milliseconds of GIL per low-zoom tile,
and a hundred such tiles after every feed held up the server's other requests. Here a
snapshot (``LiveFrame``) reads the items once per layer version, and ``encode`` makes every
tile of a zoom in one pass of the numpy MVT engine (tiles.mvt_geometry, mvt_values,
mvt_bytes): clip, quantise and encode all (item, tile) pairs at once. A zoom whose pairs
would cost too much to make whole (big shapes at high zooms) is made one tile at a time.

Unlike the build's tiles, live tiles keep every item (no size budget, no simplification),
in the order the store gives them, and each property keeps its JSON type: strings, whole
numbers, other numbers and booleans as MVT values of that type, objects and lists as their
JSON text, nulls left out. Each tile lists only the keys and values its items use.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from geo.crs import WEB_MERCATOR, WGS84, transformer
from tiles.mvt_bytes import interleave, ragged_take, varint_len, varints
from tiles.mvt_geometry import BUFFER, EXTENT, encode_pairs
from tiles.mvt_values import ValueTable, tile_tags, value_table
from tiles.mvt_zoom import Shapes, tile_ranges

MAX_ZOOM = 24
MAX_LAT = 85.05112878
ZOOM_COST = 1_000_000  # vertices x tiles a zoom may cost to be made whole (a few MB of tiles)
_KEY_FIELD, _FEATURE_FIELD, _TAGS_FIELD, _TYPE_FIELD, _GEOMETRY_FIELD = 0x1A, 0x12, 0x12, 0x18, 0x22
_LAYER_FIELD = 0x1A


def _varint(v: int) -> bytes:
    return varints(np.array([v], dtype=np.uint64))[0].tobytes()


_TAIL = b"\x28" + _varint(EXTENT) + b"\x78\x02"  # Layer.extent, Layer.version 2


@dataclass(frozen=True)
class LiveFrame:
    """What the tiles of one layer version need of its items, computed once."""
    name: bytes  # the layer's Layer.name field
    merc: np.ndarray  # Web Mercator geometries, in the store's order
    shape: Shapes
    expires: np.ndarray  # POSIX seconds per item
    values: ValueTable  # per item and key: the item's value
    keys: ValueTable  # per item and key: the key's Layer.keys field, where the item has a value

    @classmethod
    def of(cls, layer: str, ids: list[str], geometries: list[str], properties: list[dict],
           expires: list[float]) -> LiveFrame:
        """From the items' ids, GeoJSON geometry texts (lon/lat), property dicts and expiries."""
        lonlat = shapely.from_geojson(np.array(geometries, dtype=object)) if geometries else np.empty(0, object)
        to_merc = transformer(WGS84, WEB_MERCATOR)
        # latitudes beyond Web Mercator's range cannot be drawn: clamped to its edge, not dropped
        merc = shapely.transform(lonlat, lambda c: np.column_stack(
            to_merc.transform(c[:, 0], np.clip(c[:, 1], -MAX_LAT, MAX_LAT))))
        values, keys = _attributes(ids, properties)
        name = layer.encode("utf-8")
        return cls(b"\x0a" + _varint(len(name)) + name, merc, Shapes.of(merc),
                   np.asarray(expires, dtype=np.float64), values, keys)

    @property
    def valid_until(self) -> float:
        """The first expiry among the items: past it, the snapshot shows an item it should not."""
        return float(self.expires.min()) if len(self.expires) else math.inf

    def zoom_cost(self, z: int) -> float:
        """Vertices x tiles of every drawable item at zoom ``z``: what making the whole zoom costs."""
        x0, y0, x1, y1 = tile_ranges(self.shape.bounds, z, BUFFER)
        tiles = (x1 - x0 + 1).astype(np.float64) * (y1 - y0 + 1)  # a big shape at z24: past int64
        return float(((self.shape.coords + 4) * tiles)[self.shape.family > 0].sum())


@dataclass(frozen=True)
class LiveTile:
    data: bytes  # the MVT, uncompressed; b"" when no item reaches the tile
    valid_until: float  # the soonest expiry of the items in it


def encode(frame: LiveFrame, z: int, only: tuple[int, int] | None = None) -> dict[tuple[int, int], LiveTile]:
    """Every non-empty tile (x, y) of zoom ``z``, or only the tile ``only`` (absent when empty)."""
    feat, key = _pairs(frame, z, only)
    if not len(feat):
        return {}
    geometry = encode_pairs(frame.merc[feat], frame.shape.family[feat], key >> z, key & ((1 << z) - 1), z)
    has = geometry.lengths > 0
    if not has.any():
        return {}
    starts = np.cumsum(geometry.lengths) - geometry.lengths
    geom_len = geometry.lengths[has]
    geom = ragged_take(geometry.data, starts[has], geom_len)
    feat, key = feat[has], key[has]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    tile = np.cumsum(np.r_[False, key[1:] != key[:-1]])
    n_tiles = len(first)
    vtags = tile_tags(frame.values, feat, tile, n_tiles)
    ktags = tile_tags(frame.keys, feat, tile, n_tiles)
    ints = vtags.tag_ints.copy()
    ints[0::2] = ktags.tag_ints[1::2]  # the key's place in its tile's own key list, not the layer's
    tag_data, tag_int_len = varints(ints)
    tag_len = np.bincount(np.repeat(np.arange(len(feat)), vtags.ints_per_pair), weights=tag_int_len,
                          minlength=len(feat)).astype(np.int64)
    features, per_pair = _features(tag_data, tag_len, frame.shape.family[feat], geom, geom_len)
    keys, key_len = _per_tile(frame.keys, ktags.values, ktags.values_per_tile)
    values, value_len = _per_tile(frame.values, vtags.values, vtags.values_per_tile)
    feature_len = np.bincount(tile, weights=per_pair, minlength=n_tiles).astype(np.int64)
    ones = np.ones(n_tiles, dtype=np.int64)
    name = np.frombuffer(frame.name, dtype=np.uint8)
    tail = np.frombuffer(_TAIL, dtype=np.uint8)
    layer_len = len(name) + feature_len + key_len + value_len + len(tail)
    # every tile's bytes in one buffer: Tile.layers tag and length, then the Layer's fields
    blob, tile_len = interleave([(np.full(n_tiles, _LAYER_FIELD, np.uint8), ones), varints(layer_len),
                                 (np.tile(name, n_tiles), len(name) * ones), (features, feature_len),
                                 (keys, key_len), (values, value_len), (np.tile(tail, n_tiles), len(tail) * ones)])
    data, ends = blob.tobytes(), np.cumsum(tile_len).tolist()
    valid = np.minimum.reduceat(frame.expires[feat], first).tolist()
    tile_keys = key[first].tolist()
    return {(k >> z, k & ((1 << z) - 1)): LiveTile(data[end - size:end], until)
            for k, end, size, until in zip(tile_keys, ends, tile_len.tolist(), valid)}


def _pairs(frame: LiveFrame, z: int, only: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(item, tile key) pairs sorted by tile, each tile's items in store order."""
    drawable = frame.shape.family > 0
    x0, y0, x1, y1 = tile_ranges(frame.shape.bounds, z, BUFFER)
    if only is not None:
        x, y = only
        feat = np.flatnonzero(drawable & (x0 <= x) & (x <= x1) & (y0 <= y) & (y <= y1))
        return feat, np.full(len(feat), (x << z) | y, dtype=np.int64)
    feat = np.flatnonzero(drawable)
    w = (x1 - x0 + 1)[feat]
    counts = w * (y1 - y0 + 1)[feat]
    item = np.repeat(feat, counts)
    j = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    key = ((x0[item] + j % np.repeat(w, counts)) << z) | (y0[item] + j // np.repeat(w, counts))
    order = np.lexsort((item, key))
    return item[order], key[order]


def _features(tag_data, tag_len, family, geom, geom_len) -> tuple[np.ndarray, np.ndarray]:
    """Layer.features fields, pair after pair: (bytes, length per pair)."""
    n = len(tag_len)
    one = np.ones(n, dtype=np.int64)
    body_len = 1 + varint_len(tag_len) + tag_len + 2 + 1 + varint_len(geom_len) + geom_len
    type_field = np.empty(2 * n, dtype=np.uint8)
    type_field[0::2], type_field[1::2] = _TYPE_FIELD, family
    return interleave([(np.full(n, _FEATURE_FIELD, np.uint8), one), varints(body_len),
                       (np.full(n, _TAGS_FIELD, np.uint8), one), varints(tag_len), (tag_data, tag_len),
                       (type_field, 2 * one),
                       (np.full(n, _GEOMETRY_FIELD, np.uint8), one), varints(geom_len), (geom, geom_len)])


def _per_tile(table: ValueTable, ids: np.ndarray, per_tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The table entries ``ids`` (tile after tile) as bytes, and their bytes per tile."""
    data = ragged_take(table.data, table.starts[ids], table.lengths[ids])
    tile = np.repeat(np.arange(len(per_tile)), per_tile)
    return data, np.bincount(tile, weights=table.lengths[ids], minlength=len(per_tile)).astype(np.int64)


_KINDS = {bool: 1, int: 2, float: 3, str: 4}  # 0: null, or an object or list (kept as JSON text)
_STRING = 4


def _attributes(ids: list[str], properties: list[dict]) -> tuple[ValueTable, ValueTable]:
    """The items' values (a column per key and type, merged back per key) and keys, as tables."""
    n = len(ids)
    rows = [{**p, "id": i} for p, i in zip(properties, ids)]
    names = list(dict.fromkeys(k for p in rows for k in p))
    columns: dict[int, np.ndarray | pd.api.extensions.ExtensionArray] = {}
    key_of: list[int] = []
    for j, name in enumerate(names):  # a list comprehension per key: thousands of items in a few ms
        listed = [p.get(name) for p in rows]
        vals = np.fromiter(listed, dtype=object, count=n)  # not np.array: a list value must stay one value
        kind = np.array([_KINDS.get(type(v), 0) for v in listed], dtype=np.int8)
        for i in np.flatnonzero((kind == 0) & (vals != None)):  # noqa: E711 - elementwise test
            vals[i], kind[i] = json.dumps(vals[i], ensure_ascii=False, default=str), _STRING
        for code, make in _COLUMNS.items():
            at = np.flatnonzero(kind == code)
            if len(at):
                columns[len(key_of)] = make(n, at, vals[at])
                key_of.append(j)
    typed = value_table(pd.DataFrame(columns, index=range(n)))
    codes = np.full((n, len(names)), -1, dtype=np.int32)
    for g, j in enumerate(key_of):  # an item has one type per key: at most one of a key's columns is set
        codes[:, j] = np.maximum(codes[:, j], typed.codes[:, g])
    values = ValueTable(codes, typed.data, typed.starts, typed.lengths)
    key_bytes = [bytes([_KEY_FIELD]) + _varint(len(b)) + b for b in (k.encode("utf-8") for k in names)]
    lengths = np.array([len(b) for b in key_bytes], dtype=np.int64)
    keys = ValueTable(np.where(codes >= 0, np.arange(len(names), dtype=np.int32), -1).astype(np.int32),
                      np.frombuffer(b"".join(key_bytes), dtype=np.uint8), np.cumsum(lengths) - lengths, lengths)
    return values, keys


def _masked(n: int, at: np.ndarray, values: np.ndarray, dtype, array_type):
    data = np.zeros(n, dtype=dtype)
    data[at] = values.astype(dtype)
    mask = np.ones(n, dtype=bool)
    mask[at] = False
    return array_type(data, mask)


def _numbers(n: int, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full(n, np.nan)
    out[at] = values.astype(np.float64)
    out[~np.isfinite(out)] = np.nan  # NaN and infinities are not JSON: left out like nulls
    return out


def _strings(n: int, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full(n, None, dtype=object)
    out[at] = values
    return out


# one key's values of one type, missing (left out of the tiles) for the other items
_COLUMNS = {1: lambda n, at, v: _masked(n, at, v, bool, pd.arrays.BooleanArray),
            2: lambda n, at, v: _masked(n, at, v, np.int64, pd.arrays.IntegerArray),
            3: _numbers, _STRING: _strings}
