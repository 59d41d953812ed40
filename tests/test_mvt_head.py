"""The engine's first guess at which pairs of a tile reach the size budget, made on each tile's
leading pairs only: the same pairs as guessing over the whole tile, in memory that does not
follow a low-zoom tile of 100,000s of features."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import shapely

from tiles import mvt_zoom
from tiles.mvt_geometry import web_mercator
from tiles.mvt_values import tile_tags, value_table
from tiles.mvt_zoom import LayerFrame, Shapes, encode_zoom, expand_to_tiles

SEOUL = (126.978, 37.5665)


def _city(n: int, seed: int = 5, spread: float = 0.05):
    """``n`` footprints around Seoul with an id, a repeated and a unique text value each."""
    rng = np.random.default_rng(seed)
    x = SEOUL[0] + rng.uniform(-spread, spread, n)
    y = SEOUL[1] + rng.uniform(-0.8 * spread, 0.8 * spread, n)
    w = rng.uniform(0.00003, 0.0003, n)
    merc = web_mercator(shapely.box(x, y, x + w, y + 0.7 * w))
    attrs = pd.DataFrame({"id": [f"f{i}" for i in range(n)], "kind": rng.choice(["a", "bb", "ccc"], n),
                          "note": [f"note {i} of {n}" for i in range(n)]})
    return merc, Shapes.of(merc), value_table(attrs)


def _pairs(shape: Shapes, z: int):
    """(feature, tile index) pairs sorted by tile, then largest first, as the engine orders them."""
    feat, key = expand_to_tiles(shape.bounds, z)
    order = np.lexsort((feat, -shape.area[feat], key))
    feat, key = feat[order], key[order]
    tile = np.cumsum(np.r_[False, key[1:] != key[:-1]])
    return feat, tile, int(tile[-1]) + 1


def _whole_tile_head(shape: Shapes, table, feat, tile, n_tiles: int, limit: float) -> np.ndarray:
    """The guess written out over every pair of every tile at once."""
    tags = tile_tags(table, feat, tile, n_tiles)
    vlen = lambda v: 1 + (v >= 128) + (v >= 16384)  # noqa: E731  (protobuf varint bytes, to 2**21)
    geom = 2 * shape.coords[feat] + 3  # a MoveTo, LineTo and ClosePath around two ints a vertex
    body = 1 + vlen(tags.tag_bytes) + tags.tag_bytes + 2 + 1 + vlen(geom) + geom  # tags, type, geometry
    guess = 1 + vlen(body) + body + tags.first_use_bytes  # Layer.features field, and values it adds
    before = np.zeros(len(feat))
    for t in range(n_tiles):
        idx = np.flatnonzero(tile == t)
        before[idx] = np.cumsum(guess[idx]) - guess[idx]
    return before <= limit


def test_head_from_leading_pairs_is_the_whole_tile_guess():
    _, shape, table = _city(30_000)
    for z, widenings in ((10, 2), (12, 1)):  # tiles of more pairs than the first prefixes hold
        feat, tile, n_tiles = _pairs(shape, z)
        assert np.bincount(tile).max() > 4 ** (widenings - 1) * mvt_zoom._GUESS_PREFIX
        for limit in (5_000, 400_000, 750_000, 5_000_000, 1e12):  # inside, across and past the prefixes
            got = mvt_zoom._guessed_head(shape, table, feat, tile, n_tiles, limit)
            want = _whole_tile_head(shape, table, feat, tile, n_tiles, limit)
            assert np.array_equal(got, want), (z, limit)
            assert got.sum() < len(feat) or limit >= 5_000_000  # the smaller limits cut tiles short


def test_a_crowded_low_zoom_tile_costs_its_head_not_its_tag_table():
    """120,000 features in one z10 tile: before, guessing sizes built tag arrays for every pair
    (475 bytes traced a feature); the engine's traced peak now stays under 250 bytes a feature."""
    n = 120_000
    merc, shape, table = _city(n, seed=6, spread=0.02)
    frame = LayerFrame.of("city", ["id", "kind", "note"])
    tracemalloc.start()
    try:
        got = encode_zoom(merc, shape, table, frame, 10, 0.0, 500_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(got.tiles) == 1 and got.dropped_for_size > 0.8 * n  # one tile, cut by the budget
    assert peak < 250 * n, f"{peak / n:.0f} bytes traced per feature"
