"""A hostile-input corpus: HTTP requests and files that once broke the platform, run every time.

Each HTTP request goes to one real ``citytwin serve`` of the sample city (plus a live layer, a
small GTFS feed and an API key). For every request the test checks:
  * the status is the one expected (never 5xx), and the body holds no traceback and no
    absolute server path;
  * a probe request sent over and over while it runs is answered within 1 s, so no request
    keeps the event loop busy;
and once at the end, that the server's peak memory grew by less than 512 MB over its idle size
and that its log holds no error that no handler caught.

Each bad file goes through the CLI command that would read it; it must exit 2 with one clear
line naming the file, and leave the published project (catalog and build folder)
byte-identical.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from api_server import REPO, SERVER_PIDS, run_citytwin, serve, serve_output
from test_transit import feed_files, write_zip

KEY_ID, KEY = "corpus-desk", "corpus-key-5150"
PROBE = "/conformance?f=json"
MAX_LOOP_STALL_S = 1.0
MAX_GROWTH_MB = 512


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    expect: frozenset[int]
    method: str = "GET"
    params: dict = field(default_factory=dict)
    body: bytes | None = None
    keyed: bool = False


def case(name: str, path: str, *expect: int, method: str = "GET", params: dict | None = None,
         body: bytes | str | None = None, keyed: bool = False) -> Case:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return Case(name, path, frozenset(expect), method, params or {}, raw, keyed)


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def live_feature(properties: str) -> str:
    return ('{"type":"Feature","id":"corpus-1","geometry":{"type":"Point","coordinates":[126.978,37.566]},'
            f'"properties":{properties}}}')


LIKE = "/collections/buildings/items"
COG = "/cog"
EXPOSURE = "/processes/hazard-exposure/execution"
HTTP_CASES = [
    # rasters: every output size and work parameter is capped (answer 400 above the cap)
    case("preview 15000 px", f"{COG}/preview.png", 400,
         params={"name": "dem", "width": 15000, "height": 15000, "max_size": 0}),
    case("preview 15000 px, max_size only", f"{COG}/preview.png", 400, params={"name": "dem", "max_size": 15000}),
    case("tilesize 100000", f"{COG}/tiles/WebMercatorQuad/15/27941/12689", 400,
         params={"name": "dem", "tilesize": 100000}),
    case("histogram_bins 1e8", f"{COG}/statistics", 400, params={"name": "dem", "histogram_bins": 100000000}),
    case("point NaN", f"{COG}/point/NaN,NaN", 400, params={"name": "dem"}),
    case("point 1e308", f"{COG}/point/1e308,1e308", 400, params={"name": "dem"}),
    case("point inf", f"{COG}/point/inf,-inf", 400, params={"name": "dem"}),
    case("expression 32 kB", f"{COG}/preview.png", 400, params={"name": "dem", "expression": "b1+" * 8000 + "b1"}),
    case("expression nested", f"{COG}/point/126.978,37.566", 400,
         params={"name": "dem", "expression": "(" * 5000 + "b1" + ")" * 5000}),
    case("raster name traversal", f"{COG}/info", 404, params={"name": "../../citytwin.yaml"}),
    # CQL2 on the embedded store: LIKE without backtracking, bounded filters
    case("LIKE 10 %", LIKE, 200, 400, params={"filter": "address LIKE '" + "%" * 10 + "#'"}),
    case("LIKE 76 %", LIKE, 200, 400, params={"filter": "address LIKE '" + "%" * 76 + "#'"}),
    case("LIKE 1000 %_", LIKE, 200, 400, params={"filter": "address LIKE '" + "%_" * 500 + "#'"}),
    case("filter nested 5000", LIKE, 200, 400, params={"filter": "(" * 5000 + "height > 1" + ")" * 5000}),
    case("filter 40 kB", LIKE, 200, 400, 413, 414, params={"filter": " OR ".join(["height > 1"] * 2800)}),
    case("filter int over int64", LIKE, 200, 400, params={"filter": "height > 99999999999999999999999999"}),
    case("cql2-json nested 2000", LIKE, 400, params={"filter-lang": "cql2-json", "filter": nested(2000)}),
    # Features parameters
    case("bbox NaN", LIKE, 400, params={"bbox": "nan,nan,nan,nan"}),
    case("bbox 1e308", LIKE, 200, 400, params={"bbox": "-1e308,-1e308,1e308,1e308", "limit": 1}),
    case("limit -1", LIKE, 400, params={"limit": -1}),
    case("limit 1e20", LIKE, 200, 400, params={"limit": "100000000000000000000"}),
    case("offset 1e30", LIKE, 200, 400, params={"offset": "1000000000000000000000000000000"}),
    case("crs unknown", LIKE, 400, params={"crs": "http://www.opengis.net/def/crs/EPSG/0/999999"}),
    case("item id NUL", "/collections/buildings/items/%00", 400, 404),
    case("collection traversal", "/collections/..%2f..%2fcitytwin.yaml/items", 404),
    # tiles
    case("tile z99", "/collections/buildings/tiles/WebMercatorQuad/99/1/1", 400, 404),
    case("tile negative", "/collections/buildings/tiles/WebMercatorQuad/14/-1/-1", 400, 404),
    case("3D Tiles traversal", "/collections/buildings/3dtiles/..%2f..%2fcitytwin.yaml", 400, 404),
    case("live tile z99", "/live/incidents/tiles/99/0/0", 400, 404),
    # transit, live and AR parameters
    case("nearest limit superscript", "/transit/nearest", 400,
         params={"lon": 126.978, "lat": 37.566, "limit": "²"}),
    case("nearest NaN", "/transit/nearest", 400, params={"lon": "nan", "lat": "nan"}),
    case("live limit superscript", "/live/incidents/items", 400, params={"limit": "²"}),
    case("ar view NaN", "/ar/view", 400, params={"lon": "nan", "lat": "nan", "heading": "inf"}),
    case("ar route across the globe", "/ar/route", 400, 422,
         params={"from": "126.978,37.566", "to": "-122.4,37.7"}),
    case("geocode 15 kB", "/geocode", 200, 400, 414, params={"q": "서울 " * 2500}),
    case("reverse 1e308", "/reverse", 400, params={"lon": "1e308", "lat": "1e308"}),
    # live posts: calendar edges, deep nesting, size
    case("live date 9999", "/live/incidents/items", 200, 201, 400, method="POST", keyed=True,
         body=live_feature('{"timestamp":"9999-12-31T23:59:59Z","expires":"9999-12-31T23:59:59Z"}')),
    case("live date 0001", "/live/incidents/items", 200, 201, 400, method="POST", keyed=True,
         body=live_feature('{"timestamp":"0001-01-01T00:00:00Z","expires":"0001-01-01T00:00:01Z"}')),
    case("live year 10000", "/live/incidents/items", 400, method="POST", keyed=True,
         body=live_feature('{"expires":"10000-01-01T00:00:00Z"}')),
    case("live nested 5000", "/live/incidents/items", 400, method="POST", keyed=True,
         body=live_feature(nested(5000))),
    case("live not JSON", "/live/incidents/items", 400, method="POST", keyed=True, body=b"\xff\xfe{"),
    case("live 2 MB", "/live/incidents/items", 413, method="POST", keyed=True,
         body=live_feature('{"note":"' + "x" * 2_000_000 + '"}')),
    # processes: bodies that are not a JSON object, oversize bodies, job results need the key
    case("execute []", EXPOSURE, 400, method="POST", keyed=True, body="[]"),
    case("execute null", EXPOSURE, 400, method="POST", keyed=True, body="null"),
    case("execute string", EXPOSURE, 400, method="POST", keyed=True, body='"x"'),
    case("execute empty", EXPOSURE, 400, method="POST", keyed=True, body=b""),
    case("execute not JSON", EXPOSURE, 400, method="POST", keyed=True, body="{inputs:"),
    case("execute 2 MB", EXPOSURE, 413, method="POST", keyed=True,
         body='{"inputs":{"note":"' + "x" * 2_000_000 + '"}}'),
    case("jobs without key", "/jobs", 401),
    case("job results without key", "/jobs/00000000-0000-0000-0000-000000000000/results", 401),
]


@pytest.fixture(scope="module")
def project(built_sample_city: Path, tmp_path_factory) -> Path:
    """A copy of the built sample city plus a live layer, a small GTFS feed and an API key."""
    root = tmp_path_factory.mktemp("corpus") / "city"
    shutil.copytree(built_sample_city, root)
    feed = write_zip(root / "data" / "feed.zip", feed_files())
    run_citytwin("ingest", str(feed), "--layer", "transit", "--project", str(root))
    catalog_path = root / "citytwin.yaml"
    catalog = yaml.safe_load(catalog_path.read_text(encoding="utf-8"))
    catalog["layers"]["incidents"] = {"kind": "live", "title": "Incidents"}
    catalog["api_keys_file"] = "secrets/keys.txt"
    catalog_path.write_text(yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (root / "secrets").mkdir()
    (root / "secrets" / "keys.txt").write_text(f"{KEY_ID}: {KEY}\n", encoding="utf-8")
    return root


def rss_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field_name} not in /proc/{pid}/status")


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[tuple[str, int]]:
    with serve(project, extra_env={"CITYTWIN_API_KEYS": f"{KEY_ID}:{KEY}"}) as base:
        yield base, SERVER_PIDS[base]


@pytest.fixture(scope="module")
def idle_rss_kb(server: tuple[str, int]) -> int:
    base, pid = server
    for path in ("/collections?f=json", f"{COG}/info?name=dem", "/collections/buildings/items?limit=10"):
        httpx.get(base + path, timeout=60)
    return rss_kb(pid, "VmRSS")


def send(client: httpx.Client, c: Case) -> httpx.Response:
    headers = {"X-API-Key": KEY} if c.keyed else {}
    if c.body is not None:
        headers["Content-Type"] = "application/json"
    return client.request(c.method, c.path, params=c.params, content=c.body, headers=headers)


def while_probing(base: str, work) -> tuple[object, float]:
    """Run ``work()`` while another connection keeps asking for PROBE; return its result and the
    slowest probe answer seen (seconds)."""
    done = threading.Event()
    slowest = [0.0]
    failures: list[str] = []

    def probe() -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            while not done.is_set():
                t0 = time.monotonic()
                r = c.get(PROBE)
                slowest[0] = max(slowest[0], time.monotonic() - t0)
                if r.status_code != 200:
                    failures.append(f"probe answered {r.status_code}")
                done.wait(0.05)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        result = work()
    finally:
        done.set()
        thread.join(timeout=60)
    assert not failures, failures
    return result, slowest[0]


@pytest.mark.parametrize("c", HTTP_CASES, ids=[c.name for c in HTTP_CASES])
def test_hostile_request(server: tuple[str, int], idle_rss_kb: int, project: Path, c: Case) -> None:
    base, pid = server
    with httpx.Client(base_url=base, timeout=120) as client:
        response, slowest = while_probing(base, lambda: send(client, c))
    text = response.content[:200_000].decode("utf-8", "replace")
    assert response.status_code in c.expect, f"{c.name}: {response.status_code} {text[:300]}"
    assert "Traceback" not in text, f"{c.name}: traceback in the body"
    for secret_path in (str(project), str(REPO)):
        assert secret_path not in text, f"{c.name}: the body shows a server path: {text[:300]}"
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith(("application/json", "application/problem+json")), \
            f"{c.name}: error answered as {response.headers.get('content-type')}"
    assert slowest < MAX_LOOP_STALL_S, f"{c.name}: a probe waited {slowest:.2f} s while it ran"
    assert rss_kb(pid, "VmRSS") > 0  # the server is still alive


def test_largest_allowed_raster_requests_stay_bounded(server: tuple[str, int], idle_rss_kb: int) -> None:
    """The biggest outputs the caps allow, one after the other: peak memory grows < 512 MB."""
    base, pid = server
    largest = [  # the caps of api/raster_limits.py: 2048 px a side, 2 Mpx, 1024 px tiles, 1000 bins
        (f"{COG}/preview.png", {"name": "dem", "width": 2048, "height": 1024, "max_size": 2048}),
        (f"{COG}/preview.png", {"name": "flood_depth", "width": 1448, "height": 1448, "max_size": 1448}),
        (f"{COG}/statistics", {"name": "dem", "histogram_bins": 1000, "max_size": 2048}),
        (f"{COG}/tiles/WebMercatorQuad/15/27941/12689", {"name": "dem", "tilesize": 1024}),
    ]
    with httpx.Client(base_url=base, timeout=120) as client:
        for path, params in largest:
            r = client.get(path, params=params)
            assert r.status_code == 200, f"{path} {params}: {r.status_code} {r.text[:300]}"
    grown_mb = (rss_kb(pid, "VmHWM") - idle_rss_kb) / 1024
    assert grown_mb < MAX_GROWTH_MB, f"peak memory grew by {grown_mb:.0f} MB"


def test_server_log_has_no_unhandled_error(server: tuple[str, int], project: Path) -> None:
    # runs after the requests above (file order); an error no handler caught is logged by uvicorn
    log = serve_output(project)
    at = log.find("Exception in ASGI application")
    assert at < 0, log[at:][:3000]


# -- bad files through the CLI ---------------------------------------------------------------

def published_state(project: Path) -> dict[str, str]:
    """sha256 of the catalog and of every file under the build folder."""
    files = [project / "citytwin.yaml", *sorted(p for p in (project / "build").rglob("*") if p.is_file())]
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# A Bessel grid whose datum names no shift to WGS 84 (what many legacy Korean .prj files hold)
BESSEL_PRJ_NO_SHIFT = (
    'PROJCS["Korean_1985_Modified_Korea_Central_Belt",GEOGCS["GCS_Bessel_1841",DATUM["D_Bessel_1841",'
    'SPHEROID["Bessel_1841",6377397.155,299.1528128]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],'
    'PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",200000.0],PARAMETER["False_Northing",500000.0],'
    'PARAMETER["Central_Meridian",127.0028902777778],PARAMETER["Scale_Factor",1.0],'
    'PARAMETER["Latitude_Of_Origin",38.0],UNIT["Meter",1.0]]'
)


def square_geojson(lon: float, lat: float) -> str:
    ring = [[lon, lat], [lon + 0.001, lat], [lon + 0.001, lat + 0.001], [lon, lat + 0.001], [lon, lat]]
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "x"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]})


def write_shapefile(folder: Path, prj: bytes) -> Path:
    """A one-polygon shapefile in EPSG:5174-like metres, with the given .prj bytes."""
    import geopandas as gpd
    import shapely

    shp = folder / "footprints.shp"
    gpd.GeoDataFrame({"name": ["a"]}, geometry=[shapely.box(198000, 451000, 198020, 451020)]).to_file(shp)
    shp.with_suffix(".prj").write_bytes(prj)
    return shp


def write_bad_file(kind: str, folder: Path) -> tuple[Path, list[str]]:
    """The bad file of ``kind`` in ``folder`` and the citytwin arguments that read it."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "random bytes as GeoJSON":
        path = folder / "random.geojson"
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "truncated GeoJSON":
        path = folder / "truncated.geojson"
        path.write_text(square_geojson(126.978, 37.566)[:-40], encoding="utf-8")
    elif kind == "empty GeoJSON":
        path = folder / "empty.geojson"
        path.write_bytes(b"")
    elif kind == "longitude 500":
        path = folder / "far.geojson"
        path.write_text(square_geojson(500.0, 37.566), encoding="utf-8")
    elif kind == "garbage .prj":
        path = write_shapefile(folder, b"\x00\x9c\xffnot a projection at all[[[")
    elif kind == "Bessel .prj without datum shift":
        path = write_shapefile(folder, BESSEL_PRJ_NO_SHIFT.encode("ascii"))
    elif kind == "not a zip as GTFS":
        path = folder / "feed.zip"
        path.write_bytes(b"PK\x03\x04 this is not really a zip")
    elif kind == "GTFS zip bomb":
        path = folder / "bomb.zip"
        row = b"S9,Repeated stop name padded to a long line,37.5665,126.9780,0,\n" * 10_000
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for name, text in feed_files().items():
                if name != "stops.txt":
                    zf.writestr(name, text)
            with zf.open("stops.txt", "w") as out:  # 40 MB that deflate packs several hundred-fold
                out.write(b"stop_id,stop_name,stop_lat,stop_lon,location_type,parent_station\n")
                for _ in range(40_000_000 // len(row)):
                    out.write(row)
    elif kind == "CityGML with an external entity":
        path = folder / "xxe.gml"
        path.write_text('<?xml version="1.0"?><!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        '<core:CityModel xmlns:core="http://www.opengis.net/citygml/2.0">&x;</core:CityModel>',
                        encoding="utf-8")
        return path, ["export-3dtiles", str(path), "--out", str(folder / "out3d")]
    elif kind == "CityGML billion laughs":
        path = folder / "laughs.gml"
        ents = "".join(f'<!ENTITY l{i} "{"&l%d;" % (i - 1) * 10}">' for i in range(1, 10))
        path.write_text(f'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY l0 "ha">{ents}]>'
                        '<core:CityModel xmlns:core="http://www.opengis.net/citygml/2.0">&l9;</core:CityModel>',
                        encoding="utf-8")
        return path, ["export-3dtiles", str(path), "--out", str(folder / "out3d")]
    elif kind == "CityJSON nested 100000 deep":
        path = folder / "deep.city.json"
        path.write_text('{"type":"CityJSON","version":"1.1","CityObjects":' + "[" * 100_000 + "]" * 100_000 + "}",
                        encoding="utf-8")
        return path, ["export-3dtiles", str(path), "--out", str(folder / "out3d")]
    elif kind == "binary records for geotag":
        path = folder / "records.csv"
        path.write_bytes(b"\x00\x01\x02" * 5000)
        return path, ["geotag", str(path), "--layer", "records"]
    elif kind == "not a raster":
        path = folder / "flood.tif"
        path.write_bytes(b"II*\x00" + b"\x00" * 100)
        return path, ["raster", str(path), "--name", "flood"]
    elif kind == "layer name with a path":
        path = folder / "ok.geojson"
        path.write_text(square_geojson(126.978, 37.566), encoding="utf-8")
        return path, ["ingest", str(path), "--layer", "../../escape"]
    else:
        raise ValueError(kind)
    return path, ["ingest", str(path), "--layer", "incoming"]


BAD_FILES = [
    "random bytes as GeoJSON", "truncated GeoJSON", "empty GeoJSON", "longitude 500", "garbage .prj",
    "Bessel .prj without datum shift", "not a zip as GTFS", "GTFS zip bomb", "CityGML with an external entity",
    "CityGML billion laughs", "CityJSON nested 100000 deep", "binary records for geotag", "not a raster",
    "layer name with a path",
]


@pytest.fixture(scope="module")
def file_project(tmp_path_factory) -> Path:
    from api_server import make_project

    root = tmp_path_factory.mktemp("corpus_files") / "city"
    make_project(root)
    return root


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_file_is_refused_and_publishes_nothing(file_project: Path, tmp_path: Path, kind: str) -> None:
    import subprocess
    import sys

    from api_server import CITYTWIN, _env

    path, args = write_bad_file(kind, tmp_path / "in")
    before = published_state(file_project)
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    proc = subprocess.run([*exe, *args, "--project", str(file_project)], cwd=REPO, env=_env(None),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, f"{kind}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr + proc.stdout, f"{kind}: traceback\n{proc.stderr[-3000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"{kind}: expected one error line\n{proc.stderr[-3000:]}"
    if kind != "layer name with a path":  # (a shapefile's error may name its .prj)
        assert path.stem in errors[0], f"{kind}: the error does not name the file: {errors[0]}"
    assert published_state(file_project) == before, f"{kind}: the published project changed"
