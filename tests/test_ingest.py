"""Ingest through the real CLI: CRS, encodings, repair, heights, ids, and bad input."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pyogrio
import pytest
import shapely
import yaml
from click.testing import CliRunner
from pyproj import CRS, Geod, Transformer
from shapely.geometry import LineString, Point, Polygon, box

from pipelines.cli import main
from shared_data import shared_data

CITY_HALL = (126.9779, 37.5663)
# Korean 1985 Modified Central Belt with the published 7-parameter shift to WGS84,
# written out independently of the EPSG:5174 definition that the code under test uses.
BESSEL_TRUTH = CRS.from_proj4(
    "+proj=tmerc +lat_0=38 +lon_0=127.0028902777778 +k=1 +x_0=200000 +y_0=500000 +ellps=bessel "
    "+towgs84=-115.80,474.99,674.11,1.16,-2.31,-1.63,6.43 +units=m +no_defs"
)
# A legacy ESRI .prj: Bessel ellipsoid, no TOWGS84.
LEGACY_PRJ = (
    'PROJCS["Korean_1985_Modified_Korea_Central_Belt",GEOGCS["GCS_Bessel_1841",DATUM["D_Bessel_1841",'
    'SPHEROID["Bessel_1841",6377397.155,299.1528128]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],'
    'PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",200000.0],PARAMETER["False_Northing",500000.0],'
    'PARAMETER["Central_Meridian",127.0028902777778],PARAMETER["Scale_Factor",1.0],PARAMETER["Latitude_Of_Origin",38.0],'
    'UNIT["Meter",1.0]]'
)
# The same grid declared as a PROJ string without the shift: as wrong as the .prj.
SHIFTLESS_PROJ = ("+proj=tmerc +lat_0=38 +lon_0=127.0028902777778 +k=1 +x_0=200000 +y_0=500000 +ellps=bessel "
                  "+units=m +no_defs")
GEOD = Geod(ellps="WGS84")


def run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def project(tmp_path: Path) -> Path:
    code, out = run("init", str(tmp_path / "proj"))
    assert code == 0, out
    return tmp_path / "proj"


def store_path(project: Path) -> Path:
    return project / "build" / "citytwin.gpkg"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def truth_footprints() -> gpd.GeoDataFrame:
    """Three footprints near City Hall in WGS84: the truth the legacy file must reproduce."""
    to_m = Transformer.from_crs(4326, 5186, always_xy=True)
    to_ll = Transformer.from_crs(5186, 4326, always_xy=True)
    x, y = to_m.transform(*CITY_HALL)
    rects = [box(x, y, x + 40, y + 25), box(x + 80, y - 30, x + 95, y + 10), box(x - 60, y + 50, x - 20, y + 90)]
    geoms = [shapely.transform(r, lambda c: np.column_stack(to_ll.transform(c[:, 0], c[:, 1]))) for r in rects]
    return gpd.GeoDataFrame(
        {"name": ["서울특별시청", "덕수궁 별관", "태평로 빌딩"], "HEIGHT": [45.5, np.nan, np.nan], "GRND_FLR": [13, 5, None]},
        geometry=geoms, crs=4326,
    )


def write_legacy_shapefile(folder: Path) -> tuple[Path, gpd.GeoDataFrame]:
    """Bessel TM shapefile, CP949 text, .prj without datum shift, no .cpg."""
    truth = truth_footprints()
    legacy = truth.to_crs(BESSEL_TRUTH)
    path = folder / "legacy_bessel.shp"
    pyogrio.write_dataframe(legacy, path, encoding="cp949")
    path.with_suffix(".prj").write_text(LEGACY_PRJ)
    path.with_suffix(".cpg").unlink(missing_ok=True)
    return path, truth


def max_vertex_error_m(got: gpd.GeoDataFrame, truth: gpd.GeoDataFrame) -> float:
    worst = 0.0
    for g, t in zip(got.geometry, truth.geometry):
        a = np.asarray(g.exterior.coords)
        b = np.asarray(t.exterior.coords)
        # ring start may differ after repair/orientation: match each vertex to the nearest truth vertex
        for lon, lat in a:
            d = GEOD.inv(np.full(len(b), lon), np.full(len(b), lat), b[:, 0], b[:, 1])[2]
            worst = max(worst, float(d.min()))
    return worst


def test_legacy_bessel_shapefile_lands_right_with_declared_crs(project: Path):
    shp, truth = write_legacy_shapefile(project)
    code, out = run("ingest", str(shp), "--layer", "buildings", "--kind", "buildings",
                    "--crs", "EPSG:5174", "--encoding", "cp949", "--project", str(project))
    assert code == 0, out
    got = pyogrio.read_dataframe(store_path(project), layer="buildings")
    assert list(got["name"]) == list(truth["name"])
    assert max_vertex_error_m(got, truth) < 10.0


def test_legacy_bessel_without_crs_is_refused(project: Path):
    shp, _ = write_legacy_shapefile(project)
    catalog_before = (project / "citytwin.yaml").read_bytes()
    code, out = run("ingest", str(shp), "--layer", "buildings", "--kind", "buildings",
                    "--encoding", "cp949", "--project", str(project))
    assert code == 2, out
    assert out.count("\n") == 1 and out.startswith("error: "), out
    for text in (str(shp), "without a datum shift", "--crs EPSG:5174", "--accept-source-crs"):
        assert text in out, out
    assert not store_path(project).exists()
    assert (project / "citytwin.yaml").read_bytes() == catalog_before


def read_layer(project: Path, layer: str) -> gpd.GeoDataFrame:
    return pyogrio.read_dataframe(store_path(project), layer=layer)


def catalog_entry(project: Path, layer: str) -> dict:
    return yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))["layers"][layer]


def same_coordinates(a: gpd.GeoDataFrame, b: gpd.GeoDataFrame) -> bool:
    return len(a) == len(b) and all(np.array_equal(shapely.get_coordinates(x), shapely.get_coordinates(y))
                                    for x, y in zip(a.geometry, b.geometry))


def test_accepted_source_crs_is_stored_and_honoured_by_build(project: Path):
    shp, truth = write_legacy_shapefile(project)
    code, out = run("ingest", str(shp), "--layer", "districts", "--kind", "boundaries", "--encoding", "cp949",
                    "--accept-source-crs", "--project", str(project))
    assert code == 0, out
    assert "kept as asked" in out and "EPSG:5174" in out
    # a few footprints: boundaries start at z12 at the latest (pipelines.zooms)
    assert catalog_entry(project, "districts") == {"kind": "boundaries", "source": "legacy_bessel.shp",
                                                   "encoding": "cp949", "accept_source_crs": True,
                                                   "minzoom": 12, "maxzoom": 16}
    ingested = read_layer(project, "districts")
    # what the acceptance means: the shift-less datum lands hundreds of metres away
    assert max_vertex_error_m(ingested, truth) > 100.0
    code, out = run("build", "--project", str(project), "--layer", "districts")
    assert code == 0, out
    assert same_coordinates(read_layer(project, "districts"), ingested)

    # without the acceptance, the build refuses as ingest does, and publishes nothing
    path = project / "citytwin.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("    accept_source_crs: true\n", ""), encoding="utf-8")
    before = digest(store_path(project))
    code, out = run("build", "--project", str(project), "--layer", "districts")
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out
    for text in ("layer 'districts'", str(shp), "without a datum shift", "crs: EPSG:5174", "accept_source_crs: true"):
        assert text in errors[0], errors[0]
    assert digest(store_path(project)) == before


@pytest.mark.parametrize("first", [["--accept-source-crs"], ["--crs", "EPSG:2097"]],
                         ids=["file's own CRS first", "wrong grid first"])
def test_reingest_with_crs_is_what_the_next_build_publishes(project: Path, first: list[str]):
    shp, truth = write_legacy_shapefile(project)
    code, out = run("ingest", str(shp), "--layer", "districts", "--kind", "boundaries", "--encoding", "cp949",
                    *first, "--project", str(project))
    assert code == 0, out
    code, out = run("ingest", str(shp), "--layer", "districts", "--crs", "EPSG:5174", "--project", str(project))
    assert code == 0, out
    # every option given so far is in the entry; the acceptance, for the file's own CRS, no longer applies
    assert catalog_entry(project, "districts") == {"kind": "boundaries", "source": "legacy_bessel.shp",
                                                   "encoding": "cp949", "crs": "EPSG:5174",
                                                   "minzoom": 12, "maxzoom": 16}
    ingested = read_layer(project, "districts")
    assert list(ingested["name"]) == list(truth["name"])
    assert max_vertex_error_m(ingested, truth) < 10.0  # truth: EPSG:5174 with its TOWGS84, through pyproj
    for _ in range(2):  # the entry reads back as written: each build publishes exactly what the ingest did
        code, out = run("build", "--project", str(project), "--layer", "districts")
        assert code == 0, out
        assert "differently from its last ingest" not in out
        assert same_coordinates(read_layer(project, "districts"), ingested)
        assert list(read_layer(project, "districts")["name"]) == list(truth["name"])


def test_build_says_when_it_publishes_differently_from_the_last_ingest(project: Path):
    shp, _ = write_legacy_shapefile(project)
    code, out = run("ingest", str(shp), "--layer", "districts", "--kind", "boundaries", "--encoding", "cp949",
                    "--crs", "EPSG:5174", "--project", str(project))
    assert code == 0, out
    path = project / "citytwin.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("\n    crs: EPSG:5174\n") == 1
    path.write_text(text.replace("\n    crs: EPSG:5174\n", "\n    crs: EPSG:2097\n"), encoding="utf-8")
    code, out = run("build", "--project", str(project), "--layer", "districts")
    assert code == 0, out
    said = [line for line in out.splitlines() if "differently from its last ingest" in line]
    assert len(said) == 1 and "layer 'districts'" in said[0], out
    assert "crs EPSG:2097 (last ingest: EPSG:5174)" in said[0], said[0]
    # published where EPSG:2097 puts the file's coordinates (pyproj on the raw vertices)
    raw = pyogrio.read_dataframe(shp, encoding="cp949")
    to_ll = Transformer.from_crs(2097, 4326, always_xy=True)
    got = read_layer(project, "districts")
    for g, r in zip(got.geometry, raw.geometry):
        xy = shapely.get_coordinates(r)
        lon, lat = to_ll.transform(xy[:, 0], xy[:, 1])
        assert np.abs(shapely.get_coordinates(g) - np.column_stack([lon, lat])).max() < 1e-9
    code, out = run("build", "--project", str(project), "--layer", "districts")
    assert code == 0 and "differently from its last ingest" not in out, out


def test_hotspots_refuse_a_bessel_prj_too(project: Path):
    truth = truth_footprints()
    points = project / "incidents.shp"
    centroids = truth.geometry.to_crs(5186).centroid
    pyogrio.write_dataframe(gpd.GeoDataFrame({"n": [1, 2, 3]}, geometry=centroids.to_crs(BESSEL_TRUTH)), points)
    points.with_suffix(".prj").write_text(LEGACY_PRJ)
    code, out = run("hotspots", str(points), "--layer", "hot", "--h3-res", "9", "--project", str(project))
    assert code == 2, out
    for text in (str(points), "without a datum shift", "--crs EPSG:5174", "--accept-source-crs"):
        assert text in out, out
    code, out = run("hotspots", str(points), "--layer", "hot", "--h3-res", "9", "--crs", "EPSG:5174",
                    "--project", str(project))
    assert code == 0, out
    lonlat = centroids.to_crs(4326)
    expected = {h3.latlng_to_cell(p.y, p.x, 9) for p in lonlat}
    assert set(read_layer(project, "hot")["id"]) == expected
    code, out = run("hotspots", str(points), "--layer", "hot_as_is", "--h3-res", "9", "--accept-source-crs",
                    "--project", str(project))
    assert code == 0, out
    assert "warning: " in out and "kept as asked" in out, out


def test_cpg_file_is_honoured(project: Path):
    truth = truth_footprints()
    path = project / "with_cpg.shp"
    pyogrio.write_dataframe(truth.to_crs(5186), path, encoding="cp949")
    assert path.with_suffix(".cpg").read_text().strip().upper() in {"CP949", "949"}
    code, out = run("ingest", str(path), "--layer", "b", "--project", str(project))
    assert code == 0, out
    got = pyogrio.read_dataframe(store_path(project), layer="b")
    assert list(got["name"]) == list(truth["name"])


@pytest.mark.parametrize("epsg", [5186, 5179, 5174, 2097])
def test_korean_crs_round_trip(project: Path, epsg: int):
    truth = truth_footprints()
    path = project / f"src_{epsg}.gpkg"
    pyogrio.write_dataframe(truth.to_crs(epsg), path)
    code, out = run("ingest", str(path), "--layer", f"b{epsg}", "--project", str(project))
    assert code == 0, out
    got = pyogrio.read_dataframe(store_path(project), layer=f"b{epsg}")
    assert max_vertex_error_m(got, truth) < 0.01


def test_repair_heights_ids_and_catalog_entry(project: Path):
    to_ll = Transformer.from_crs(5186, 4326, always_xy=True)
    x, y = Transformer.from_crs(4326, 5186, always_xy=True).transform(*CITY_HALL)
    ring = lambda pts: Polygon([to_ll.transform(px, py) for px, py in pts])  # noqa: E731
    geoms = [
        ring([(x, y), (x + 20, y), (x + 20, y + 20), (x, y + 20)]),
        ring([(x + 50, y), (x + 70, y + 20), (x + 70, y), (x + 50, y + 20)]),  # bow-tie: repaired
        ring([(x + 90, y), (x + 90, y), (x + 90, y), (x + 90, y)]),  # collapses: dropped
        ring([(x + 120, y), (x + 130, y), (x + 130, y + 10), (x + 120, y + 10)]),
    ]
    src = gpd.GeoDataFrame({"height": [30.0, None, 10.0, None], "floors": [10, 4, 3, None]}, geometry=geoms, crs=4326)
    path = project / "blds.geojson"
    pyogrio.write_dataframe(src, path)
    code, out = run("ingest", str(path), "--layer", "blds", "--kind", "buildings", "--project", str(project))
    assert code == 0, out
    assert "1 repaired, 1 dropped" in out
    assert "1 from a height field, 1 from floors x storey height, 1 with neither" in out
    got = pyogrio.read_dataframe(store_path(project), layer="blds")
    assert len(got) == 3
    assert got["height"].tolist()[:2] == [30.0, 12.0]
    assert got.geometry.is_valid.all()
    assert got.geometry.iloc[1].geom_type == "MultiPolygon"
    ids = got["id"].tolist()
    # stable: ingesting the same file again gives the same ids
    run("ingest", str(path), "--layer", "blds", "--kind", "buildings", "--project", str(project))
    assert pyogrio.read_dataframe(store_path(project), layer="blds")["id"].tolist() == ids
    assert len(set(ids)) == 3
    catalog = (project / "citytwin.yaml").read_text()
    assert "  blds:\n    kind: buildings\n    source: blds.geojson" in catalog


def test_chunked_read_with_progress_equals_plain_read(project: Path, monkeypatch):
    import pipelines.readers.vector as vector

    rng = np.random.default_rng(1)
    pts = [Point(126.97 + dx, 37.56 + dy) for dx, dy in rng.uniform(0, 0.01, size=(1000, 2))]
    path = project / "pts.fgb"
    pyogrio.write_dataframe(gpd.GeoDataFrame({"n": np.arange(1000)}, geometry=pts, crs=4326), path)
    monkeypatch.setattr(vector, "CHUNK", 128)
    chunked = vector.read_vector(path, progress=False).gdf
    monkeypatch.setattr(vector, "CHUNK", 10_000)
    plain = vector.read_vector(path, progress=False).gdf
    assert len(chunked) == 1000
    assert chunked["n"].tolist() == plain["n"].tolist()
    assert chunked.geometry.equals(plain.geometry)


# --- bad input: one clear line, exit code 2, store untouched ---------------------------

@pytest.fixture
def published(project: Path) -> Path:
    """A project whose store already holds a layer, so 'untouched' can be checked."""
    path = project / "ok.geojson"
    pyogrio.write_dataframe(truth_footprints(), path)
    code, out = run("ingest", str(path), "--layer", "buildings", "--kind", "buildings", "--project", str(project))
    assert code == 0, out
    return project


def _bad_cases(project: Path) -> dict[str, tuple[list[str], list[str]]]:
    corrupt = project / "corrupt.geojson"
    corrupt.write_bytes(b'{"type": "FeatureCollection", "features": [{"type": "Feat')
    empty = project / "empty.gpkg"
    empty.write_bytes(b"")
    nofeat = project / "nofeatures.geojson"
    nofeat.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    noprj = project / "noprj.shp"
    pyogrio.write_dataframe(truth_footprints().to_crs(5186), noprj)
    noprj.with_suffix(".prj").unlink()
    cp949 = project / "cp949.shp"
    pyogrio.write_dataframe(truth_footprints().to_crs(5186), cp949, encoding="cp949")
    cp949.with_suffix(".cpg").unlink()
    lines = project / "lines.geojson"
    pyogrio.write_dataframe(gpd.GeoDataFrame(
        {"name": ["a", "b"]}, geometry=[box(126.97, 37.56, 126.971, 37.561), LineString([(126.97, 37.56), (126.98, 37.57)])],
        crs=4326), lines)
    legacy, _ = write_legacy_shapefile(project)
    b = ["--kind", "buildings"]
    return {
        "corrupt": ([str(corrupt), "--layer", "buildings"], [str(corrupt), "cannot be read"]),
        "empty file": ([str(empty), "--layer", "buildings"], [str(empty), "empty"]),
        "no features": ([str(nofeat), "--layer", "buildings"], [str(nofeat), "no features"]),
        "unknown crs": ([str(cp949), "--layer", "buildings", "--crs", "EPSG:999999", "--encoding", "cp949"],
                        ["EPSG:999999", "not a known CRS"]),
        "missing crs": ([str(noprj), "--layer", "buildings"], [str(noprj), "no CRS", "--crs"]),
        "bessel without shift": ([str(legacy), "--layer", "buildings", "--encoding", "cp949"],
                                 [str(legacy), "without a datum shift", "--crs EPSG:5174", "--accept-source-crs"]),
        "declared crs without shift": ([str(legacy), "--layer", "buildings", "--encoding", "cp949",
                                        "--crs", SHIFTLESS_PROJ],
                                       [str(legacy), "declared CRS", "without a datum shift", "--crs EPSG:5174"]),
        "wrong encoding": ([str(cp949), "--layer", "buildings", "--encoding", "utf-8"], [str(cp949), "--encoding cp949"]),
        "undeclared cp949": ([str(cp949), "--layer", "buildings"], [str(cp949), "field 'name'", "--encoding cp949"]),
        "non-polygon buildings": ([str(lines), "--layer", "buildings", *b], [str(lines), "feature 1", "LineString", "--kind generic"]),
        "missing path": ([str(project / "nope.shp"), "--layer", "buildings"], ["nope.shp", "no such file"]),
        "sql in layer name": ([str(lines), "--layer", "x; DROP TABLE buildings"], ["not allowed", "x; DROP TABLE buildings"]),
        "path in layer name": ([str(lines), "--layer", "../../etc/passwd"], ["not allowed"]),
    }


@pytest.mark.parametrize("case", [
    "corrupt", "empty file", "no features", "unknown crs", "missing crs", "bessel without shift",
    "declared crs without shift", "wrong encoding", "undeclared cp949",
    "non-polygon buildings", "missing path", "sql in layer name", "path in layer name",
])
def test_bad_input_is_one_clear_line_and_store_untouched(published: Path, case: str):
    args, expected = _bad_cases(published)[case]
    before = digest(store_path(published))
    catalog_before = (published / "citytwin.yaml").read_text()
    code, out = run("ingest", *args, "--project", str(published))
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out
    for text in expected:
        assert text in errors[0], errors[0]
    assert "Traceback" not in out
    assert digest(store_path(published)) == before
    assert (published / "citytwin.yaml").read_text() == catalog_before
    assert not list((published / "build").glob(".publish-*"))


# --- real data ----------------------------------------------------------------------------

@pytest.mark.realdata
def test_real_seoul_gu_boundaries(project: Path):
    src = shared_data("seoul", "seoul_municipalities_geo.json")
    code, out = run("ingest", str(src), "--layer", "gu", "--kind", "boundaries", "--project", str(project))
    assert code == 0, out
    got = pyogrio.read_dataframe(store_path(project), layer="gu")
    expected = gpd.read_file(src)
    assert len(got) == 25 == len(expected)
    assert set(got["SIG_KOR_NM"]) == set(expected["SIG_KOR_NM"])
    assert "중구" in set(got["SIG_KOR_NM"])
    # every gu is valid and the whole lies around Seoul
    assert got.geometry.is_valid.all()
    minx, miny, maxx, maxy = got.total_bounds
    assert 126.7 < minx < maxx < 127.3 and 37.4 < miny < maxy < 37.75
    # Jung-gu holds City Hall
    jung = got[got["SIG_KOR_NM"] == "중구"].geometry.iloc[0]
    assert jung.contains(Point(*CITY_HALL))


def test_reingest_of_a_gtfs_feed_updates_its_three_entries(project: Path):
    from test_transit import feed_files

    files = feed_files()
    first, second = project / "feed_2023.zip", project / "feed_2024.zip"
    with zipfile.ZipFile(first, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text.encode("utf-8"))
    renamed = files["stops.txt"].replace("Middle", "시청").replace("End", "광화문")
    with zipfile.ZipFile(second, "w") as zf:  # next year's feed, exported in CP949
        for name, text in {**files, "stops.txt": renamed}.items():
            zf.writestr(name, text.lstrip("\ufeff").encode("cp949"))
    code, out = run("ingest", str(first), "--layer", "city", "--project", str(project))
    assert code == 0, out
    code, out = run("ingest", str(second), "--layer", "city", "--encoding", "cp949", "--project", str(project))
    assert code == 0, out
    for name in ("city_stops", "city_routes", "city_departures"):
        entry = catalog_entry(project, name)
        assert (entry["source"], entry["encoding"]) == ("feed_2024.zip", "cp949"), entry
    code, out = run("build", "--project", str(project), "--layer", "city_stops")
    assert code == 0, out
    stops = read_layer(project, "city_stops").set_index("id")
    assert (stops.loc["B", "stop_name"], stops.loc["C", "stop_name"]) == ("시청", "광화문")
