"""encode_pairs takes single-path geometries (points, lines, polygons without holes) through a
flat path without shapely.to_ragged_array; every other geometry goes through to_ragged_array.
The bytes must be those of sending everything through to_ragged_array."""
from __future__ import annotations

import numpy as np
import pytest
import shapely

from tiles import mvt_geometry
from tiles.mvt_geometry import HALF_WORLD, LINESTRING, POINT, POLYGON, encode_pairs, geometry_family, tile_size

Z, TX, TY = 14, 13_970, 6_344  # a tile over Seoul


def _mixed(n: int = 600, seed: int = 2):
    """Every kind of geometry the engine meets, many crossing the tile's edges, in Mercator."""
    rng = np.random.default_rng(seed)
    size = tile_size(Z)
    left, top = TX * size - HALF_WORLD, HALF_WORLD - TY * size
    cx = left + rng.uniform(-0.1, 1.1, n) * size  # a fifth of them across or past the edges
    cy = top - rng.uniform(-0.1, 1.1, n) * size
    w = rng.uniform(0.2, 300, n)  # from well under one tile unit (collapses) to 1/8 tile
    out, fam7 = [], []
    for i in range(n):
        x, y, r = cx[i], cy[i], w[i]
        box = shapely.box(x - r, y - r, x + r, y + 0.6 * r)
        line = shapely.LineString([(x - r, y), (x, y + r), (x + r, y - 0.3 * r), (x + 2 * r, y)])
        kind = i % 11
        if kind == 0:
            g = shapely.Polygon(box.exterior.coords[::-1])  # wound the other way
        elif kind == 1:
            g = box.difference(shapely.box(x - r / 2, y - r / 2, x + r / 2, y + r / 4))  # with a hole
        elif kind == 2:
            g = shapely.MultiPolygon([box, shapely.box(x + 2 * r, y, x + 3 * r, y + r)])
        elif kind == 3:
            g = line
        elif kind == 4:
            g = shapely.MultiLineString([line, shapely.LineString([(x, y), (x, y), (x + r, y + r)])])
        elif kind == 5:
            g = shapely.Point(x, y)
        elif kind == 6:
            g = shapely.MultiPoint([(x, y), (x + r, y), (x, y)])
        elif kind == 7:  # as clipping can leave them: the feature's family, with or without stray parts
            x, y, r = left + (0.2 + 0.6 * (x - left) / size) * size, top - 0.5 * size, min(r, 100.0)
            box = shapely.box(x - r, y - r, x + r, y + 0.6 * r)
            line = shapely.LineString([(x - r, y), (x, y + r), (x + r, y - 0.3 * r)])
            stray = shapely.LineString([(x + r, y), (x + 3 * r, y)])
            g = shapely.GeometryCollection([[box, stray], [stray, line], [shapely.Point(x, y)]][i % 3])
            fam7.append(LINESTRING if i % 3 == 1 else POLYGON)
        elif kind == 8:
            g = shapely.Polygon([(x, y, 5.0), (x + r, y, 5.0), (x + r, y + r, 6.0), (x, y, 5.0)])  # with z
        elif kind == 9:
            g = shapely.affinity.rotate(box, rng.uniform(0, 90))
        else:
            g = shapely.from_wkt(rng.choice(["POLYGON EMPTY", "LINESTRING EMPTY", "POINT EMPTY"]))
        out.append(g)
    geoms = np.array(out, dtype=object)
    family = geometry_family(geoms)
    family[np.arange(n) % 11 == 7] = fam7
    return geoms, family


def _encode(geoms, family):
    n = len(geoms)
    return encode_pairs(geoms, family, np.full(n, TX), np.full(n, TY), Z)


def test_flat_path_gives_the_bytes_of_to_ragged_array(monkeypatch):
    geoms, family = _mixed()
    fast = _encode(geoms, family)
    assert (fast.lengths > 0).sum() > 300 and (fast.lengths == 0).any()
    monkeypatch.setattr(mvt_geometry, "_single_path", lambda parts, types, fam: np.zeros(len(parts), dtype=bool))
    slow = _encode(geoms, family)
    assert np.array_equal(fast.lengths, slow.lengths)
    assert fast.data.tobytes() == slow.data.tobytes()


def test_single_path_geometries_do_not_go_through_to_ragged_array(monkeypatch):
    geoms, family = _mixed()
    simple = np.isin(shapely.get_type_id(geoms), (0, 1, 3)) & (shapely.get_num_interior_rings(geoms) == 0)
    simple &= ~shapely.is_empty(geoms)
    simple &= ~shapely.has_z(geoms)  # kept apart: only to make the count below exact
    expected = _encode(geoms[simple], family[simple])

    def refuse(parts, *args, **kwargs):
        raise AssertionError("to_ragged_array called")

    monkeypatch.setattr(shapely, "to_ragged_array", refuse)
    # those crossing the tile's buffer may be clipped into multi-geometries: keep the inner ones
    size = tile_size(Z)
    left, top = TX * size - HALF_WORLD, HALF_WORLD - TY * size
    inside = shapely.within(geoms[simple], shapely.box(left, top - size, left + size, top))
    got = _encode(geoms[simple][inside], family[simple][inside])
    assert inside.sum() > 100
    starts = np.cumsum(expected.lengths) - expected.lengths
    want = b"".join(expected.data[s:s + k].tobytes() for s, k in zip(starts[inside], expected.lengths[inside]))
    assert got.data.tobytes() == want


@pytest.mark.parametrize("fam,wkt", [(POLYGON, "POLYGON ((0 0, 10 0, 10 10, 0 0))"),
                                     (LINESTRING, "LINESTRING (0 0, 10 10)"), (POINT, "POINT (3 4)")])
def test_one_geometry_of_each_single_kind(fam, wkt, monkeypatch):
    size = tile_size(Z)
    left, top = TX * size - HALF_WORLD, HALF_WORLD - TY * size
    g = shapely.affinity.translate(shapely.affinity.scale(shapely.from_wkt(wkt), 20, 20, origin=(0, 0)),
                                   left + size / 2, top - size / 2)
    geoms, family = np.array([g], dtype=object), np.array([fam], dtype=np.int8)
    fast = _encode(geoms, family)
    monkeypatch.setattr(mvt_geometry, "_single_path", lambda parts, types, f: np.zeros(len(parts), dtype=bool))
    assert fast.lengths[0] > 0 and fast.data.tobytes() == _encode(geoms, family).data.tobytes()
