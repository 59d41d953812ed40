"""Flood exposure on the sample city (citytwin sample-city + build + serve) against an independent overlay.

The process ``hazard-exposure`` runs over real HTTP with an API key from CITYTWIN_API_KEYS.
The expectation is computed here without our code: the flood depth GeoTIFF that sample-city
wrote (not the COG) is read with rasterio, every cell centre becomes a point, and a
geopandas spatial join of those points within the published footprints (fetched through
OGC API Features) gives each building's deepest cell; a footprint holding no cell centre
takes the cell under its representative point. Per-dong counts are a join of the affected
buildings' representative points with the published dong polygons.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

from api_server import serve

KEY_ID, KEY = "sample-ops", "sample-city-key-31415"
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def project(built_sample_city: Path) -> Path:
    return built_sample_city


@pytest.fixture(scope="module")
def base(project: Path) -> Iterator[str]:
    with serve(project, extra_env={"CITYTWIN_API_KEYS": f"{KEY_ID}:{KEY}"}) as url:
        yield url


def _collection(base: str, name: str) -> gpd.GeoDataFrame:
    body = httpx.get(f"{base}/collections/{name}/items", params={"f": "json", "limit": 10000}, timeout=120).json()
    assert body["numberMatched"] == body["numberReturned"], f"{name}: not all items in one page"
    gdf = gpd.GeoDataFrame.from_features(body["features"], crs="EPSG:4326")
    gdf["id"] = [str(f["id"]) for f in body["features"]]
    return gdf


def _expected_depths(buildings: gpd.GeoDataFrame, tif: Path) -> pd.Series:
    with rasterio.open(tif) as ds:
        depth = ds.read(1, masked=True).astype("float64").filled(np.nan)
        transform, crs = ds.transform, ds.crs
    rows, cols = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
    ok = np.isfinite(depth.ravel())
    x, y = transform @ (cols.ravel()[ok] + 0.5, rows.ravel()[ok] + 0.5)
    centres = gpd.GeoDataFrame({"depth": depth.ravel()[ok]}, geometry=gpd.points_from_xy(x, y), crs=crs)
    b = buildings[["id", "geometry"]].to_crs(crs)
    best = gpd.sjoin(centres, b, predicate="within").groupby("id")["depth"].max()
    rest = b[~b["id"].isin(best.index)]
    pts = rest.geometry.representative_point()
    inv = ~transform
    extra = {}
    for bid, p in zip(rest["id"], pts):
        c, r = inv @ (p.x, p.y)
        r, c = int(np.floor(r)), int(np.floor(c))
        if 0 <= r < depth.shape[0] and 0 <= c < depth.shape[1] and np.isfinite(depth[r, c]):
            extra[bid] = depth[r, c]
    return pd.concat([best, pd.Series(extra, dtype="float64")])


def test_flood_exposure_matches_an_independent_overlay(base: str, project: Path) -> None:
    catalog = yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))
    tif = project / catalog["layers"]["flood_depth"]["source"]
    buildings = _collection(base, "buildings")
    dong = _collection(base, "dong")

    resp = httpx.post(f"{base}/processes/hazard-exposure/execution", headers={"X-API-Key": KEY}, timeout=300,
                      json={"inputs": {"hazard": "flood_depth", "threshold": THRESHOLD,
                                       "targets": ["buildings"], "areas": "dong"}})
    assert resp.status_code == 200, resp.text
    out = resp.json()["targets"]["buildings"]
    got = {f["id"]: f["properties"]["max_depth"] for f in out["features"]["features"]}

    depths = _expected_depths(buildings, tif)
    expected = depths[depths > THRESHOLD]
    assert out["total"] == len(buildings)
    assert 20 < len(expected) < len(buildings) / 2  # the scenario floods some, not most, of the district
    assert set(got) == set(expected.index)
    assert out["affected"] == len(expected)
    for bid, d in got.items():
        assert d == pytest.approx(float(expected[bid]), abs=1e-3)
    assert out["max_depth"] == pytest.approx(float(expected.max()), abs=1e-3)

    hit = buildings[buildings["id"].isin(expected.index)]
    pts = gpd.GeoDataFrame({"bid": hit["id"]}, geometry=hit.geometry.representative_point(), crs="EPSG:4326")
    per_dong = gpd.sjoin(pts, dong[["id", "geometry"]], predicate="within")["id"].value_counts()
    counts = {a["id"]: a["counts"]["buildings"] for a in resp.json()["areas"]["items"]}
    assert set(counts) == set(dong["id"])
    assert counts == {d: int(per_dong.get(d, 0)) for d in dong["id"]}
    assert sum(counts.values()) <= len(expected)
