"""``citytwin build`` and ``export-3dtiles`` on a layer holding one 1,000,000-vertex footprint:
the work per feature is bounded (the footprint is simplified, and the reports say so), scratch
left by a killed run is removed by the next one, and published outputs are readable by all."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import Polygon, box

from gltf_read import iter_content, mesh_local_enu, property_strings, split_glb

REPO = Path(__file__).resolve().parents[1]
CITYTWIN = REPO / ".venv" / "bin" / "citytwin"
TO_M = Transformer.from_crs(4326, 5186, always_xy=True)
TO_LL = Transformer.from_crs(5186, 4326, always_xy=True)
ECEF_TO_LL = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
CENTRE = TO_M.transform(126.9779, 37.5663)
RADIUS = 100.0  # metres, in EPSG:5186
VERTICES = 1_000_000
SMALL = 2000  # ordinary footprints beside it, so the 3D step lasts long enough to be killed in


def citytwin(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    return subprocess.run([*exe, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def popen(*args: str) -> subprocess.Popen:
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    return subprocess.Popen([*exe, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def circle() -> Polygon:
    t = np.linspace(0, 2 * np.pi, VERTICES, endpoint=False)
    x, y = CENTRE[0] + RADIUS * np.cos(t), CENTRE[1] + RADIUS * np.sin(t)
    return Polygon(np.column_stack(TO_LL.transform(x, y)))


def ingest(root: Path, with_huge: bool) -> Path:
    """A project whose 'bld' layer is SMALL boxes and, with_huge, the circle (id 'huge', from field 'ref')."""
    geoms, refs = ([circle()], ["huge"]) if with_huge else ([], [])
    for i in range(SMALL):
        x0, y0 = CENTRE[0] + 200 + (i % 50) * 20, CENTRE[1] + (i // 50) * 20
        lo, la = TO_LL.transform([x0, x0 + 12], [y0, y0 + 12])
        geoms.append(box(lo[0], la[0], lo[1], la[1]))
        refs.append(f"b{i}")
    src = root / "footprints.geojson"
    gpd.GeoDataFrame({"ref": refs, "height": 20.0}, geometry=geoms, crs=4326).to_file(src, driver="GeoJSON")
    project = root / "proj"
    assert citytwin("init", project).returncode == 0
    catalog = (project / "citytwin.yaml").read_text(encoding="utf-8")
    entry = f"layers:\n  bld:\n    kind: buildings\n    source: {src}\n    id_field: ref\n"
    (project / "citytwin.yaml").write_text(catalog.replace("layers: {}\n", entry), encoding="utf-8")
    res = citytwin("ingest", src, "--layer", "bld", "--project", project)
    assert res.returncode == 0, res.stderr
    return project


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    return ingest(tmp_path_factory.mktemp("huge"), with_huge=True)


@pytest.fixture(scope="module")
def ingested_small(tmp_path_factory) -> Path:
    return ingest(tmp_path_factory.mktemp("small"), with_huge=False)


@pytest.fixture
def project(ingested: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ingested, tmp_path / "proj"))


@pytest.fixture
def small_project(ingested_small: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ingested_small, tmp_path / "proj"))


def tileset_ids(tileset: Path) -> list[str]:
    ids = []
    for _, path, _ in iter_content(tileset):
        gltf, blob = split_glb(path.read_bytes())
        ids += property_strings(gltf, blob, "id")
    return ids


def huge_vertices(tileset: Path) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal distance (m, EPSG:5186) from the circle's centre and height of every vertex of 'huge'."""
    for _, path, m in iter_content(tileset):
        gltf, blob = split_glb(path.read_bytes())
        ids = property_strings(gltf, blob, "id")
        if "huge" in ids:
            mesh = mesh_local_enu(gltf, blob)
            pts = mesh["positions"][mesh["feature_ids"] == ids.index("huge")]
            ecef = pts @ m[:3, :3].T + m[:3, 3]
            lon, lat, h = ECEF_TO_LL.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
            x, y = TO_M.transform(lon, lat)
            return np.hypot(x - CENTRE[0], y - CENTRE[1]), h
    raise AssertionError("building 'huge' is in no tile")


def check_outputs(project: Path) -> None:
    tileset = project / "build" / "3dtiles" / "bld"
    ids = tileset_ids(tileset)
    assert sorted(ids) == sorted(["huge"] + [f"b{i}" for i in range(SMALL)])  # each building once
    d, h = huge_vertices(tileset)
    # simplified, not distorted: its vertices are vertices of the circle, and far fewer
    assert len(d) < 4 * 5000 and np.all(np.abs(d - RADIUS) < 0.05), (len(d), d.min(), d.max())
    assert set(np.round(h, 2)) == {0.0, 20.0}  # walls from the ground, a flat roof at the height
    leftovers = [p for p in (project / "build").rglob("*") if ".partial-" in p.name]
    assert leftovers == []


def modes(root: Path) -> set[tuple[str, str]]:
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    return {("dir" if p.is_dir() else "file", oct(stat.S_IMODE(p.stat().st_mode))) for p in paths}


def test_build_simplifies_the_huge_footprint_and_says_so(project: Path):
    res = citytwin("build", "--project", project, "--skip-ingest", timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "1 building simplified: footprint over 5,000 vertices" in res.stdout, res.stdout
    assert "1 feature(s) over 5,000 vertices simplified to fit" in res.stdout, res.stdout
    assert "features left out per zoom (tile size/too small to draw): none" in res.stdout, res.stdout
    assert "building huge has 1,000,001 vertices: simplified" in res.stderr
    check_outputs(project)


def test_export_3dtiles_bounds_the_footprint(project: Path, tmp_path: Path):
    out = tmp_path / "export" / "bld3d"
    res = citytwin("export-3dtiles", "layer:bld", "--out", out, "--project", project, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "1 building simplified: footprint over 5,000 vertices" in res.stdout, res.stdout
    assert len(tileset_ids(out)) == SMALL + 1


def test_published_outputs_are_readable_by_everyone(small_project: Path, tmp_path: Path):
    res = citytwin("build", "--project", small_project, "--skip-ingest", timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert modes(small_project / "build" / "3dtiles" / "bld") == {("dir", "0o755"), ("file", "0o644")}
    for name in ("bld.pmtiles", "bld.json"):
        assert modes(small_project / "build" / "tiles" / name) == {("file", "0o644")}
    out = tmp_path / "export" / "bld3d"
    res = citytwin("export-3dtiles", "layer:bld", "--out", out, "--project", small_project, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert modes(out) == {("dir", "0o755"), ("file", "0o644")}
    res = citytwin("export-3dtiles", "layer:bld", "--out", out, "--project", small_project, timeout=600)
    assert res.returncode == 0 and modes(out) == {("dir", "0o755"), ("file", "0o644")}  # replacing one too


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_scratch_of_a_killed_run_is_removed_and_a_live_one_kept(small_project: Path):
    project = small_project
    threed, tiles = project / "build" / "3dtiles", project / "build" / "tiles"
    threed.mkdir(parents=True)
    tiles.mkdir(parents=True)
    gone = dead_pid()
    stale = [threed / f".bld.partial-{gone}-k1ll3d_x", tiles / f".bld.pmtiles.partial-{gone}-abc12345.pmtiles",
             tiles / f".bld.json.partial-{gone}-abc12345.json"]
    stale[0].mkdir()
    (stale[0] / "tileset.json").write_text("{}")
    for p in stale[1:]:
        p.write_bytes(b"half")
    live = threed / f".bld.partial-{os.getpid()}-running1"  # this test process is alive: a concurrent build
    live.mkdir()
    other = threed / f".other.partial-{gone}-abc12345"  # another output's scratch is not ours to judge here
    other.mkdir()
    res = citytwin("build", "--project", project, "--skip-ingest", timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [p for p in stale if p.exists()] == []
    assert live.is_dir() and other.is_dir()


def test_a_build_killed_in_the_3d_step_leaves_nothing_after_the_next(project: Path):
    threed = project / "build" / "3dtiles"
    proc = popen("build", "--project", project, "--skip-ingest")
    give_up = time.monotonic() + 600  # a safety stop for a build that hangs, not a timing check
    try:
        scratch = None
        while scratch is None and proc.poll() is None and time.monotonic() < give_up:
            if threed.is_dir():
                scratch = next(threed.glob(f".bld.partial-{proc.pid}-*"), None)
            time.sleep(0.002)
        assert scratch is not None, f"the build ended (code {proc.returncode}) before its 3D step was seen"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL and scratch.is_dir()  # killed mid-3D step, scratch left
    assert not (threed / "bld").exists()
    res = citytwin("build", "--project", project, "--skip-ingest", timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not scratch.exists()
    check_outputs(project)


def write_cityjson_with_huge_ring(path: Path, lod: str) -> None:
    """Two buildings in EPSG:5186: 'huge', whose one surface is the circle (LOD2: a flat roof at
    20 m; LOD0: a footprint at 0 m, 20 m high), and 'small'."""
    t = np.linspace(0, 2 * np.pi, VERTICES, endpoint=False)
    x0, y0 = CENTRE
    roof = np.column_stack([RADIUS * np.cos(t), RADIUS * np.sin(t), np.full(VERTICES, 20.0 if lod == "2" else 0.0)])
    square = np.array([[300, 0, 10.0], [310, 0, 10.0], [310, 10, 10.0], [300, 10, 10.0]])
    scale = 1e-5  # fine enough that no two of the circle's points (0.6 mm apart) coincide
    ints = np.round(np.vstack([roof, square]) / scale).astype(np.int64).tolist()
    surface = lambda first, n: {"type": "MultiSurface", "lod": lod,  # noqa: E731
                                "boundaries": [[list(range(first, first + n))]]}
    path.write_text(json.dumps({
        "type": "CityJSON", "version": "1.1",
        "transform": {"scale": [scale] * 3, "translate": [x0, y0, 0.0]},
        "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/5186"},
        "CityObjects": {
            "huge": {"type": "Building", "attributes": {"measuredHeight": 20.0}, "geometry": [surface(0, VERTICES)]},
            "small": {"type": "Building", "attributes": {"measuredHeight": 10.0},
                      "geometry": [surface(VERTICES, 4)]}},
        "vertices": ints}))


@pytest.mark.parametrize("lod,said,heights", [
    ("2", "1 surface simplified: surface over 5,000 vertices (simplified in its plane to fit)", {20.0}),
    ("0", "1 building simplified: footprint over 5,000 vertices", {0.0, 20.0}),  # extruded to LOD1
])
def test_export_3dtiles_bounds_a_city_model_ring(tmp_path: Path, lod: str, said: str, heights: set[float]):
    src = tmp_path / "huge.city.json"
    write_cityjson_with_huge_ring(src, lod)
    out = tmp_path / "model3d"
    res = citytwin("export-3dtiles", src, "--out", out, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert said in res.stdout, res.stdout
    assert sorted(tileset_ids(out)) == ["huge", "small"]
    d, h = huge_vertices(out)
    assert len(d) <= 4 * 5000 and np.all(np.abs(d - RADIUS) < 0.05), (len(d), d.min(), d.max())
    assert set(np.round(h, 2)) == heights  # on the roof's plane, or walls from the ground up
    assert modes(out) == {("dir", "0o755"), ("file", "0o644")}
