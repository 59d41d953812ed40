"""The viewer in headless Chromium, over the real flow: sample-city, build, serve.

The page must load with no console error, no failed request and nothing asked of any
host but this one, draw the sample city's buildings from the server's vector tiles, open
on the data and list each layer once. A screenshot goes to tests/artifacts/viewer.png
for a human to look at.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
import yaml

from browser import PageRecord, chromium_page, save_screenshot
from api_server import serve

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
LOAD_TIMEOUT_MS = 120_000  # software WebGL on a shared 2-core machine can be slow


@pytest.fixture(scope="module")
def project(built_sample_city: Path) -> Path:
    return built_sample_city


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[str]:
    with serve(project) as base:
        yield base


def _source_buildings(project: Path) -> tuple[gpd.GeoDataFrame, float]:
    """The buildings as the sample city wrote them (read without our own code), and the
    catalog's storey height."""
    catalog = yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))
    layer = catalog["layers"]["buildings"]
    sources = [layer["source"]] if isinstance(layer["source"], str) else layer["source"]
    frames = [gpd.read_file(project / s).to_crs(4326) for s in sources]
    storey = float(layer.get("storey_height") or catalog.get("storey_height") or 3.0)
    return gpd.GeoDataFrame(gpd.pd.concat(frames, ignore_index=True), crs=4326), storey


def _catalog(project: Path) -> dict:
    return yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))


def _vector_layers(project: Path) -> dict[str, dict]:
    """The catalog layers served as vector tiles (not rasters, not 3D-only model layers)."""
    return {name: cfg for name, cfg in _catalog(project)["layers"].items()
            if cfg["kind"] not in ("raster", "landmark_models", "city_model", "live")}


def _source_extent(project: Path) -> tuple[float, float, float, float]:
    """Union of the vector layers' source files' bounds in lon/lat, read without our code."""
    bounds = []
    for cfg in _vector_layers(project).values():
        sources = [cfg["source"]] if isinstance(cfg["source"], str) else cfg["source"]
        bounds += [gpd.read_file(project / s).to_crs(4326).total_bounds for s in sources]
    return (min(b[0] for b in bounds), min(b[1] for b in bounds), max(b[2] for b in bounds), max(b[3] for b in bounds))


def _style_groups(style_id: str) -> list[str]:
    style = json.loads((REPO / "styles" / f"{style_id}.json").read_text(encoding="utf-8"))
    return list(dict.fromkeys(l["metadata"]["citytwin:group"] for l in style["layers"]
                              if "citytwin:group" in l.get("metadata", {})))


def _style_layers(style_id: str) -> set[str]:
    """The collections a style in styles/ draws (its vector sources' layer names)."""
    style = json.loads((REPO / "styles" / f"{style_id}.json").read_text(encoding="utf-8"))
    return {s["url"].split("/")[2] for s in style["sources"].values() if s["type"] == "vector"}


def _open_viewer(page, base: str) -> dict:
    page.goto(f"{base}/viewer/")
    page.wait_for_function("window.__viewerState && (window.__viewerState.loaded"
                           " || window.__viewerState.errors.length > 0)", timeout=LOAD_TIMEOUT_MS)
    return page.evaluate("window.__viewerState")


def _assert_clean(record: PageRecord) -> None:
    assert record.external_requests == [], "the viewer must not leave localhost"
    assert record.problems == []


def test_viewer_draws_the_sample_city_offline(server: str, project: Path) -> None:
    with chromium_page() as (page, record):
        state = _open_viewer(page, server)
        shot = save_screenshot(page, "viewer.png")
        view = page.evaluate("""(() => { const m = window.citytwinViewer.map;
            const c = m.getCenter(); return {lng: c.lng, lat: c.lat, zoom: m.getZoom(), pitch: m.getPitch()}; })()""")
        legend = page.locator("#legend ul.ramp li").all_inner_texts()
        layer_legend = page.locator("#legend ul.catalog-layers li").all_inner_texts()
        groups = page.locator("#layer-list input[type=checkbox]").evaluate_all(
            "els => els.map(e => [e.dataset.group, e.checked, e.disabled])")
        labels = page.locator("#panel label").all_inner_texts()

    _assert_clean(record)
    assert state["errors"] == []
    assert state["loaded"] is True
    assert state["missingSources"] == []
    assert state["buildingsRendered"] > 0
    assert shot.stat().st_size > 10_000
    # It opens on the data (the sample city's extent), not on a fixed place.
    west, south, east, north = _source_extent(project)
    assert west <= view["lng"] <= east and south <= view["lat"] <= north, view
    assert view["zoom"] >= min(cfg.get("minzoom", 12) for cfg in _vector_layers(project).values())
    assert view["pitch"] == pytest.approx(45)
    # The legend is drawn from the style's colour ramp: one row per stop.
    style = json.loads((REPO / "styles" / "base.json").read_text(encoding="utf-8"))
    ramp = next(l for l in style["layers"] if l["id"] == "buildings-3d")["paint"]["fill-extrusion-color"]
    stops = ramp[3::2]
    assert len(legend) == len(stops)
    assert legend[0].startswith(f"{stops[0]} ")
    assert legend[-1].endswith(f"{stops[-1]}")
    # Every group of the style has a working toggle, all on, then every published layer no
    # style draws (the streets), under its catalog title, also in the legend.
    styled = set().union(*(_style_layers(s) for s in ("base", "hazard", "transit", "tourism")))
    by_kind = [cfg.get("title") or name for name, cfg in _vector_layers(project).items() if name not in styled]
    assert by_kind == ["Streets"]
    assert groups == [[g, True, False] for g in _style_groups("base") + by_kind]
    assert layer_legend == by_kind
    # Each title once in the whole panel: the tourism overlay's landmarks are the base's.
    titles = [t.replace("(not published)", "").strip() for t in labels if t.strip()]
    assert titles.count("Landmarks") == 1
    assert len(titles) == len(set(titles)), titles


def test_rendered_buildings_match_the_source_and_toggle_off(server: str, project: Path) -> None:
    source, storey_height = _source_buildings(project)
    with chromium_page() as (page, record):
        _open_viewer(page, server)
        # Find a building on screen by probing the canvas, then click it like a user.
        hit = page.evaluate("""(() => { const m = window.citytwinViewer.map; const c = m.getCanvas();
            for (let y = c.clientHeight / 2; y < c.clientHeight; y += 7)
              for (let dx = 0; dx < c.clientWidth / 2; dx += 7)
                for (const x of [c.clientWidth / 2 + dx, c.clientWidth / 2 - dx]) {
                  const f = m.queryRenderedFeatures([x, y], {layers: ['buildings-3d']});
                  if (f.length && f[0].properties.name) return {x, y, properties: f[0].properties};
                }
            return null; })()""")
        assert hit is not None, "no named building under any probed pixel"
        page.mouse.click(hit["x"], hit["y"])
        page.wait_for_selector(".maplibregl-popup-content table")
        rows = page.locator(".maplibregl-popup-content tr").evaluate_all(
            "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])")
        lnglat = page.evaluate(f"window.citytwinViewer.map.unproject([{hit['x']}, {hit['y']}]).toArray()")

        page.uncheck("#layer-list input[data-group='Buildings']")
        page.wait_for_function("window.__viewerState.buildingsRendered === 0", timeout=LOAD_TIMEOUT_MS)
        page.check("#layer-list input[data-group='Buildings']")
        page.wait_for_function("window.__viewerState.buildingsRendered > 0", timeout=LOAD_TIMEOUT_MS)

    _assert_clean(record)
    popup = dict(rows)
    props = hit["properties"]
    assert set(popup) == set(props)
    # The clicked building is in the source: same name, same height (the source's, else
    # floors x the catalog's storey height, the documented rule), and a footprint near the
    # clicked ground point (a click hits a wall or a roof, which in a 45 degree view can sit
    # up to about a building height from the footprint).
    expected = source["height"].where(source["height"].notna(), source["floors"].astype(float) * storey_height)
    clicked = gpd.GeoSeries(gpd.points_from_xy([lnglat[0]], [lnglat[1]]), crs=4326).to_crs(5186).iloc[0]
    distance = source.geometry.to_crs(5186).distance(clicked)
    same_name = source["name"] == props["name"]
    assert same_name.any(), f"building {props['name']!r} is not in the sample city's source"
    match = same_name & ((expected - float(props["height"])).abs() <= 0.05) & (distance <= expected + 5)
    assert match.sum() >= 1, (f"no source building named {props['name']!r} with height {props['height']} "
                              f"near the click; nearest of that name is "
                              f"{distance[same_name].min():.0f} m away")
