"""Test helpers for the API: a small synthetic project, and ``citytwin serve`` as a subprocess.

pygeoapi reads its configuration once per process, so every served project is its own
``citytwin serve`` process on a free port, stopped when the test (module) is done.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import shapely

from postgis_server import free_port

REPO = Path(__file__).resolve().parents[1]
CITYTWIN = REPO / ".venv" / "bin" / "citytwin"
CITY_HALL = (126.9779692, 37.5662952)  # Seoul City Hall, lon/lat
SERVER_PIDS: dict[str, int] = {}  # base URL -> pid of the running ``citytwin serve``
CATALOG = """\
name: API test city
server:
  title: API test city
  description: Synthetic buildings around Seoul City Hall
layers:
  buildings:
    kind: buildings
    title: Buildings
    minzoom: 13
    maxzoom: 16
  landmarks:
    kind: pois
    title: Landmarks
    minzoom: 12
    maxzoom: 15
"""


def sample_buildings(n: int = 300, seed: int = 7) -> gpd.GeoDataFrame:
    """``n`` rotated rectangles (10-40 m) within ~900 m of City Hall, with id, name, height."""
    rng = np.random.default_rng(seed)
    m_lon = 1 / (111_320 * np.cos(np.radians(CITY_HALL[1])))  # degrees per metre
    m_lat = 1 / 110_540
    cx = CITY_HALL[0] + rng.uniform(-900, 900, n) * m_lon
    cy = CITY_HALL[1] + rng.uniform(-900, 900, n) * m_lat
    w, h = rng.uniform(10, 40, n), rng.uniform(10, 40, n)
    angle = rng.uniform(0, np.pi / 2, n)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float) / 2
    polys = []
    for i in range(n):
        dx, dy = corners[:, 0] * w[i], corners[:, 1] * h[i]
        rx = dx * np.cos(angle[i]) - dy * np.sin(angle[i])
        ry = dx * np.sin(angle[i]) + dy * np.cos(angle[i])
        polys.append(shapely.Polygon(np.column_stack([cx[i] + rx * m_lon, cy[i] + ry * m_lat])))
    return gpd.GeoDataFrame(
        {
            "id": [f"bld-{i:04d}" for i in range(n)],
            "name": [f"Building {i}" for i in range(n)],
            "height": rng.uniform(3, 120, n).round(1),
        },
        geometry=polys, crs="EPSG:4326",
    )


def sample_landmarks() -> gpd.GeoDataFrame:
    names = ["Seoul City Hall", "Deoksugung", "Gwanghwamun", "Cheonggyecheon Plaza", "Namdaemun"]
    lon = [126.9779692, 126.9751, 126.9769, 126.9780, 126.9753]
    lat = [37.5662952, 37.5658, 37.5759, 37.5691, 37.5600]
    return gpd.GeoDataFrame({"id": [f"lm-{i}" for i in range(5)], "name": names},
                            geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")


def make_project(root: Path, database_url: str | None = None) -> dict[str, gpd.GeoDataFrame]:
    """Write citytwin.yaml in ``root``, publish the layers and (GeoPackage) build PMTiles."""
    from pipelines.catalog import load_catalog
    from pipelines.store import open_store

    root.mkdir(parents=True, exist_ok=True)
    (root / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    catalog = load_catalog(root)
    layers = {"buildings": sample_buildings(), "landmarks": sample_landmarks()}
    store = open_store(catalog.build_path, database_url=database_url)
    try:
        for name, gdf in layers.items():
            store.publish(name, gdf)
        if store.kind == "gpkg":
            from tiles.pmtiles_build import build_pmtiles

            for name in layers:
                cfg = catalog.layers[name]
                build_pmtiles(store, name, catalog.build_path / "tiles" / f"{name}.pmtiles",
                              cfg.minzoom, cfg.maxzoom, cfg.fields, progress=False)
    finally:
        store.close()
    return layers


def _env(database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGEOAPI_")}
    env.pop("CITYTWIN_DATABASE_URL", None)
    if database_url:
        env["CITYTWIN_DATABASE_URL"] = database_url
    return env


@contextmanager
def serve(project: Path, database_url: str | None = None, timeout: float = 90,
          extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``citytwin serve`` for ``project``; yield its base URL once it answers."""
    port = free_port()
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    log = project / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*exe, "serve", "--project", str(project), "--port", str(port), *extra_args],
                                stdout=out, stderr=subprocess.STDOUT, env={**_env(database_url), **(extra_env or {})},
                                cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base] = proc.pid
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"citytwin serve exited with {proc.returncode}:\n{log.read_text()}")
            try:  # up, and its AR index (built in the background after start-up) ready
                if (httpx.get(f"{base}/conformance?f=json", timeout=2).status_code == 200
                        and httpx.get(f"{base}/ar/view", timeout=2).status_code != 503):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"citytwin serve did not answer within {timeout} s:\n{log.read_text()}")
            time.sleep(0.3)
        yield base
    finally:
        SERVER_PIDS.pop(base, None)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_output(project: Path) -> str:
    return (project / "serve.log").read_text(errors="replace")


def wait_for(check, timeout: float = 60.0):
    """``check()``'s first truthy answer, asked again until ``timeout`` (a server polling a source)."""
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"not seen within {timeout} s: {check.__doc__ or 'the check'}; last answer: {got!r}")
        time.sleep(0.3)


def run_citytwin(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``citytwin ARGS`` on the embedded store; fails the test with its output when it fails."""
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    proc = subprocess.run([*exe, *args], cwd=REPO, env=_env(None), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"citytwin {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc
