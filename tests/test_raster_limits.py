"""/cog limits on a served project: over-limit requests are clear 400s, the largest allowed ones
stay within 512 MB of server memory, impossible points are 400s, and errors never show a path.

The project holds a 2000 x 2000 px DEM (5 m cells, EPSG:5186, larger than any image the
server may return), a 5-band raster, a 3-band one, a layer whose COG stops being a TIFF
once the server runs, and one never built. The
server's memory is read from /proc (VmHWM: the peak resident size of the process).
"""
from __future__ import annotations

import io
import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from api_server import CATALOG, make_project, serve

ORIGIN = (190000.0, 560000.0)  # EPSG:5186, north of Seoul City Hall
CELL = 5.0
N = 2000
RASTERS = """\
  dem:
    kind: raster
    source: data/dem.tif
  bands5:
    kind: raster
    source: data/bands5.tif
  rgb:
    kind: raster
    source: data/rgb.tif
  broken:
    kind: raster
    source: data/broken.tif
  unbuilt:
    kind: raster
    source: data/unbuilt.tif
"""
MB = 1024 * 1024


def _write_bands(path: Path, count: int, n: int) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=count, dtype="uint8", crs="EPSG:5186",
                       transform=from_origin(*ORIGIN, CELL * N / n, CELL * N / n)) as ds:
        for b in range(count):
            ds.write(np.full((n, n), 10 * (b + 1), np.uint8), b + 1)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from pipelines.catalog import load_catalog
    from pipelines.rasters import build_raster_layer, write_geotiff

    root = tmp_path_factory.mktemp("raster_limits")
    make_project(root)
    (root / "data").mkdir()
    (root / "citytwin.yaml").write_text(CATALOG + RASTERS, encoding="utf-8")
    y, x = np.mgrid[0:N, 0:N].astype(np.float32)
    dem = 20 + 10 * np.sin(x / 97) + 8 * np.cos(y / 131) + (x + y) / N * 30
    write_geotiff(root / "data" / "dem.tif", dem.astype(np.float32), from_origin(*ORIGIN, CELL, CELL), "EPSG:5186")
    _write_bands(root / "data" / "bands5.tif", 5, 100)
    _write_bands(root / "data" / "rgb.tif", 3, 100)
    catalog = load_catalog(root)
    for name in ("dem", "bands5", "rgb"):
        build_raster_layer(catalog, name)
    # A COG that is no longer a TIFF (a disk fault, a hand edit): the server starts all the same.
    (catalog.build_path / "cog" / "broken.tif").write_bytes(b"this is not a TIFF\n" * 100)
    return root


@pytest.fixture(scope="module")
def server(project):
    with serve(project) as url:
        proc = next(p for p in psutil.process_iter(["cmdline"])
                    if "serve" in (p.info["cmdline"] or []) and str(project) in (p.info["cmdline"] or []))
        yield url, proc.pid


def _memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak so far) of the process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1)) / 1024 for k in ("VmRSS", "VmHWM")}


def _dem_bounds_lonlat() -> tuple[float, float, float, float]:
    to_ll = Transformer.from_crs("EPSG:5186", "EPSG:4326", always_xy=True)
    x0, y1 = ORIGIN
    lon, lat = to_ll.transform([x0, x0 + N * CELL, x0, x0 + N * CELL], [y1, y1, y1 - N * CELL, y1 - N * CELL])
    return min(lon), min(lat), max(lon), max(lat)


def _cell_lonlat(row: int, col: int) -> tuple[float, float]:
    """Lon/lat of the centre of DEM cell (row, col)."""
    to_ll = Transformer.from_crs("EPSG:5186", "EPSG:4326", always_xy=True)
    return to_ll.transform(ORIGIN[0] + (col + 0.5) * CELL, ORIGIN[1] - (row + 0.5) * CELL)


def _detail(resp: httpx.Response) -> str:
    assert resp.headers["content-type"].startswith("application/json"), resp.text[:300]
    body = resp.json()
    assert body["code"] == {400: "InvalidParameterValue", 404: "NotFound", 413: "PayloadTooLarge"}.get(
        resp.status_code, "ServerError")
    return body["description"]


# -- every parameter that scales work or memory has a cap ----------------------------------------
TILE = "/cog/tiles/WebMercatorQuad/14/13970/6344.png"
P20 = [str(p) for p in range(0, 100, 5)]
OVER = [
    ("/cog/preview.png", {"width": 15000, "height": 15000, "max_size": 0},
     "parameter 'width' must be at most 2048, got 15000"),
    ("/cog/preview.png", {"max_size": 0}, "parameter 'max_size' must be at least 1, got 0"),
    ("/cog/preview/4000x100.png", {}, "parameter 'width' must be at most 2048, got 4000"),
    ("/cog/preview.png", {"width": 2048, "height": 2048}, "at most 2048 px a side and 2,097,152 px in all"),
    ("/cog/preview.png", {"max_size": 2048}, "the image would be 2,000 x 2,000 px"),
    ("/cog/preview.png", {"width": 2000}, "the image would be 2,000 x 2,000 px"),
    (TILE, {"tilesize": 100000}, "parameter 'tilesize' must be at most 1024, got 100000"),
    (TILE, {"buffer": 500}, "parameter 'buffer' must be at most 64, got 500"),
    (TILE, {"buffer": 0.3}, "parameter 'buffer' must be a multiple of 0.5"),
    (TILE, {"padding": 1000}, "parameter 'padding' must be at most 64, got 1000"),
    ("/cog/tiles/WebMercatorQuad/100000/1/1.png", {}, "parameter 'z' must be at most 30, got 100000"),
    ("/cog/tiles/WebMercatorQuad", {"maxzoom": 100000}, "parameter 'maxzoom' must be at most 30, got 100000"),
    ("/cog/WebMercatorQuad/tilejson.json", {"minzoom": 99}, "parameter 'minzoom' must be at most 30, got 99"),
    ("/cog/statistics", {"histogram_bins": 100000000},
     "parameter 'histogram_bins' must be at most 1000, got 100000000"),
    ("/cog/statistics", {"histogram_bins": ",".join(map(str, range(2000)))}, "at most 1001 values are allowed"),
    ("/cog/statistics", {"histogram_bins": "5,3,1"}, "as bin edges must increase"),
    ("/cog/statistics", {"p": [str(i) for i in range(30)]}, "parameter 'p' is given 30 times; at most 20"),
    ("/cog/statistics", {"p": 101}, "parameter 'p' must be at most 100, got 101"),
    ("/cog/statistics", {"c": [str(i) for i in range(300)]}, "parameter 'c' is given 300 times; at most 256"),
    ("/cog/statistics", {"categorical": "true"}, "categorical statistics need the categories to count"),
    ("/cog/statistics", {"bidx": ["1"] * 5}, "parameter 'bidx' is given 5 times; at most 4"),
    ("/cog/statistics", {"expression": "b1-" * 12000 + "b1"}, "the query string is"),
    ("/cog/statistics", {"expression": "b1-" * 100 + "b1"},
     "parameter 'expression' is 302 characters long; at most 256"),
    ("/cog/statistics", {"expression": "(" * 20 + "b1" + ")" * 20}, "nests parentheses 20 deep; at most 16"),
    ("/cog/statistics", {"expression": ";".join(["b1"] * 5)}, "has 5 ';'-separated bands; at most 4"),
    ("/cog/preview.png", {"rescale": ["0,1"] * 5}, "parameter 'rescale' is given 5 times; at most 4"),
    ("/cog/preview.png", {"colormap": json.dumps({str(i): "#ff0000" for i in range(300)})},
     "parameter 'colormap' has 300 entries; at most 256"),
    ("/cog/preview.png", {"colormap": json.dumps({"1": "#" + "f" * 20000})},
     "parameter 'colormap' is 20,010 characters long; at most 16,384"),
    ("/cog/preview.png", {"colormap": "[" * 50 + "]" * 50}, "parameter 'colormap' nests deeper than 4 levels"),
    ("/cog/preview.png", {"algorithm": "hillshade", "algorithm_params": "[" * 500 + "]" * 500},
     "parameter 'algorithm_params' nests deeper than 4 levels"),
    ("/cog/preview.png", {"color_formula": "gamma r 1.1 " * 20}, "parameter 'color_formula' is over 128 characters"),
    ("/cog/preview.png", {"color_formula": "saturation 1.5"}, "cannot apply to this image (1 band(s) of float32)"),
    ("/cog/preview.png", {"dst_crs": "+proj=longlat +nadgrids=/etc/passwd"},
     "parameter 'dst_crs' must name a CRS by code"),
    ("/cog/colorMaps/viridis", {"f": "png", "width": 30000, "height": 30000},
     "parameter 'width' must be at most 2048, got 30000"),
    ("/cog/statistics", {"bidx": 2}, "raster layer 'dem' has no band 2: it has 1 band(s)"),
    ("/cog/statistics", {"expression": "b1+b7"}, "raster layer 'dem' has no band 7"),
]


@pytest.mark.parametrize("path,params,needle", OVER, ids=[f"{p}?{'&'.join(q)}"[:70] for p, q, _ in OVER])
def test_over_limit_requests_are_400_naming_the_parameter(server, path, params, needle):
    base, _ = server
    resp = httpx.get(f"{base}{path}", params={"name": "dem", **params}, timeout=120)
    assert resp.status_code == 400, resp.text[:300]
    assert needle in _detail(resp)


def test_a_layer_with_too_many_bands_is_read_band_by_choice(server):
    base, _ = server
    resp = httpx.get(f"{base}/cog/preview.npy", params={"name": "bands5"}, timeout=60)
    assert resp.status_code == 400 and "has 5 bands; choose at most 4 with bidx=" in _detail(resp)
    resp = httpx.get(f"{base}/cog/preview.npy", params={"name": "bands5", "bidx": ["5", "1"]}, timeout=60)
    assert resp.status_code == 200, resp.text
    arr = np.load(io.BytesIO(resp.content))
    assert arr.shape == (3, 100, 100)  # two bands and the mask
    assert arr[0, 0, 0] == 50 and arr[1, 0, 0] == 10
    resp = httpx.get(f"{base}/cog/preview.png", params={"name": "rgb", "color_formula": "saturation 1.5"}, timeout=60)
    assert resp.status_code == 200 and resp.content[:4] == b"\x89PNG"


def test_post_bodies_are_bounded(server):
    base, _ = server
    w, s, e, n = _dem_bounds_lonlat()
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    many = {"type": "FeatureCollection", "features": [feature] * 101}
    resp = httpx.post(f"{base}/cog/statistics", params={"name": "dem"}, json=many, timeout=60)
    assert resp.status_code == 400 and "has 101 features; at most 100" in _detail(resp)
    big = {"type": "Feature", "properties": {"pad": "x" * 1_100_000}, "geometry": feature["geometry"]}
    resp = httpx.post(f"{base}/cog/feature.png", params={"name": "dem"}, json=big, timeout=60)
    assert resp.status_code == 413 and "over 1,000,000 bytes" in _detail(resp)
    resp = httpx.post(f"{base}/cog/statistics", params={"name": "dem", "cover_scale": 1000}, json=feature, timeout=60)
    assert resp.status_code == 400 and "parameter 'cover_scale' must be at most 10, got 1000" in _detail(resp)


def test_sizes_that_follow_the_data_stay_within_the_limits(server):
    """No size asked: full resolution while it fits, else the largest image that fits, same aspect."""
    base, _ = server
    # A bbox of all Korea at the DEM's 5 m is ~300,000 px a side: scaled to the limits.
    resp = httpx.get(f"{base}/cog/bbox/124,33,132,39.npy", params={"name": "dem"}, timeout=120)
    assert resp.status_code == 200, resp.text
    arr = np.load(io.BytesIO(resp.content))
    _, h, w = arr.shape
    assert max(h, w) <= 2048 and h * w <= 2048 * 1024
    assert max(h, w) >= 1600  # the largest that fits, not a thumbnail
    assert w / h == pytest.approx(8 / 6, rel=0.01)  # square pixels in EPSG:4326, the bbox's CRS
    # A small bbox stays at full resolution: 100 x 50 cells of 5 m.
    x0, y1 = ORIGIN[0] + 1000, ORIGIN[1] - 1000
    resp = httpx.get(f"{base}/cog/bbox/{x0},{y1 - 250},{x0 + 500},{y1}.npy",
                     params={"name": "dem", "coord_crs": "EPSG:5186", "dst_crs": "EPSG:5186"}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert np.load(io.BytesIO(resp.content)).shape == (2, 50, 100)
    # A narrow tall bbox with only the width given would be far over the side limit.
    resp = httpx.get(f"{base}/cog/bbox/{x0},{y1 - 9000},{x0 + 10},{y1}.png",
                     params={"name": "dem", "coord_crs": "EPSG:5186", "dst_crs": "EPSG:5186", "width": 100}, timeout=60)
    assert resp.status_code == 400 and "the image would be 100 x 90,000 px" in _detail(resp)


# -- points --------------------------------------------------------------------------------------
@pytest.mark.parametrize("lon,lat,needle", [
    ("NaN", "NaN", "parameter 'lon' must be a finite number, got 'NaN'"),
    ("1e308", "1e308", "parameter 'lon' must be at most 180, got 1e+308"),
    ("inf", "-inf", "parameter 'lon' must be a finite number, got 'inf'"),
    ("-inf", "37.5", "parameter 'lon' must be a finite number, got '-inf'"),
    ("200", "37.5", "parameter 'lon' must be at most 180, got 200"),
    ("126.9", "95", "parameter 'lat' must be at most 90, got 95"),
    ("-181", "0", "parameter 'lon' must be at least -180, got -181"),
])
def test_impossible_points_are_400(server, lon, lat, needle):
    base, _ = server
    resp = httpx.get(f"{base}/cog/point/{lon},{lat}", params={"name": "dem"}, timeout=30)
    assert resp.status_code == 400 and needle in _detail(resp)


def test_points_in_other_crs_and_outside_the_layer(server):
    base, _ = server
    resp = httpx.get(f"{base}/cog/point/1e10,1e10", params={"name": "dem", "coord_crs": "EPSG:32652"}, timeout=30)
    assert resp.status_code == 400 and "has no place in the CRS of raster layer 'dem'" in _detail(resp)
    resp = httpx.get(f"{base}/cog/point/127.5,36.0", params={"name": "dem"}, timeout=30)
    assert resp.status_code == 404 and "the point (127.5, 36) is outside raster layer 'dem'" == _detail(resp)
    lon, lat = _cell_lonlat(400, 700)
    resp = httpx.get(f"{base}/cog/point/{lon},{lat}", params={"name": "dem"}, timeout=30)
    assert resp.status_code == 200, resp.text
    expected = 20 + 10 * math.sin(700 / 97) + 8 * math.cos(400 / 131) + 1100 / N * 30
    assert resp.json()["values"][0] == pytest.approx(expected, abs=0.05)


# -- errors name the layer, not the server's files ------------------------------------------------
def test_errors_never_show_server_paths(server, project):
    base, _ = server
    answers = [
        httpx.get(f"{base}/cog/info", params={"name": "broken"}, timeout=30),
        httpx.get(f"{base}/cog/point/126.97,37.6", params={"name": "broken"}, timeout=30),
        httpx.get(f"{base}/cog/statistics", params={"name": "../../etc/passwd"}, timeout=30),
        httpx.get(f"{base}/cog/point/126.97,37.6", params={"name": "dem", "bidx": 9}, timeout=30),
        httpx.get(f"{base}/cog/tiles/WebMercatorQuad/14/13970/6344.png", params={"name": "unbuilt"}, timeout=30),
    ]
    for resp in answers:
        assert resp.status_code >= 400
        assert str(project) not in resp.text and "/build/" not in resp.text, resp.text
    broken = _detail(answers[0])
    assert answers[0].status_code == 500
    assert broken == "raster layer 'broken' not recognized as being in a supported file format."
    assert answers[-1].status_code == 404 and "raster layer 'unbuilt' has no COG yet" in _detail(answers[-1])


# -- memory --------------------------------------------------------------------------------------
def _largest_requests(base: str) -> list[tuple[str, str, dict, object]]:
    w, s, e, n = _dem_bounds_lonlat()
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    cmap = json.dumps([[[i, i + 1], [i, 0, 0, 255]] for i in range(256)])
    side = {"width": 2048, "height": 1024}
    return [
        ("GET", "/cog/preview.png", {"name": "dem", **side, "resampling": "cubic"}, None),
        ("GET", "/cog/preview.tif", {"name": "dem", **side, "dst_crs": "EPSG:3857", "reproject": "lanczos"}, None),
        ("GET", "/cog/preview.png", {"name": "dem", **side, "algorithm": "hillshade",
                                     "algorithm_params": '{"buffer": 99}'}, None),
        ("GET", "/cog/preview.png", {"name": "dem", **side, "colormap": cmap}, None),
        ("GET", "/cog/preview.npy", {"name": "dem", **side, "expression": "b1;b1*2;b1+3;b1/2"}, None),
        ("GET", "/cog/bbox/120,30,135,45.tif", {"name": "dem"}, None),
        ("GET", "/cog/statistics", {"name": "dem", "max_size": 1448, "histogram_bins": 1000, "p": P20,
                                    "categorical": "true", "c": [str(i) for i in range(256)]}, None),
        ("GET", "/cog/statistics", {"name": "dem", "max_size": 1448, "expression": "b1;b1*2;b1+3;b1/2", "p": P20,
                                    "histogram_bins": ",".join(map(str, range(1001)))}, None),
        ("POST", "/cog/statistics", {"name": "dem", "cover_scale": 10, "histogram_bins": 1000, "p": P20},
         {"type": "FeatureCollection", "features": [feature] * 100}),
        ("POST", "/cog/feature/1024x1024.png", {"name": "dem", "algorithm": "contours"}, feature),
        ("GET", "/cog/tiles/WebMercatorQuad/13/6985/3172.npy", {"name": "dem", "tilesize": 1024, "buffer": 64,
                                                               "padding": 64}, None),
        ("GET", "/cog/colorMaps/viridis", {"f": "png", "width": 2048, "height": 2048}, None),
    ]


def _send(base: str, method: str, path: str, params: dict, body: object) -> httpx.Response:
    if method == "POST":
        return httpx.post(f"{base}{path}", params=params, json=body, timeout=600)
    return httpx.get(f"{base}{path}", params=params, timeout=600)


def test_largest_allowed_requests_stay_under_512_mb(server):
    base, pid = server
    time.sleep(1)
    idle = _memory_mb(pid)["VmRSS"]
    requests = _largest_requests(base)
    for method, path, params, body in requests:
        resp = _send(base, method, path, params, body)
        assert resp.status_code == 200, f"{path}: {resp.text[:300]}"
    sequential = _memory_mb(pid)["VmHWM"] - idle
    # Many at once: the server computes two at a time, the others wait.
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(lambda r: _send(base, *r).status_code, requests[:6] * 2))
    assert codes == [200] * 12
    peak = _memory_mb(pid)["VmHWM"] - idle
    assert sequential < 512 and peak < 512, (sequential, peak)
    # The over-limit requests that used to take the server down are refused cheaply.
    for path, params, _ in OVER[:7]:
        assert httpx.get(f"{base}{path}", params={"name": "dem", **params}, timeout=60).status_code == 400
    assert _memory_mb(pid)["VmHWM"] - idle == pytest.approx(peak, abs=8)
    assert httpx.get(f"{base}/cog/layers", timeout=30).status_code == 200
