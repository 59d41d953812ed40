"""Ingest in chunks on Dask publishes what the in-process ingest publishes, on both stores.

The source has what chunking could get wrong: a repaired bow-tie and a dropped collapsed ring
in later chunks (reported by their index in the file), an integer field whose nulls sit in one
chunk only (pyogrio types it per read), a boolean and a date field, Korean text, and an
identical duplicate of an early feature in a late chunk (its id takes the '-2' suffix only
across the whole file). Chunks are made small (CHUNK) so a 1,000-feature file is 8 of them.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely
from click.testing import CliRunner
from pyproj import Transformer
from shapely.geometry import Polygon, box

import pipelines.readers.vector as vector
from pipelines.catalog import load_catalog
from pipelines.cli import main
from pipelines.costs import cost_log_path, read_cost_log
from pipelines.ingest import ingest_layer
from pipelines.project import project_store
from pipelines.runner import DaskRunner
from test_dask import _kill_first_worker_after_one

N = 1000
CHUNK = 128
BOWTIE, COLLAPSED, DUPLICATE_OF, DUPLICATE = 300, 650, 100, 900
CITY_HALL_5186 = Transformer.from_crs(4326, 5186, always_xy=True).transform(126.9779, 37.5663)


def source_frame() -> gpd.GeoDataFrame:
    x0, y0 = CITY_HALL_5186
    geoms = [box(x0 + 30 * (i % 40), y0 + 30 * (i // 40), x0 + 30 * (i % 40) + 20, y0 + 30 * (i // 40) + 15)
             for i in range(N)]
    bx, by = geoms[BOWTIE].bounds[:2]
    geoms[BOWTIE] = Polygon([(bx, by), (bx + 20, by + 15), (bx + 20, by), (bx, by + 15)])
    cx, cy = geoms[COLLAPSED].bounds[:2]
    geoms[COLLAPSED] = Polygon([(cx, cy), (cx + 10, cy), (cx + 20, cy)])
    floors = pd.array([i % 30 + 1 for i in range(N)], dtype="Int64")
    floors[520:530] = pd.NA  # nulls in one chunk only
    flag = pd.array([i % 3 == 0 for i in range(N)], dtype="boolean")
    flag[770:775] = pd.NA
    frame = gpd.GeoDataFrame({
        "name": [f"건물 {i}" for i in range(N)],
        "floors": floors,
        "flag": flag,
        "built": [dt.date(1980 + i % 40, 1 + i % 12, 1 + i % 28) for i in range(N)],
    }, geometry=geoms, crs=5186)
    frame.iloc[DUPLICATE] = frame.iloc[DUPLICATE_OF]
    return frame


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("chunked_sources")
    frame = source_frame()
    paths = {"gpkg": folder / "blds.gpkg", "fgb": folder / "blds.fgb", "shp": folder / "blds.shp"}
    for fmt, path in paths.items():
        data = frame if fmt != "shp" else frame.drop(columns=["flag"])  # a .dbf has no nullable booleans
        # no spatial index: FlatGeobuf would store the features in its index order, not the frame's
        pyogrio.write_dataframe(data, path, encoding="utf-8" if fmt == "shp" else None,
                                layer_options={"SPATIAL_INDEX": "NO"} if fmt == "fgb" else None)
    return paths


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(vector, "CHUNK", CHUNK)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def published(project: Path, layer: str) -> gpd.GeoDataFrame:
    store = project_store(load_catalog(project))
    try:
        return store.read(layer)
    finally:
        store.close()


def assert_same_layer(got: gpd.GeoDataFrame, expected: gpd.GeoDataFrame) -> None:
    assert got["id"].tolist() == expected["id"].tolist()
    assert shapely.to_wkb(got.geometry.to_numpy()).tolist() == shapely.to_wkb(expected.geometry.to_numpy()).tolist()
    pd.testing.assert_frame_equal(got.drop(columns="geometry"), expected.drop(columns="geometry"))


def check_contents(layer: gpd.GeoDataFrame, fmt: str) -> None:
    """What the source holds, computed here rather than by the code under test (by name: PostGIS
    reads in id order)."""
    assert len(layer) == N - 1  # the collapsed ring is dropped
    by_name = layer.set_index("name")
    assert by_name.geometry[f"건물 {BOWTIE}"].geom_type == "MultiPolygon"
    assert f"건물 {COLLAPSED}" not in by_name.index
    first, second = sorted(by_name.loc[f"건물 {DUPLICATE_OF}", "id"], key=len)
    assert second == first + "-2"
    assert layer["floors"].isna().sum() == 10
    if fmt != "shp":
        assert by_name.loc["건물 0", "built"] in (dt.date(1980, 1, 1), "1980-01-01")


def ingest_both_ways(project: Path, src: Path, fmt: str) -> tuple[str, str]:
    """SRC ingested in process as layer 'serial' and on 2 Dask workers as 'dask': the same layer."""
    assert run("init", str(project))[0] == 0
    outs = []
    for layer, workers in (("serial", []), ("dask", ["--workers", "2"])):
        code, out = run("ingest", str(src), "--layer", layer, "--kind", "buildings", *workers,
                        "--project", str(project))
        assert code == 0, out
        outs.append(out)
    serial, distributed = published(project, "serial"), published(project, "dask")
    check_contents(serial, fmt)
    assert_same_layer(distributed, serial)
    return outs[0], outs[1]


@pytest.mark.parametrize("fmt", ["gpkg", "fgb", "shp"])
def test_dask_ingest_equals_in_process_ingest_on_geopackage(tmp_path: Path, sources, small_chunks, fmt: str):
    project = tmp_path / "proj"
    serial_out, dask_out = ingest_both_ways(project, sources[fmt], fmt)
    for out in (serial_out, dask_out):
        assert "1 repaired, 1 dropped" in out
        assert f"dropped feature {COLLAPSED} (counting from 0)" in out
    chunks = -(-N // CHUNK)
    assert f"read in {chunks} chunks in process" in serial_out
    assert f"read in {chunks} chunks on 2 Dask workers" in dask_out

    log = read_cost_log(cost_log_path(project / "build", "dask", "ingest"))
    assert (log.job, log.workers, log.features, len(log.partitions)) == ("ingest", 2, N - 1, chunks)
    assert [p.rows for p in log.partitions] == [CHUNK] * (chunks - 1) + [N - CHUNK * (chunks - 1)]
    assert all(p.bytes > 0 and p.read_s >= 0 and p.work_s > 0 for p in log.partitions)
    assert 0 <= log.write_s <= log.driver_s <= log.wall_s
    json.loads(cost_log_path(project / "build", "serial", "ingest").read_text())


def test_dask_ingest_equals_in_process_ingest_on_postgis(tmp_path: Path, sources, small_chunks, pg_db_url,
                                                         monkeypatch):
    monkeypatch.setenv("CITYTWIN_DATABASE_URL", pg_db_url)
    ingest_both_ways(tmp_path / "proj", sources["gpkg"], "gpkg")


def test_a_killed_worker_is_retried_and_the_layer_is_identical(tmp_path: Path, sources, small_chunks):
    project = tmp_path / "proj"
    assert run("init", str(project))[0] == 0
    code, out = run("ingest", str(sources["fgb"]), "--layer", "blds", "--kind", "buildings",
                    "--project", str(project))
    assert code == 0, out
    expected = published(project, "blds")
    catalog = load_catalog(project)
    runner = DaskRunner(workers=2)
    killed: list[int] = []
    _kill_first_worker_after_one(runner, killed)
    try:
        report = ingest_layer(catalog, project_store(catalog), "blds", progress=False, runner=runner)
    finally:
        runner.close()
    assert killed, "no worker was killed: the test did not exercise a retry"
    assert report.published == N - 1
    assert_same_layer(published(project, "blds"), expected)


def test_a_chunk_names_the_file_and_the_feature(tmp_path: Path, small_chunks):
    """A line among polygons, in a late chunk: one line naming the file, its index in the file
    and how many there are in all, as a whole-file read says it; the store is untouched."""
    frame = source_frame()
    frame.loc[[700, 990], "geometry"] = [shapely.LineString([(0, 0), (1, 1)]), shapely.LineString([(0, 0), (2, 1)])]
    path = tmp_path / "mixed.gpkg"
    pyogrio.write_dataframe(frame, path)
    project = tmp_path / "proj"
    assert run("init", str(project))[0] == 0
    for workers in ([], ["--workers", "2"]):
        code, out = run("ingest", str(path), "--layer", "blds", "--kind", "buildings", *workers,
                        "--project", str(project))
        assert code == 2, out
        errors = [line for line in out.splitlines() if line.startswith("error: ")]
        assert errors == [f"error: {path}: 2 feature(s) are not polygons (first: feature 700, a LineString); "
                          "a buildings layer needs polygon footprints. Remove them, or ingest with --kind generic."]
        assert not (project / "build" / "citytwin.gpkg").exists()


def test_wrong_encoding_in_a_chunk_is_one_line(tmp_path: Path, small_chunks):
    frame = source_frame()
    path = tmp_path / "cp949.shp"
    pyogrio.write_dataframe(frame.drop(columns=["flag"]), path, encoding="cp949")
    path.with_suffix(".cpg").unlink()
    project = tmp_path / "proj"
    assert run("init", str(project))[0] == 0
    code, out = run("ingest", str(path), "--layer", "blds", "--encoding", "utf-8", "--workers", "2",
                    "--project", str(project))
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(path) in errors[0] and "--encoding cp949" in errors[0], out
    assert "Traceback" not in out
