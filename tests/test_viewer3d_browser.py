"""The CesiumJS 3D viewer in headless Chromium, over the real flow: sample-city, build, serve.

The page must load the buildings tileset (and the placed landmark model beside it) with no
console error, no failed request and
nothing asked of any host but this one; the camera must look at City Hall; a click on a
building must show that building's properties, which must be those of a source building
under the clicked point. The buildings' content is EXT_meshopt_compression (the build's
default), so drawing and picking them shows CesiumJS decodes it. A screenshot goes to
tests/artifacts/viewer3d.png.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
import yaml
from pyproj import Geod

from api_server import serve
from browser import chromium_page, save_screenshot
from gltf_read import split_glb

pytestmark = pytest.mark.browser

CITY_HALL = (126.978, 37.5665)
LOAD_TIMEOUT_MS = 120_000  # software WebGL on a shared 2-core machine is slow
VIEWPORT = (960, 600)  # fewer pixels for SwiftShader to fill


@pytest.fixture(scope="module")
def project(built_sample_city: Path) -> Path:
    return built_sample_city


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[str]:
    with serve(project) as url:
        yield url


def _source_buildings(project: Path) -> gpd.GeoDataFrame:
    """The buildings as sample-city wrote them (read without our code), in metres (EPSG:5186),
    with the expected height: the source's, else floors x the catalog's storey height."""
    catalog = yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))
    layer = catalog["layers"]["buildings"]
    gdf = gpd.read_file(project / layer["source"]).to_crs(5186)
    storey = float(layer.get("storey_height") or catalog.get("storey_height") or 3.0)
    gdf["expected_height"] = gdf["height"].where(gdf["height"].notna(), gdf["floors"].astype(float) * storey)
    return gdf


# Probe the canvas outward from the centre for a building, as a user would aim.
FIND_BUILDING = """(() => {
  const v = window.citytwinViewer3d.viewer, c = v.scene.canvas;
  const w = c.clientWidth, h = c.clientHeight;
  for (let dy = 0; dy < h / 2; dy += 30)
    for (const dx of [0, 30, -30, 90, -90, 180, -180]) {
      const p = new Cesium.Cartesian2(Math.round(w / 2 + dx), Math.round(h / 2 + dy));
      if (!(v.scene.pick(p) instanceof Cesium.Cesium3DTileFeature)) continue;
      const at = v.scene.pickPosition(p);
      if (!at) continue;
      const g = Cesium.Cartographic.fromCartesian(at);
      return {x: p.x, y: p.y, lon: Cesium.Math.toDegrees(g.longitude), lat: Cesium.Math.toDegrees(g.latitude),
              h: g.height};
    }
  return null;
})()"""

CAMERA = """(() => {
  const v = window.citytwinViewer3d.viewer, c = v.scene.canvas, cam = v.camera;
  const centre = Cesium.Cartographic.fromCartesian(
    cam.pickEllipsoid(new Cesium.Cartesian2(c.clientWidth / 2, c.clientHeight / 2)));
  const at = cam.positionCartographic;
  return {centre: [Cesium.Math.toDegrees(centre.longitude), Cesium.Math.toDegrees(centre.latitude)],
          position: [Cesium.Math.toDegrees(at.longitude), Cesium.Math.toDegrees(at.latitude), at.height],
          heading: Cesium.Math.toDegrees(cam.heading), pitch: Cesium.Math.toDegrees(cam.pitch)};
})()"""


def test_3d_viewer_shows_and_picks_the_sample_city_offline(server: str, project: Path) -> None:
    with chromium_page(VIEWPORT) as (page, record):
        page.goto(f"{server}/viewer/3d/")
        page.wait_for_function("window.__viewer3dState && (window.__viewer3dState.loaded"
                               " || window.__viewer3dState.error !== null)", timeout=LOAD_TIMEOUT_MS)
        # the placed landmark model (a 3D-only layer) is drawn beside the buildings
        page.wait_for_function("(window.__viewer3dState.overlays.landmark_models || 0) > 0"
                               " || window.__viewer3dState.error !== null", timeout=LOAD_TIMEOUT_MS)
        state = page.evaluate("window.__viewer3dState")
        shot = save_screenshot(page, "viewer3d.png")
        camera = page.evaluate(CAMERA)
        hit = page.evaluate(FIND_BUILDING)
        assert hit is not None, "no building under any probed pixel"
        page.mouse.click(hit["x"], hit["y"])
        page.wait_for_selector("#feature:not([hidden])", timeout=LOAD_TIMEOUT_MS)
        rows = page.locator("#feature-table tr").evaluate_all(
            "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])")
        selected = page.evaluate("window.__viewer3dState.selected")

    assert record.external_requests == [], "the 3D viewer must not leave localhost"
    assert record.problems == []
    assert state["error"] is None
    assert state["loaded"] is True and state["tilesLoaded"] > 0
    assert state["layer"] == "buildings"
    assert any("/collections/buildings/3dtiles/content/" in url for url in record.requests)
    contents = list((project / "build" / "3dtiles" / "buildings").rglob("*.glb"))
    assert contents and all("EXT_meshopt_compression" in split_glb(p.read_bytes())[0]["extensionsRequired"]
                            for p in contents)
    assert list(state["overlays"]) == ["landmark_models"] and state["overlays"]["landmark_models"] >= 1
    assert any("/collections/landmark_models/3dtiles/content/" in url for url in record.requests)
    assert shot.stat().st_size > 10_000

    # The camera: 800 m up, heading north, 35 degrees down, looking at City Hall.
    geod = Geod(ellps="WGS84")
    _, _, off = geod.inv(*CITY_HALL, *camera["centre"])
    assert off < 5, f"the view centre is {off:.1f} m from City Hall"
    assert camera["position"][2] == pytest.approx(800, abs=1)
    assert camera["pitch"] == pytest.approx(-35, abs=0.01)
    assert min(camera["heading"] % 360, 360 - camera["heading"] % 360) < 0.01

    # The panel shows what was picked, with the core properties.
    assert {"id", "height", "source"} <= set(selected)
    assert dict(rows).keys() == selected.keys()
    assert selected["source"] == "buildings"

    # That building is in the source, under the clicked point (the pick lands on a wall or
    # a roof, so on or within a footprint), with the same height, usage and name.
    source = _source_buildings(project)
    point = gpd.GeoSeries([shapely.Point(hit["lon"], hit["lat"])], crs=4326).to_crs(5186).iloc[0]
    near = source[source.distance(point) <= 1.5]
    assert len(near), f"no source footprint within 1.5 m of the picked point {hit}"
    same = near[(near["expected_height"] - float(selected["height"])).abs() <= 0.05]
    if "usage" in selected:
        same = same[same["usage"] == selected["usage"]]
    same = same[same["name"] == selected["name"]] if "name" in selected else same[same["name"].isna()]
    assert len(same) >= 1, f"picked {selected}, but the footprints there are:\n{near.drop(columns='geometry')}"
    assert -0.5 <= hit["h"] <= float(selected["height"]) + 0.5


def test_3d_viewer_draws_the_buildings_from_implicit_tiling(implicit_sample_city: Path) -> None:
    """The sample city's buildings written with implicit tiling: CesiumJS reads the subtree, fetches
    content by the URI template, draws the buildings and picks one, with no console error."""
    with serve(implicit_sample_city) as url, chromium_page(VIEWPORT) as (page, record):
        page.goto(f"{url}/viewer/3d/")
        page.wait_for_function("window.__viewer3dState && (window.__viewer3dState.loaded"
                               " || window.__viewer3dState.error !== null)", timeout=LOAD_TIMEOUT_MS)
        state = page.evaluate("window.__viewer3dState")
        save_screenshot(page, "viewer3d_implicit.png")
        hit = page.evaluate(FIND_BUILDING)
        assert hit is not None, "no building under any probed pixel"
        page.mouse.click(hit["x"], hit["y"])
        page.wait_for_selector("#feature:not([hidden])", timeout=LOAD_TIMEOUT_MS)
        selected = page.evaluate("window.__viewer3dState.selected")

    assert record.problems == []
    assert state["error"] is None and state["loaded"] is True and state["tilesLoaded"] > 0
    assert any(u.endswith("/collections/buildings/3dtiles/subtrees/0/0/0.subtree") for u in record.requests)
    assert any(re.search(r"/collections/buildings/3dtiles/content/\d+/\d+/\d+\.glb$", u) for u in record.requests)
    assert selected["source"] == "buildings"
    assert selected["id"] in set(gpd.read_file(implicit_sample_city / "build" / "citytwin.gpkg", layer="buildings")["id"])
