"""MVT geometry of many (feature, tile) pairs at once: clip, quantise, encode commands.

Each pair is one feature's Web Mercator geometry in one tile. Geometries that reach past
the tile's buffer are clipped to it (GEOS, as one array call); the rest are not touched.
All coordinates are then moved into tile units and rounded in one numpy pass, repeated
points and rings that collapse to nothing are removed, ring winding is set as the MVT
spec wants (exterior positive area with y down), and the MoveTo/LineTo/ClosePath command
integers with zig-zag deltas become varints, still as whole arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from shapely import lib as shapely_lib

from tiles.mvt_bytes import ragged_take, segment_ids, varints, zigzag

EXTENT = 4096  # MVT tile units
BUFFER = 64  # tile units of geometry kept beyond the tile edge (same as the PostGIS source)
HALF_WORLD = 20037508.342789244  # Web Mercator half extent, metres
MAX_LAT = 85.0511287798066
_PROJECT_CHUNK = 50_000  # features projected at once

POINT, LINESTRING, POLYGON = 1, 2, 3  # MVT GeomType
_FAMILY = {0: POINT, 4: POINT, 1: LINESTRING, 2: LINESTRING, 5: LINESTRING, 3: POLYGON, 6: POLYGON}
_MOVE_TO, _LINE_TO, _CLOSE = 1, 2, 7


def tile_size(z: int) -> float:
    return 2 * HALF_WORLD / (1 << z)


def web_mercator(lonlat: np.ndarray) -> np.ndarray:
    """EPSG:4326 geometries in Web Mercator, clamped to +-MAX_LAT (Mercator is undefined at the poles)."""
    merc = np.empty(len(lonlat), dtype=object)
    for i in range(0, len(lonlat), _PROJECT_CHUNK):  # in chunks: no third full copy of the geometries
        part = lonlat[i:i + _PROJECT_CHUNK].copy()
        # clipping costs half of the projection; only geometries reaching out of the lon/lat
        # rectangle need it (empties, with NaN bounds, go through it as before)
        b = shapely.bounds(part)
        out = ~((b[:, 0] >= -180) & (b[:, 1] >= -MAX_LAT) & (b[:, 2] <= 180) & (b[:, 3] <= MAX_LAT))
        if out.any():
            part[out] = shapely.clip_by_rect(part[out], -180, -MAX_LAT, 180, MAX_LAT)
        merc[i:i + _PROJECT_CHUNK] = np.asarray(gpd.GeoSeries(part, crs=4326).to_crs(3857).values)
    return merc


def geometry_family(geoms: np.ndarray) -> np.ndarray:
    """MVT geometry type of each geometry (0 for collections and missing ones: not drawn)."""
    ids = shapely.get_type_id(geoms)
    out = np.zeros(len(geoms), dtype=np.int8)
    for type_id, family in _FAMILY.items():
        out[ids == type_id] = family
    out[shapely.is_empty(geoms)] = 0  # simplification can empty a geometry: nothing to draw
    return out


@dataclass(frozen=True)
class EncodedGeometry:
    data: np.ndarray  # uint8: every pair's geometry varints, in pair order
    lengths: np.ndarray  # bytes per pair; 0 where nothing of the feature is left in the tile


def encode_pairs(geoms: np.ndarray, family: np.ndarray, tx: np.ndarray, ty: np.ndarray, z: int) -> EncodedGeometry:
    """Encode geometry ``geoms[i]`` (MVT type ``family[i]``) for tile (z, tx[i], ty[i])."""
    size = tile_size(z)
    left = tx * size - HALF_WORLD
    top = HALF_WORLD - ty * size
    clipped = _clip_to_buffer(geoms, left, top, size)
    n = len(geoms)
    lengths = np.zeros(n, dtype=np.int64)
    chunks: list[tuple[np.ndarray, np.ndarray]] = []  # (pair indices, bytes) per family and path
    drawn = ~shapely.is_empty(clipped)
    for fam, encode in ((POINT, _encode_points), (LINESTRING, _encode_lines), (POLYGON, _encode_polygons)):
        idx = np.flatnonzero((family == fam) & drawn)
        parts = clipped[idx]
        types = shapely.get_type_id(parts)
        if (types == 7).any():
            parts = _as_family(parts, fam)
            ok = ~shapely.is_empty(parts)
            idx, parts = idx[ok], parts[ok]
            types = shapely.get_type_id(parts)
        simple = _single_path(parts, types, fam)
        for sel, flat in ((simple, True), (~simple, False)):
            if not sel.any():
                continue
            coords, offsets = _flat_ragged(parts[sel], fam) if flat else _shapely_ragged(parts[sel])
            data, per_pair = encode(coords, offsets, left[idx[sel]], top[idx[sel]], EXTENT / size, int(sel.sum()))
            lengths[idx[sel]] = per_pair
            chunks.append((idx[sel], data))
    if not chunks:
        return EncodedGeometry(np.empty(0, dtype=np.uint8), lengths)
    # families were encoded apart; put the bytes back in pair order
    data = np.concatenate([d for _, d in chunks])
    order = np.concatenate([i for i, _ in chunks])
    starts = np.empty(n, dtype=np.int64)
    starts[order] = np.cumsum(lengths[order]) - lengths[order]
    return EncodedGeometry(ragged_take(data, starts, lengths), lengths)


def _clip_to_buffer(geoms: np.ndarray, left: np.ndarray, top: np.ndarray, size: float) -> np.ndarray:
    """Each geometry cut to its tile plus buffer; those already inside are left as they are."""
    pad = BUFFER * size / EXTENT
    x0, y0, x1, y1 = left - pad, top - size - pad, left + size + pad, top + pad
    b = shapely.bounds(geoms)
    out = geoms.copy()
    cross = ~((b[:, 0] >= x0) & (b[:, 1] >= y0) & (b[:, 2] <= x1) & (b[:, 3] <= y1))
    if cross.any():
        # the ufunc itself: shapely.clip_by_rect only takes one rectangle for all geometries
        out[cross] = shapely_lib.clip_by_rect(geoms[cross], x0[cross], y0[cross], x1[cross], y1[cross])
    return out


def _as_family(geoms: np.ndarray, family: int) -> np.ndarray:
    """Clipping may return a collection (a polygon cut into a polygon and a line): keep the family's parts."""
    mixed = shapely.get_type_id(geoms) == 7
    if not mixed.any():
        return geoms
    geoms = geoms.copy()
    for i in np.flatnonzero(mixed):
        parts = shapely.get_parts(geoms[i])
        parts = parts[geometry_family(parts) == family]
        merged = {POINT: shapely.multipoints, LINESTRING: shapely.multilinestrings, POLYGON: shapely.multipolygons}
        geoms[i] = merged[family](shapely.get_parts(parts)) if len(parts) else shapely.from_wkt("GEOMETRYCOLLECTION EMPTY")
    return geoms


def _single_path(parts: np.ndarray, types: np.ndarray, family: int) -> np.ndarray:
    """Geometries of one path each (a point, a line, a polygon without holes): the common case."""
    if family == POINT:
        return types == 0
    if family == LINESTRING:
        return types == 1
    simple = types == 3
    simple[simple] = shapely.get_num_interior_rings(parts[simple]) == 0
    return simple


def _flat_ragged(parts: np.ndarray, family: int) -> tuple[np.ndarray, tuple]:
    """Coordinates and offsets as _shapely_ragged gives them, for single-path geometries only,
    without to_ragged_array's object per part and ring."""
    n = len(parts)
    one_each = np.arange(n + 1, dtype=np.int64)
    coords = shapely.get_coordinates(parts)
    if family == POINT:
        return coords, (one_each,)
    path_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(shapely.get_num_coordinates(parts), out=path_off[1:])
    return coords, (path_off, one_each) if family == LINESTRING else (path_off, one_each, one_each)


def _shapely_ragged(parts: np.ndarray) -> tuple[np.ndarray, tuple]:
    kind, coords, offsets = shapely.to_ragged_array(parts)
    return coords, _multi_offsets(kind, offsets, len(parts))


def _multi_offsets(kind, offsets: tuple, n: int) -> tuple:
    """Offsets as for the multi- type: single geometries are one-part multis."""
    one_each = np.arange(n + 1, dtype=np.int64)
    if kind in (shapely.GeometryType.POINT, shapely.GeometryType.LINESTRING, shapely.GeometryType.POLYGON):
        return (*offsets, one_each)
    return offsets


def _quantise(coords: np.ndarray, pair: np.ndarray, left: np.ndarray, top: np.ndarray,
              scale: float) -> tuple[np.ndarray, np.ndarray]:
    qx = np.rint((coords[:, 0] - left[pair]) * scale).astype(np.int64)
    qy = np.rint((top[pair] - coords[:, 1]) * scale).astype(np.int64)  # MVT y grows downwards
    return qx, qy


def _deltas(qx: np.ndarray, qy: np.ndarray, pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zig-zag deltas from the previous point of the same feature (the first from 0, 0)."""
    first = np.r_[True, pair[1:] != pair[:-1]]
    dx = np.where(first, qx, qx - np.r_[0, qx[:-1]])
    dy = np.where(first, qy, qy - np.r_[0, qy[:-1]])
    return zigzag(dx), zigzag(dy)


def _paths(qx, qy, pair, path_len, closed: bool, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Command integers of paths (rings or lines) laid end to end, as varints; bytes per pair."""
    n_paths = len(path_len)
    per_path = 2 * path_len + (3 if closed else 2)
    start = np.cumsum(per_path) - per_path
    ints = np.empty(int(per_path.sum()), dtype=np.uint64)
    ints[start] = (1 << 3) | _MOVE_TO
    ints[start + 3] = ((path_len - 1) << 3) | _LINE_TO
    if closed:
        ints[start + per_path - 1] = (1 << 3) | _CLOSE
    path_of_pt = segment_ids(path_len)
    k = np.arange(len(qx)) - np.repeat(np.cumsum(path_len) - path_len, path_len)
    xpos = start[path_of_pt] + 1 + 2 * k + (k > 0)
    ints[xpos], ints[xpos + 1] = _deltas(qx, qy, pair)
    data, lens = varints(ints)
    path_pair = pair[np.cumsum(path_len) - path_len] if n_paths else np.empty(0, dtype=np.int64)
    return data, np.bincount(np.repeat(path_pair, per_path), weights=lens, minlength=n_pairs).astype(np.int64)


def _clean_paths(qx, qy, path_of_pt, drop_last: bool) -> np.ndarray:
    """Points to keep: not a repeat of the one before (nor, with ``drop_last``, a ring's closing point)."""
    keep = np.r_[True, (qx[1:] != qx[:-1]) | (qy[1:] != qy[:-1]) | (path_of_pt[1:] != path_of_pt[:-1])]
    if drop_last:
        last = np.r_[path_of_pt[1:] != path_of_pt[:-1], True]
        keep &= ~last
        # after rounding, a ring's last point may land on its first: ClosePath draws that edge
        k_idx = np.flatnonzero(keep)
        kp = path_of_pt[k_idx]
        firsts = k_idx[np.r_[True, kp[1:] != kp[:-1]]]
        lasts = k_idx[np.r_[kp[1:] != kp[:-1], True]]
        same = (qx[firsts] == qx[lasts]) & (qy[firsts] == qy[lasts]) & (firsts != lasts)
        keep[lasts[same]] = False
    return keep


def _encode_points(coords, offsets, left, top, scale, n_pairs):
    (geom_off,) = offsets
    pair = segment_ids(np.diff(geom_off))
    qx, qy = _quantise(coords, pair, left, top, scale)
    count = np.diff(geom_off).astype(np.int64)
    has = count > 0
    per_pair = np.where(has, 1 + 2 * count, 0)
    start = np.cumsum(per_pair) - per_pair
    ints = np.empty(int(per_pair.sum()), dtype=np.uint64)
    ints[start[has]] = (count[has].astype(np.uint64) << np.uint64(3)) | np.uint64(_MOVE_TO)
    k = np.arange(len(qx)) - np.repeat(np.cumsum(count) - count, count)
    xpos = start[pair] + 1 + 2 * k
    ints[xpos], ints[xpos + 1] = _deltas(qx, qy, pair)
    data, lens = varints(ints)
    return data, np.bincount(np.repeat(np.arange(n_pairs), per_pair), weights=lens, minlength=n_pairs).astype(np.int64)


def _encode_lines(coords, offsets, left, top, scale, n_pairs):
    line_off, geom_off = offsets
    pair_of_line = segment_ids(np.diff(geom_off))
    line_of_pt = segment_ids(np.diff(line_off))
    qx, qy = _quantise(coords, pair_of_line[line_of_pt], left, top, scale)
    keep = _clean_paths(qx, qy, line_of_pt, drop_last=False)
    length = np.bincount(line_of_pt[keep], minlength=len(line_off) - 1)
    ok = length >= 2
    keep &= ok[line_of_pt]
    return _paths(qx[keep], qy[keep], pair_of_line[line_of_pt[keep]], length[ok], False, n_pairs)


def _encode_polygons(coords, offsets, left, top, scale, n_pairs):
    ring_off, poly_off, geom_off = offsets
    ring_of_pt = segment_ids(np.diff(ring_off))
    poly_of_ring = segment_ids(np.diff(poly_off))
    pair_of_ring = segment_ids(np.diff(geom_off))[poly_of_ring]
    qx, qy = _quantise(coords, pair_of_ring[ring_of_pt], left, top, scale)
    n_rings = len(ring_off) - 1
    keep = _clean_paths(qx, qy, ring_of_pt, drop_last=True)
    qx, qy, ring = qx[keep], qy[keep], ring_of_pt[keep]
    length = np.bincount(ring, minlength=n_rings)
    area2 = _ring_area2(qx, qy, ring, length)
    exterior = np.zeros(n_rings, dtype=bool)
    exterior[poly_off[:-1][np.diff(poly_off) > 0]] = True
    drawable = (length >= 3) & (area2 != 0)
    # a polygon whose exterior collapsed goes whole, holes included
    poly_ok = np.zeros(len(poly_off) - 1, dtype=bool)
    poly_ok[poly_of_ring[exterior & drawable]] = True
    ring_ok = drawable & poly_ok[poly_of_ring]
    flip = ring_ok & np.where(exterior, area2 < 0, area2 > 0)
    order = _reverse_rings(ring, length, flip)
    qx, qy, ring = qx[order], qy[order], ring[order]
    pt_ok = ring_ok[ring]
    return _paths(qx[pt_ok], qy[pt_ok], pair_of_ring[ring[pt_ok]], length[ring_ok], True, n_pairs)


def _ring_area2(qx, qy, ring, length) -> np.ndarray:
    """Twice each ring's signed area (shoelace), ring closed implicitly."""
    start = np.cumsum(length) - length
    nxt = np.arange(len(qx)) + 1
    last = start + length - 1
    nxt[last[length > 0]] = start[length > 0]
    cross = qx * qy[nxt] - qx[nxt] * qy
    return np.bincount(ring, weights=cross, minlength=len(length))


def _reverse_rings(ring, length, flip) -> np.ndarray:
    """Point order with the flagged rings reversed (each ring's points are contiguous)."""
    idx = np.arange(len(ring))
    start = np.cumsum(length) - length
    s, e = start[ring], start[ring] + length[ring] - 1
    return np.where(flip[ring], s + e - idx, idx)
