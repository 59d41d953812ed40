"""tile_tags against a tile-by-tile reading of the MVT rules written out in plain Python: each
tile's value table lists the values its features use in the order of first use, and a tag
points at the value's place in that table. tile_tags finds that order without sorting."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tiles.mvt_values import tile_tags, value_table


def _varint_len(v: int) -> int:
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def _by_hand(table, feat, tile, n_tiles):
    ints, tag_bytes, values, per_tile, first_use, per_pair = [], [], [], [0] * n_tiles, [], []
    tables: dict[int, dict[int, int]] = {}
    for f, t in zip(feat.tolist(), tile.tolist()):
        own = tables.setdefault(t, {})
        mine, added = [], 0
        for col, gid in enumerate(table.codes[f].tolist()):
            if gid < 0:
                continue
            if gid not in own:
                own[gid] = len(own)
                values.append(gid)
                per_tile[t] += 1
                added += int(table.lengths[gid])
            mine += [col, own[gid]]
        ints += mine
        tag_bytes.append(sum(_varint_len(v) for v in mine))
        first_use.append(added)
        per_pair.append(len(mine))
    return ints, tag_bytes, values, per_tile, first_use, per_pair


def _attrs(n: int, rng) -> pd.DataFrame:
    kinds = np.array(["a", "bb", None, "가나다"], dtype=object)
    return pd.DataFrame({
        "id": [f"f{i}" for i in range(n)],  # all distinct: ranks past 127 take two varint bytes
        "kind": kinds[rng.integers(0, 4, n)],
        "height": np.where(rng.random(n) < 0.3, np.nan, rng.integers(1, 9, n) * 3.0),
        "public": rng.random(n) < 0.5,
    })


@pytest.mark.parametrize("seed,n,n_tiles,pairs", [(1, 400, 7, 1500), (2, 3000, 2, 6000), (3, 50, 40, 300),
                                                  (4, 1, 1, 1)])
def test_tags_and_tables_are_those_of_the_rules(seed, n, n_tiles, pairs):
    rng = np.random.default_rng(seed)
    table = value_table(_attrs(n, rng))
    tile = np.sort(rng.integers(0, n_tiles, pairs))
    feat = rng.integers(0, n, pairs)  # a feature may come back in its tile: same ranks again
    got = tile_tags(table, feat, tile, n_tiles)
    ints, tag_bytes, values, per_tile, first_use, per_pair = _by_hand(table, feat, tile, n_tiles)
    assert got.tag_ints.tolist() == ints
    assert got.tag_bytes.tolist() == tag_bytes
    assert got.values.tolist() == values
    assert got.values_per_tile.tolist() == per_tile
    assert got.first_use_bytes.tolist() == first_use
    assert got.ints_per_pair.tolist() == per_pair


def test_no_pairs_and_no_values():
    table = value_table(pd.DataFrame({"kind": pd.Series([None, None], dtype=object)}))
    for feat, tile, n_tiles in ((np.empty(0, np.int64), np.empty(0, np.int64), 0),
                                (np.array([0, 1, 1]), np.array([0, 0, 1]), 2)):
        got = tile_tags(table, feat, tile, n_tiles)
        assert got.tag_ints.size == 0 and got.values.size == 0
        assert got.tag_bytes.tolist() == got.first_use_bytes.tolist() == [0] * len(feat)
        assert got.values_per_tile.tolist() == [0] * n_tiles


def test_first_use_order_is_found_without_sorting(monkeypatch):
    rng = np.random.default_rng(9)
    table = value_table(_attrs(500, rng))
    tile = np.sort(rng.integers(0, 5, 2000))
    feat = rng.integers(0, 500, 2000)

    def refuse(*args, **kwargs):
        raise AssertionError("sorted")

    for name in ("unique", "argsort", "sort", "lexsort"):
        monkeypatch.setattr(np, name, refuse)
    got = tile_tags(table, feat, tile, 5)
    monkeypatch.undo()
    assert got.values.tolist() == _by_hand(table, feat, tile, 5)[2]
