"""Tiles of our own engine are gzip streams made by ISA-L with no timestamp: the same bytes
every build, and readable by any gzip reader (zlib here; pmtiles and GDAL in test_mvt_engine)."""
from __future__ import annotations

import gzip
import zlib

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from isal import igzip

from pipelines.store.gpkg import GeoPackageStore
from tiles import mvt_zoom
from tiles.mvt_geometry import web_mercator
from tiles.mvt_values import value_table
from tiles.mvt_zoom import LayerFrame, Shapes, encode_zoom
from tiles.pmtiles_build import build_pmtiles

SEOUL = (126.978, 37.5665)


def _footprints(n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = SEOUL[0] + rng.uniform(-0.01, 0.01, n)
    y = SEOUL[1] + rng.uniform(-0.008, 0.008, n)
    w = rng.uniform(0.00003, 0.0003, n)
    return shapely.box(x, y, x + w, y + 0.7 * w), pd.DataFrame(
        {"id": [f"f{i}" for i in range(n)], "kind": rng.choice(["a", "bb", "ccc"], n)})


def _zoom_tiles(n: int = 3000, z: int = 14):
    lonlat, attrs = _footprints(n)
    merc = web_mercator(lonlat)
    frame = LayerFrame.of("b", list(attrs.columns))
    return encode_zoom(merc, Shapes.of(merc), value_table(attrs), frame, z, 0.0, 500_000).tiles


def test_tiles_are_isal_gzip_without_a_timestamp():
    assert mvt_zoom._GZIP_LEVEL in range(4)  # ISA-L's levels
    tiles = _zoom_tiles()
    assert len(tiles) > 3
    for _, _, _, data, raw_len in tiles:
        assert data[:4] == b"\x1f\x8b\x08\x00" and data[4:8] == b"\0\0\0\0"  # gzip, no name, mtime 0
        raw = zlib.decompress(data, wbits=31)  # a plain zlib reader takes it
        assert len(raw) == raw_len
        assert data == igzip.compress(raw, compresslevel=mvt_zoom._GZIP_LEVEL, mtime=0)


def test_two_builds_give_the_same_archive(tmp_path):
    lonlat, attrs = _footprints(2000, seed=8)
    store = GeoPackageStore(tmp_path / "store.gpkg")
    store.publish("b", gpd.GeoDataFrame(attrs, geometry=lonlat, crs="EPSG:4326"))
    archives = []
    for i in range(2):
        out = tmp_path / f"b{i}.pmtiles"
        build_pmtiles(store, "b", out, 12, 15, None, progress=False)
        archives.append(out.read_bytes())
    assert archives[0] == archives[1]
    assert len(archives[0]) > 10_000


def test_tiles_decompress_with_python_gzip_to_what_was_counted():
    for _, _, _, data, raw_len in _zoom_tiles(800, 15):
        assert len(gzip.decompress(data)) == raw_len
