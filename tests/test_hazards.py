"""Hazard rasters, titiler, flood fill, exposure processes with API keys, and hotspots.

One served project (``citytwin serve`` over real HTTP) holds: the API test buildings and
landmarks, four admin areas, two hazard zones, a flood-depth raster in EPSG:5186 built into
a COG, and a hotspot layer. Expected values are computed here with other means: pyproj for
pixel positions, geopandas joins of cell centres and overlays for exposure, h3 for cells.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import geopandas as gpd
import h3
import httpx
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from api_server import CITY_HALL, sample_buildings, sample_landmarks, serve

KEY_ID, KEY = "ops-team", "s3cret-key-for-tests-0123"
RASTER_CRS = "EPSG:5186"
CELL = 10.0
TO_5186 = Transformer.from_crs("EPSG:4326", RASTER_CRS, always_xy=True)
TO_LL = Transformer.from_crs(RASTER_CRS, "EPSG:4326", always_xy=True)

CATALOG = f"""\
name: hazard test city
api_keys_file: secrets/api_keys.txt
layers:
  buildings:
    kind: buildings
    minzoom: 13
    maxzoom: 15
  landmarks:
    kind: pois
    minzoom: 12
    maxzoom: 14
  areas:
    kind: boundaries
    minzoom: 10
    maxzoom: 13
  zones:
    kind: hazard_zones
    minzoom: 10
    maxzoom: 14
  flood:
    kind: raster
    title: Flood depth
    source: data/flood.tif
"""


def flood_array() -> tuple[np.ndarray, object]:
    """A 180 x 180 grid of 10 m cells centred on City Hall: depth rises in 6 x 6-cell blocks
    inside a wet square; each block has its own value so a pixel's value is unambiguous."""
    cx, cy = TO_5186.transform(*CITY_HALL)
    x0, y1 = np.floor(cx / CELL) * CELL - 900, np.floor(cy / CELL) * CELL + 900
    rows = cols = 180
    r, c = np.mgrid[0:rows, 0:cols]
    depth = ((r // 6) * 0.05 + (c // 6) * 0.01).astype(np.float32)
    wet = (r >= 30) & (r < 120) & (c >= 42) & (c < 150)
    return np.where(wet, depth, 0.0).astype(np.float32), from_origin(x0, y1, CELL, CELL)


def areas_gdf() -> gpd.GeoDataFrame:
    """Four quadrants around City Hall, 1.2 km each way."""
    lon, lat = CITY_HALL
    d_lon, d_lat = 0.0136, 0.0109
    boxes = [shapely.box(lon - d_lon, lat, lon, lat + d_lat), shapely.box(lon, lat, lon + d_lon, lat + d_lat),
             shapely.box(lon - d_lon, lat - d_lat, lon, lat), shapely.box(lon, lat - d_lat, lon + d_lon, lat)]
    return gpd.GeoDataFrame({"id": ["nw", "ne", "sw", "se"], "name": ["North-west", "North-east", "South-west",
                                                                     "South-east"]},
                            geometry=boxes, crs="EPSG:4326")


def zones_gdf() -> gpd.GeoDataFrame:
    lon, lat = CITY_HALL
    z1 = shapely.Point(lon - 0.003, lat + 0.002).buffer(0.002)
    z2 = shapely.box(lon + 0.001, lat - 0.006, lon + 0.006, lat - 0.002)
    return gpd.GeoDataFrame({"id": ["landslide-1", "inundation-2"], "name": ["Slope", "Low ground"]},
                            geometry=[z1, z2], crs="EPSG:4326")


def incident_points(n: int = 400, seed: int = 11) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    lon = CITY_HALL[0] + rng.normal(0, 0.004, n)
    lat = CITY_HALL[1] + rng.normal(0, 0.003, n)
    return gpd.GeoDataFrame({"kind": rng.choice(["crash", "theft"], n)}, geometry=gpd.points_from_xy(lon, lat),
                            crs="EPSG:4326")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from pipelines.catalog import load_catalog
    from pipelines.rasters import build_raster_layer, write_geotiff
    from pipelines.store import open_store
    from tiles.pmtiles_build import build_pmtiles

    root = tmp_path_factory.mktemp("hazards")
    (root / "data").mkdir()
    (root / "secrets").mkdir()
    (root / "secrets" / "api_keys.txt").write_text(f"# test keys\n{KEY_ID}: {KEY}\n", encoding="utf-8")
    (root / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    depth, transform = flood_array()
    write_geotiff(root / "data" / "flood.tif", depth, transform, RASTER_CRS)
    catalog = load_catalog(root)
    build_raster_layer(catalog, "flood")
    layers = {"buildings": sample_buildings(), "landmarks": sample_landmarks(), "areas": areas_gdf(),
              "zones": zones_gdf()}
    store = open_store(catalog.build_path)
    try:
        for name, gdf in layers.items():
            store.publish(name, gdf)
            cfg = catalog.layers[name]
            build_pmtiles(store, name, catalog.build_path / "tiles" / f"{name}.pmtiles", cfg.minzoom, cfg.maxzoom,
                          cfg.fields, progress=False)
    finally:
        store.close()
    incident_points().to_file(root / "data" / "incidents.geojson", driver="GeoJSON")
    from pipelines.hotspots import build_hotspots

    build_hotspots(root, root / "data" / "incidents.geojson", "incident_hex", h3_res=9)
    build_hotspots(root, root / "data" / "incidents.geojson", "incident_areas", by_layer="areas")
    return root


@pytest.fixture(scope="module")
def base(project) -> str:
    with serve(project) as url:
        yield url


def _execute(base: str, process: str, inputs: dict, key: str | None = KEY, prefer: str | None = None):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    if prefer:
        headers["Prefer"] = prefer
    return httpx.post(f"{base}/processes/{process}/execution", json={"inputs": inputs}, headers=headers,
                      timeout=120)


# -- COG and flood fill ----------------------------------------------------------------------
def test_cog_validates_and_keeps_the_data(project):
    from rio_cogeo.cogeo import cog_validate

    cog = project / "build" / "cog" / "flood.tif"
    valid, errors, _ = cog_validate(str(cog), quiet=True)
    assert valid, errors
    with rasterio.open(cog) as ds:
        assert ds.crs.to_epsg() == 5186
        assert np.array_equal(ds.read(1), flood_array()[0])
        assert len(ds.overviews(1)) == 0 or ds.overviews(1)[0] == 2


def test_cog_from_raster_without_crs_needs_one(tmp_path):
    from geo.errors import CRSError
    from pipelines.rasters import build_cog

    src = tmp_path / "nocrs.tif"
    with rasterio.open(src, "w", driver="GTiff", width=8, height=8, count=1, dtype="float32",
                       transform=from_origin(0, 80, 10, 10)) as ds:
        ds.write(np.ones((8, 8), np.float32), 1)
    with pytest.raises(CRSError, match="--crs"):
        build_cog(src, tmp_path / "out.tif", "x")
    report = build_cog(src, tmp_path / "out.tif", "x", crs="EPSG:5186")
    assert report.crs == "EPSG:5186" and (tmp_path / "out.tif").is_file()


def test_flood_fills_only_the_basin_connected_to_the_source():
    from geo.flood import flood_depth

    dem = np.full((7, 9), 10.0)
    dem[1:4, 1:4] = [[4, 5, 4], [3, 2, 3], [4, 5, 6]]   # basin A (the source's)
    dem[1:5, 5:8] = [[6, 6, 6], [5, 1, 5], [6, 6, 7], [7, 7, 7]]  # basin B, sealed off by the wall at column 4
    dem[4, 4] = 4.0   # touches basin A only diagonally (at row 3, column 3): stays dry
    expected = np.zeros(dem.shape, np.float32)
    expected[1:4, 1:4] = 6.5 - dem[1:4, 1:4]
    got = flood_depth(dem, 6.5, [(2, 2)])
    basin_b = np.zeros(dem.shape, bool)
    basin_b[1:5, 5:8] = dem[1:5, 5:8] < 6.5
    assert basin_b.sum() == 8  # B is below the level too ...
    assert np.array_equal(got, expected)  # ... yet only A floods
    assert got[4, 4] == 0
    assert np.array_equal(flood_depth(dem, 6.5, [(2, 6)]) > 0, basin_b)
    with pytest.raises(ValueError, match="outside"):
        flood_depth(dem, 6.5, [(9, 0)])


# -- titiler -----------------------------------------------------------------------------------
def _cell_lonlat(r: int, c: int) -> tuple[float, float]:
    _, transform = flood_array()
    x, y = transform @ (c + 0.5, r + 0.5)
    return TO_LL.transform(x, y)


def test_point_query_returns_the_pixel_value(base):
    depth, _ = flood_array()
    for r, c in [(33, 45), (75, 100), (117, 147), (10, 10)]:
        lon, lat = _cell_lonlat(r, c)
        resp = httpx.get(f"{base}/cog/point/{lon},{lat}", params={"name": "flood"}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["values"][0] == pytest.approx(float(depth[r, c]), abs=1e-6)


def test_tile_holds_the_pixel_value(base):
    import morecantile

    depth, _ = flood_array()
    tms = morecantile.tms.get("WebMercatorQuad")
    r, c = 75, 100  # a block centre: 3 cells from any other value
    lon, lat = _cell_lonlat(r, c)
    z = 16
    tile = tms.tile(lon, lat, z)
    resp = httpx.get(f"{base}/cog/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.npy",
                     params={"name": "flood", "tilesize": 256}, timeout=30)
    assert resp.status_code == 200, resp.text
    import io

    arr = np.load(io.BytesIO(resp.content))
    b = tms.xy_bounds(tile)
    mx, my = tms.xy(lon, lat)
    px = int((mx - b.left) / (b.right - b.left) * 256)
    py = int((b.top - my) / (b.top - b.bottom) * 256)
    assert arr[0, py, px] == pytest.approx(float(depth[r, c]), abs=1e-6)
    png = httpx.get(f"{base}/cog/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.png",
                    params={"name": "flood", "colormap_name": "flood"}, timeout=30)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert "max-age" in png.headers["cache-control"]


def test_tilejson_statistics_and_colormaps(base):
    depth, _ = flood_array()
    tj = httpx.get(f"{base}/cog/WebMercatorQuad/tilejson.json", params={"name": "flood"}, timeout=30).json()
    assert tj["tiles"][0].startswith(f"{base}/cog/tiles/WebMercatorQuad/")
    west, south, east, north = tj["bounds"]
    sw, ne = _cell_lonlat(179, 0), _cell_lonlat(0, 179)
    assert west < sw[0] < east and south < sw[1] < north and west < ne[0] < east
    stats = httpx.get(f"{base}/cog/statistics", params={"name": "flood"}, timeout=30).json()["b1"]
    assert stats["max"] == pytest.approx(float(depth.max()), abs=1e-6)
    assert stats["count"] == depth.size
    assert stats["mean"] == pytest.approx(float(depth.mean()), rel=1e-4)
    cmaps = httpx.get(f"{base}/cog/colorMaps", timeout=30).json()
    assert {"flood", "flood_ramp"} <= {c["id"] for c in cmaps["colormaps"]}


def test_cog_routes_accept_only_layer_names(base):
    bad = httpx.get(f"{base}/cog/point/126.97,37.56", params={"name": "../citytwin"}, timeout=30)
    assert bad.status_code == 404 and "no raster layer" in bad.text
    url = httpx.get(f"{base}/cog/point/126.97,37.56", params={"url": "/etc/passwd"}, timeout=30)
    assert url.status_code == 422  # 'name' is required; 'url' is not a parameter here
    not_raster = httpx.get(f"{base}/cog/point/126.97,37.56", params={"name": "buildings"}, timeout=30)
    assert not_raster.status_code == 404


def test_raster_layers_are_not_collections(base):
    ids = {c["id"] for c in httpx.get(f"{base}/collections?f=json", timeout=30).json()["collections"]}
    assert "flood" not in ids
    assert {"buildings", "zones", "incident_hex", "incident_areas"} <= ids


# -- processes: API key, audit log -------------------------------------------------------------
def test_process_needs_an_api_key_and_every_call_is_logged(base, project):
    inputs = {"hazard": "zones", "targets": ["landmarks"]}
    missing = _execute(base, "hazard-exposure", inputs, key=None)
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["description"]
    wrong = _execute(base, "hazard-exposure", inputs, key="not-a-valid-key")
    assert wrong.status_code == 401 and "not valid" in wrong.json()["description"]
    ok = _execute(base, "hazard-exposure", inputs)
    assert ok.status_code == 200, ok.text
    log = (project / "build" / "logs" / "audit.log").read_text(encoding="utf-8")
    assert KEY not in log
    entries = [json.loads(line) for line in log.splitlines()]
    mine = [e for e in entries if e.get("who") == KEY_ID and e.get("process") == "hazard-exposure"]
    assert mine and mine[-1]["status"] == 200 and mine[-1]["inputs"] == inputs and mine[-1]["time"]
    assert sum(1 for e in entries if e.get("status") == 401) >= 2
    # Reading process descriptions stays open.
    assert httpx.get(f"{base}/processes/hazard-exposure?f=json", timeout=30).status_code == 200


# -- exposure: independent overlays -------------------------------------------------------------
def _expected_raster_exposure(buildings: gpd.GeoDataFrame, threshold: float) -> pd.Series:
    """Max depth per building from cell centres inside it (a geopandas join), else the cell under
    its representative point."""
    depth, transform = flood_array()
    rows, cols = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
    x, y = transform @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    centres = gpd.GeoDataFrame({"depth": depth.ravel()}, geometry=gpd.points_from_xy(x, y), crs=RASTER_CRS)
    b = buildings.to_crs(RASTER_CRS)
    joined = gpd.sjoin(centres, b[["id", "geometry"]], predicate="within")
    best = joined.groupby("id")["depth"].max()
    for _, row in b[~b["id"].isin(best.index)].iterrows():
        p = row.geometry.representative_point()
        c, r = ~transform @ (p.x, p.y)
        r, c = int(np.floor(r)), int(np.floor(c))
        if 0 <= r < depth.shape[0] and 0 <= c < depth.shape[1]:
            best.loc[row["id"]] = depth[r, c]
    return best[best > threshold]


def test_raster_exposure_matches_an_independent_overlay(base):
    buildings = sample_buildings()
    threshold = 0.3
    resp = _execute(base, "hazard-exposure", {"hazard": "flood", "threshold": threshold,
                                              "targets": ["buildings", "landmarks"], "areas": "areas"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    expected = _expected_raster_exposure(buildings, threshold)
    got = {f["id"]: f["properties"]["max_depth"] for f in out["targets"]["buildings"]["features"]["features"]}
    assert out["targets"]["buildings"]["total"] == len(buildings)
    assert 10 < len(expected) < len(buildings)
    assert set(got) == set(expected.index)
    for bid, d in got.items():
        assert d == pytest.approx(float(expected[bid]), abs=1e-3)
    # Per admin area: the representative point of each affected building, joined to the areas.
    hit = buildings[buildings["id"].isin(expected.index)]
    pts = gpd.GeoDataFrame(hit[["id"]], geometry=hit.geometry.representative_point(), crs="EPSG:4326")
    per_area = gpd.sjoin(pts, areas_gdf().rename(columns={"id": "area"}), predicate="within")["area"].value_counts()
    counts = {a["id"]: a["counts"]["buildings"] for a in out["areas"]["items"]}
    assert counts == {a: int(per_area.get(a, 0)) for a in ["nw", "ne", "sw", "se"]}


def test_zone_exposure_matches_geopandas_overlay(base):
    buildings = sample_buildings()
    resp = _execute(base, "hazard-exposure", {"hazard": "zones", "targets": ["buildings"], "areas": "areas"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    inter = gpd.overlay(buildings.to_crs(5186), zones_gdf().to_crs(5186).rename(columns={"id": "zone"}),
                        how="intersection")
    inter = inter[inter.area > 0]
    expected = set(inter["id"])
    got = {f["id"] for f in out["targets"]["buildings"]["features"]["features"]}
    assert len(expected) > 5 and got == expected
    assert out["targets"]["buildings"]["affected"] == len(expected)


def test_alert_targets_lists_areas_and_buildings(base):
    resp = _execute(base, "alert-targets", {"hazard": "zones", "buildings": "buildings", "areas": "areas",
                                            "buffer_m": 50})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    buildings = sample_buildings().to_crs(5186)
    zones = zones_gdf().to_crs(5186)
    dist = buildings.geometry.apply(lambda g: zones.distance(g).min())
    inter = gpd.overlay(buildings, zones.rename(columns={"id": "zone"}), how="intersection")
    inside = set(inter.loc[inter.area > 0, "id"])
    near = set(buildings.loc[dist <= 50, "id"]) - inside
    got = {b["id"]: b["reason"] for b in out["buildings"]}
    assert {k for k, v in got.items() if v == "inside"} == inside
    assert {k for k, v in got.items() if v == "nearby"} == near
    assert {a["id"] for a in out["areas"]} >= {b["area"] for b in out["buildings"]}


def test_bad_inputs_give_400(base):
    resp = _execute(base, "hazard-exposure", {"hazard": "nope", "targets": ["buildings"]})
    assert resp.status_code == 400 and "nope" in resp.text
    resp = _execute(base, "hazard-exposure", {"hazard": "flood", "targets": "buildings", "threshold": "deep"})
    assert resp.status_code == 400 and "threshold" in resp.text


def test_async_job_runs_to_successful_with_results(base, project):
    inputs = {"hazard": "flood", "threshold": 0.3, "targets": ["buildings"], "areas": "areas"}
    resp = _execute(base, "hazard-exposure", inputs, prefer="respond-async")
    assert resp.status_code == 201, resp.text
    location = resp.headers["Location"]
    job_url = f"{base}/jobs/{location.rstrip('/').rsplit('/', 1)[1]}"
    status = None
    owner = {"X-API-Key": KEY}  # a job is read with the key that started it
    for _ in range(200):
        status = httpx.get(f"{job_url}?f=json", headers=owner, timeout=30).json()["status"]
        if status in ("successful", "failed"):
            break
        time.sleep(0.3)
    assert status == "successful"
    result = httpx.get(f"{job_url}/results?f=json", headers=owner, timeout=30).json()
    sync = _execute(base, "hazard-exposure", inputs).json()
    assert result["targets"]["buildings"]["affected"] == sync["targets"]["buildings"]["affected"] > 0
    # Deleting a job needs the key too.
    assert httpx.delete(f"{job_url}?f=json", timeout=30).status_code == 401
    # (?f=json: pygeoapi 0.21's Starlette DELETE handler fails on a response without Content-Type)
    assert httpx.delete(f"{job_url}?f=json", headers={"X-API-Key": KEY}, timeout=30).status_code == 200
    assert httpx.get(f"{job_url}?f=json", headers=owner, timeout=30).status_code == 404


# -- hotspots ------------------------------------------------------------------------------------
def test_h3_hotspots_match_an_independent_count(base):
    pts = incident_points()
    expected = Counter(h3.latlng_to_cell(p.y, p.x, 9) for p in pts.geometry)
    items = httpx.get(f"{base}/collections/incident_hex/items", params={"f": "json", "limit": 10000},
                      timeout=30).json()["features"]
    got = {f["id"]: f["properties"]["count"] for f in items}
    assert got == dict(expected)
    assert sum(got.values()) == len(pts)
    f = next(f for f in items if f["id"] == expected.most_common(1)[0][0])
    assert f["properties"]["rank"] == 1
    ring = np.array(f["geometry"]["coordinates"][0])
    cx, cy = h3.cell_to_latlng(f["id"])[::-1]
    assert abs(ring[:, 0].mean() - cx) < 1e-3 and abs(ring[:, 1].mean() - cy) < 1e-3


def test_area_hotspots_match_a_spatial_join(base):
    pts = incident_points()
    joined = gpd.sjoin(pts, areas_gdf(), predicate="within")["id"].value_counts()
    items = httpx.get(f"{base}/collections/incident_areas/items", params={"f": "json"}, timeout=30).json()
    got = {f["id"]: f["properties"]["count"] for f in items["features"]}
    assert got == {a: int(joined.get(a, 0)) for a in ["nw", "ne", "sw", "se"]}


def test_hotspots_cli_needs_one_grouping(project):
    import subprocess
    import sys

    from api_server import CITYTWIN

    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    proc = subprocess.run([*exe, "hotspots", str(project / "data" / "incidents.geojson"), "--layer", "x",
                           "--project", str(project)], capture_output=True, text=True)
    assert proc.returncode == 2 and "exactly one of --h3-res" in proc.stderr


def test_api_keys_from_the_environment(project, monkeypatch):
    from api.auth import ApiKeys
    from geo.errors import CatalogError
    from pipelines.catalog import load_catalog

    monkeypatch.setenv("CITYTWIN_API_KEYS", "ci:env-key-123456, other:another-key-999")
    keys = ApiKeys(load_catalog(project))
    assert keys.identify("env-key-123456") == "ci"
    assert keys.identify(KEY) == KEY_ID  # the keys file still counts
    assert keys.identify("env-key-12345") is None and keys.identify(None) is None
    monkeypatch.setenv("CITYTWIN_API_KEYS", "short:abc")
    with pytest.raises(CatalogError, match="at least 8"):
        ApiKeys(load_catalog(project))


# -- bad input: nothing published ------------------------------------------------------------------
def _tree_digest(root: Path) -> dict[str, str]:
    """sha1 of every file under the project's build folder and its catalog (logs and job records aside)."""
    import hashlib

    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(("build/logs/", "build/pygeoapi/")) and not rel.endswith("serve.log"):
            out[rel] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def _nan_raster(path: Path, dtype: str = "float32", nodata: float | None = None) -> Path:
    fill = np.nan if nodata is None else nodata
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1, dtype=dtype, crs="EPSG:5186",
                       transform=from_origin(200000, 550000, 10, 10), nodata=nodata) as ds:
        ds.write(np.full((16, 16), fill, dtype=dtype), 1)
    return path


@pytest.mark.parametrize("make,needle", [
    (lambda d: _nan_raster(d / "nan.tif"), "holds no valid cell (every cell is NaN or nodata)"),
    (lambda d: _nan_raster(d / "nodata.tif", dtype="int16", nodata=-9999), "holds no valid cell"),
    (lambda d: _no_crs_raster(d / "nocrs.tif"), "the raster has no CRS; declare it with --crs"),
])
def test_bad_raster_is_a_clear_error_and_publishes_nothing(project, tmp_path, make, needle):
    import subprocess
    import sys

    from api_server import CITYTWIN

    src = make(tmp_path)
    before = _tree_digest(project)
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    proc = subprocess.run([*exe, "raster", str(src), "--name", "bad_raster", "--project", str(project)],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in proc.stderr and str(src) in proc.stderr
    assert _tree_digest(project) == before
    assert "bad_raster" not in (project / "citytwin.yaml").read_text()


def _no_crs_raster(path: Path) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="float32",
                       transform=from_origin(0, 80, 10, 10)) as ds:
        ds.write(np.ones((8, 8), np.float32), 1)
    return path


HOSTILE = ["flood; DROP TABLE buildings; --", "../../citytwin", "buildings' OR '1'='1", "/etc/passwd",
           "zones%00", "Buildings"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("process,key", [("hazard-exposure", "hazard"), ("hazard-exposure", "targets"),
                                         ("hazard-exposure", "areas"), ("alert-targets", "buildings"),
                                         ("alert-targets", "areas")])
def test_hostile_layer_names_are_400_and_change_nothing(base, project, process, key, value):
    inputs = {"hazard": "zones", "targets": ["buildings"], "areas": "areas"} if process == "hazard-exposure" \
        else {"hazard": "zones", "buildings": "buildings", "areas": "areas"}
    inputs[key] = [value] if key == "targets" else value
    before = _tree_digest(project)
    resp = _execute(base, process, inputs)
    assert resp.status_code == 400, resp.text
    assert f"input '{key}'" in resp.text and "is not allowed" in resp.text
    assert _tree_digest(project) == before
    # The layers are all still there, whole.
    n = httpx.get(f"{base}/collections/buildings/items", params={"f": "json", "limit": 1, "resulttype": "hits"},
                  timeout=30).json()["numberMatched"]
    assert n == len(sample_buildings())
