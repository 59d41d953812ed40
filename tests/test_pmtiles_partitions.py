"""A PMTiles build split into blocks that read their own rows writes the whole-layer build's bytes."""
from __future__ import annotations

import gzip
import json
import pickle
import sys
from pathlib import Path

import geopandas as gpd
import mapbox_vector_tile
import morecantile
import numpy as np
import pandas as pd
import pytest
import shapely
from pmtiles.reader import MmapSource, all_tiles

from pipelines.store.gpkg import GeoPackageStore
from tiles.pmtiles_build import build_pmtiles
from tiles.pmtiles_partitions import (WHOLE_LAYER_FEATURES, ZOOM_COSTS, ZOOM_SPLIT_SLACK, Partition, RowSlice, StoreRef,
                                      _layer_of, first_read_bbox, longest_first, plan, read_slice, row_slices,
                                      zoom_ranges)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package
from benchmarks.citygen import generate  # noqa: E402

MINZOOM, MAXZOOM = 12, 16
TILE_LIMIT = 40_000  # small enough that many low-zoom tiles, on block edges too, are cut by the budget


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> tuple[GeoPackageStore, tuple[float, ...]]:
    city = generate(40_000, seed=11).buildings.to_crs(4326)
    city.insert(0, "id", city["bld_id"].astype(str))
    store = GeoPackageStore(tmp_path_factory.mktemp("parts") / "store.gpkg")
    store.publish("buildings", city)
    # points all tie on size, so their order in a tile is the store's row order: a block must keep it
    entrances = city[["id"]].set_geometry(city.geometry.representative_point()).sample(frac=1, random_state=3)
    store.publish("entrances", entrances)
    return store, tuple(city.total_bounds)


def _blocks(bounds: tuple[float, ...], bz: int, zooms: tuple[int, int]) -> list[Partition]:
    tms = morecantile.tms.get("WebMercatorQuad")
    return [Partition(bz, t.x, t.y, zooms) for t in tms.tiles(*bounds, zooms=[bz])]


def _ids_per_zoom(path: Path) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    with open(path, "rb") as f:
        for (z, _, _), data in all_tiles(MmapSource(f)):
            layer = mapbox_vector_tile.decode(gzip.decompress(data))["buildings"]
            out.setdefault(z, set()).update(str(feat["properties"]["id"]) for feat in layer["features"])
    return out


def test_blocks_write_the_whole_layer_bytes_and_counts(dense, tmp_path: Path):
    store, bounds = dense
    whole = build_pmtiles(store, "buildings", tmp_path / "whole.pmtiles", MINZOOM, MAXZOOM, None,
                          max_tile_bytes=TILE_LIMIT, progress=False,
                          partitions=[Partition(0, 0, 0, (MINZOOM, MAXZOOM))])
    plans = {
        # blocks one zoom below their first zoom: most features sit next to a block edge
        "z13 blocks": [Partition(0, 0, 0, (MINZOOM, 13))] + _blocks(bounds, 13, (14, MAXZOOM)),
        "z12 blocks": _blocks(bounds, 12, (MINZOOM, MAXZOOM)),
    }
    for name, parts in plans.items():
        assert len([p for p in parts if p.bz]) >= 2, name  # the test needs block edges inside the city
        got = build_pmtiles(store, "buildings", tmp_path / f"{name}.pmtiles", MINZOOM, MAXZOOM, None,
                            max_tile_bytes=TILE_LIMIT, progress=False, partitions=parts)
        assert got.path.read_bytes() == whole.path.read_bytes(), name
        assert got.zooms == whole.zooms, name
        assert got.features == whole.features == 40_000
        assert got.partitions == len(parts)
    cut = [r for r in whole.zooms if r.dropped_for_size]
    assert cut and cut[-1].zoom >= 14, "the budget must cut tiles where the blocks split the city"
    # the report's counts are the distinct ids found in the archive
    ids = _ids_per_zoom(whole.path)
    assert {z: len(v) for z, v in ids.items()} == {r.zoom: r.features_written for r in whole.zooms}


def test_any_thread_count_writes_the_same_bytes(dense, tmp_path: Path):
    """Zooms encoded at once on threads (in a whole-layer partition and in blocks) change nothing."""
    store, bounds = dense
    plans = {"whole": [Partition(0, 0, 0, (MINZOOM, MAXZOOM))],
             "blocks": [Partition(0, 0, 0, (MINZOOM, 13))] + _blocks(bounds, 13, (14, MAXZOOM))}
    for name, parts in plans.items():
        archives = []
        for threads in (1, 3):
            out = tmp_path / f"{name}-{threads}.pmtiles"
            report = build_pmtiles(store, "buildings", out, MINZOOM, MAXZOOM, None, max_tile_bytes=TILE_LIMIT,
                                   progress=False, partitions=parts, threads=threads)
            assert report.dropped_per_zoom[MINZOOM] > 0  # the budget cut something: the zooms differ in work
            archives.append(out.read_bytes())
        assert archives[0] == archives[1], name


def test_blocks_keep_the_row_order_of_tied_features(dense, tmp_path: Path):
    store, bounds = dense
    kw = dict(max_tile_bytes=TILE_LIMIT, progress=False)
    whole = build_pmtiles(store, "entrances", tmp_path / "whole.pmtiles", 13, MAXZOOM, None,
                          partitions=[Partition(0, 0, 0, (13, MAXZOOM))], **kw)
    got = build_pmtiles(store, "entrances", tmp_path / "blocks.pmtiles", 13, MAXZOOM, None,
                        partitions=_blocks(bounds, 13, (13, MAXZOOM)), **kw)
    assert whole.zooms[0].dropped_for_size > 0  # ties decided by row order at the budget
    assert got.path.read_bytes() == whole.path.read_bytes()
    assert got.zooms == whole.zooms


def test_partitions_go_longest_first_by_the_rows_they_read(dense, tmp_path: Path):
    store, bounds = dense
    city = store.read("buildings")
    blocks = _blocks(bounds, 13, (14, MAXZOOM))
    parts = [Partition(0, 0, 0, (MINZOOM, 13))] + blocks
    ordered = longest_first(parts, lambda bbox: store.count("buildings", bbox), len(city))
    assert sorted(ordered, key=parts.index) == parts  # the same partitions
    envelopes = city.geometry.envelope.values
    rows = [int(shapely.intersects(envelopes, shapely.box(*first_read_bbox(p))).sum()) for p in blocks]
    assert len(set(rows)) > 2  # the city is denser in places: the order is not the plan's by chance
    weight = dict(zip(range(MAXZOOM, MAXZOOM - len(ZOOM_COSTS), -1), ZOOM_COSTS))
    cost = [len(city) * (weight[12] + weight[13])] + [r * (weight[14] + weight[15] + weight[16]) for r in rows]
    assert ordered == [parts[i] for i in sorted(range(len(parts)), key=lambda i: -cost[i])]
    assert ordered != parts
    got = build_pmtiles(store, "buildings", tmp_path / "ordered.pmtiles", MINZOOM, MAXZOOM, None,
                        max_tile_bytes=TILE_LIMIT, progress=False, partitions=ordered)
    whole = build_pmtiles(store, "buildings", tmp_path / "whole.pmtiles", MINZOOM, MAXZOOM, None,
                          max_tile_bytes=TILE_LIMIT, progress=False,
                          partitions=[Partition(0, 0, 0, (MINZOOM, MAXZOOM))])
    assert got.path.read_bytes() == whole.path.read_bytes()


def test_summary_has_the_drivers_share(dense, tmp_path: Path):
    store, _ = dense
    report = build_pmtiles(store, "buildings", tmp_path / "a.pmtiles", 15, 16, None, progress=False)
    line = report.summary()
    assert f"{report.partitions} partition(s), driver " in line
    share = float(line.rsplit("(", 1)[1].split("%")[0])
    assert 0 <= share <= 100
    assert 0 < report.driver_seconds < report.seconds


def _owner_counts(parts: list[Partition], bounds: tuple[float, ...], minzoom: int, maxzoom: int) -> dict:
    """How many partitions hold each tile over the bounds at each zoom (a block holds the tiles under it)."""
    tms = morecantile.tms.get("WebMercatorQuad")
    counts = {}
    for z in range(minzoom, maxzoom + 1):
        for t in tms.tiles(*bounds, zooms=[z]):
            counts[(z, t.x, t.y)] = sum(
                p.zooms[0] <= z <= p.zooms[1] and (p.bz == 0 or (t.x >> (z - p.bz), t.y >> (z - p.bz)) == (p.bx, p.by))
                for p in parts)
    return counts


def test_four_workers_get_blocks_a_zoom_finer_and_the_longest_partition_first():
    seoul_city = (126.8376, 37.4519, 127.1171, 37.6741)  # the generated 600k city's extent, 25 x 25 km
    tms = morecantile.tms.get("WebMercatorQuad")
    # past WHOLE_LAYER_FEATURES blocks bound a worker's memory (six: enough for two workers too)
    big = WHOLE_LAYER_FEATURES + 1
    one, four = plan(seoul_city, big, 10, 16, workers=2), plan(seoul_city, big, 10, 16, workers=4)
    assert plan(seoul_city, big, 10, 16) == one
    for parts in (one, four):
        assert parts[0] == Partition(0, 0, 0, (10, 13))  # the whole layer's low zooms, longest, go first
        assert all(p.zooms == (14, 16) for p in parts[1:])
        assert set(_owner_counts(parts, seoul_city, 10, 16).values()) == {1}  # every tile made exactly once
    assert {(p.bx, p.by) for p in one[1:]} == {(t.x, t.y) for t in tms.tiles(*seoul_city, zooms=[11])}
    assert {(p.bx, p.by) for p in four[1:]} == {(t.x, t.y) for t in tms.tiles(*seoul_city, zooms=[12])}
    assert {p.bz for p in one[1:]} == {11} and {p.bz for p in four[1:]} == {12}
    assert len(one) - 1 == 6 and len(four) - 1 >= 2 * 4


def test_a_layer_that_fits_one_worker_is_split_by_zoom_on_a_few():
    seoul_city = (126.8376, 37.4519, 127.1171, 37.6741)
    # one worker reads the layer once: blocks would only re-read their rings
    assert plan(seoul_city, 600_000, 10, 16) == [Partition(0, 0, 0, (10, 16))]
    two = plan(seoul_city, 600_000, 10, 16, workers=2)
    assert [p.zooms for p in two] == [(16, 16), (15, 15), (14, 14), (10, 13)] and not any(p.bz for p in two)
    # the ranges read the layer once between them, a slice a worker
    assert row_slices(two, 600_000, 2) == [RowSlice(0, 300_000), RowSlice(300_000, None)]
    assert row_slices(two, 600_000, 1) == [RowSlice(0, None)]
    costs = dict(zip(range(16, 9, -1), ZOOM_COSTS))
    shares = sorted((sum(costs[z] for z in range(p.zooms[0], p.zooms[1] + 1)) for p in two), reverse=True)
    finish = [shares[0] + shares[3], shares[1] + shares[2]]  # handed out longest first to the free worker
    assert max(finish) <= ZOOM_SPLIT_SLACK * sum(costs.values()) / 2
    for workers in (3, 4):  # finer ranges, each zoom in exactly one, deepest first
        ranges = zoom_ranges(10, 16, workers)
        assert ranges == sorted(ranges, reverse=True) and len(ranges) > workers
        assert sorted(z for a, b in ranges for z in range(a, b + 1)) == list(range(10, 17))
    # five: z14 alone would hold the others up, so blocks
    five = plan(seoul_city, 600_000, 10, 16, workers=5)
    assert zoom_ranges(10, 16, 5) is None and all(p.bz for p in five[1:]) and row_slices(five, 600_000, 5) == []
    assert zoom_ranges(16, 16, 2) is None  # one zoom has no ranges
    # the costliest ranges go first, whatever their number of zooms
    assert [p.zooms for p in longest_first(two, lambda bbox: 0, 600_000)][:2] == [(14, 14), (15, 15)]


def test_zoom_ranges_on_shared_slices_write_the_whole_layer_bytes(dense, tmp_path: Path):
    store, _ = dense
    whole = build_pmtiles(store, "buildings", tmp_path / "whole.pmtiles", MINZOOM, MAXZOOM, None,
                          max_tile_bytes=TILE_LIMIT, progress=False, partitions=[Partition(0, 0, 0, (MINZOOM, MAXZOOM))])
    for ranges in (((15, 16), (12, 14)), ((16, 16), (14, 15), (12, 13))):
        parts = [Partition(0, 0, 0, r) for r in ranges]
        got = build_pmtiles(store, "buildings", tmp_path / f"{len(parts)}.pmtiles", MINZOOM, MAXZOOM, None,
                            max_tile_bytes=TILE_LIMIT, progress=False, partitions=parts)
        assert got.path.read_bytes() == whole.path.read_bytes()
        assert got.zooms == whole.zooms and got.features == whole.features == 40_000
        slices = [c for c in got.partition_costs if not c.zooms]
        assert len(slices) == 1 and slices[0].rows == 40_000  # in process, the layer read once
        assert all(c.rows == 0 for c in got.partition_costs if c.zooms)


def _nulls_in_one_slice(n: int = 2_000) -> gpd.GeoDataFrame:
    """Columns whose NULLs all fall in the second half: each slice alone infers another dtype."""
    city = generate(n, seed=4).buildings.to_crs(4326)
    late = np.arange(n) >= n // 2 + 10
    early = np.arange(n) < n // 2 + 10
    return gpd.GeoDataFrame({
        "id": [f"f{i:05d}" for i in range(n)],
        "floors": pd.array([None if x else i % 30 for i, x in enumerate(late)], dtype="Int64"),
        "listed": pd.array([None if x else i % 2 == 0 for i, x in enumerate(late)], dtype="boolean"),
        "listed_early": pd.array([None if x else i % 3 == 0 for i, x in enumerate(early)], dtype="boolean"),
        "note": [None if x else f"n{i % 7}" for i, x in enumerate(early)],
        "gone": pd.array([None if x else i for i, x in enumerate(early)], dtype="Int64"),
    }, geometry=city.geometry.values, crs=4326)


@pytest.mark.parametrize("kind", ["gpkg", pytest.param("postgis", marks=pytest.mark.postgis)])
def test_slices_whose_columns_differ_in_dtype_write_the_whole_read_bytes(kind, request, tmp_path: Path):
    if kind == "gpkg":
        store = GeoPackageStore(tmp_path / "store.gpkg")
    else:
        from pipelines.store.postgis import PostGISStore

        store = PostGISStore(request.getfixturevalue("pg_db_url"))
    try:
        store.publish("mixed", _nulls_in_one_slice())
        halves = [store.read("mixed", rows=(0, 1_000)), store.read("mixed", rows=(1_000, None))]
        differ = [c for c in ("floors", "listed", "listed_early", "note", "gone")
                  if halves[0][c].dtype != halves[1][c].dtype]
        assert len(differ) >= 3, differ  # the case under test: each half alone infers another dtype
        kw = dict(max_tile_bytes=TILE_LIMIT, progress=False)
        whole = build_pmtiles(store, "mixed", tmp_path / "whole.pmtiles", 14, 16, None,
                              partitions=[Partition(0, 0, 0, (14, 16))], **kw)
        got = build_pmtiles(store, "mixed", tmp_path / "ranges.pmtiles", 14, 16, None,
                            partitions=[Partition(0, 0, 0, (16, 16)), Partition(0, 0, 0, (14, 15))], **kw)
        assert got.path.read_bytes() == whole.path.read_bytes()
        assert json.loads(got.tilejson_path.read_text()) == json.loads(whole.tilejson_path.read_text())
    finally:
        store.close()


def test_slices_are_joined_once_a_worker_and_move_without_the_join(dense):
    store, _ = dense
    ref = StoreRef.of(store)
    slices = [read_slice(RowSlice(0, 100), store=ref, layer="buildings", fields=None),
              read_slice(RowSlice(100, 250), store=ref, layer="buildings", fields=None)]
    layer = _layer_of(slices)
    assert _layer_of(slices) is layer and len(layer[0].merc) == 250  # the next range reuses it
    moved = pickle.loads(pickle.dumps(slices[0]))  # as Dask hands a slice to another worker
    assert moved.joined is None and len(moved.merc) == 100 and list(moved.attrs["id"]) == list(slices[0].attrs["id"])
