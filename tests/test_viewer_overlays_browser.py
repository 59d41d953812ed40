"""The viewer's overlay toggles (hazard, transit, tourism) in headless Chromium on the sample city.

The sample city publishes the flood_depth raster and landmarks, but no transit and no
hazard zones: those toggles must say "(not published)" without the page asking for them.
The tourism style's landmarks are the base style's: they get no second toggle.
Turning the flood overlay on must fetch raster tiles from /cog and draw them. A screenshot
goes to tests/artifacts/viewer_overlays.png.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import chromium_page, save_screenshot
from api_server import serve
from test_viewer_browser import LOAD_TIMEOUT_MS, REPO, _assert_clean, _open_viewer, _style_layers

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def project(built_sample_city: Path) -> Path:
    return built_sample_city


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[str]:
    with serve(project) as base:
        yield base


def _groups(style_id: str) -> list[str]:
    """An overlay style's groups, less those of layers the base style already draws."""
    style = json.loads((REPO / "styles" / f"{style_id}.json").read_text(encoding="utf-8"))
    base = _style_layers("base")

    def in_base(layer: dict) -> bool:
        source = style["sources"][layer["source"]]
        return source["type"] == "vector" and source["url"].split("/")[2] in base

    return list(dict.fromkeys(l["metadata"]["citytwin:group"] for l in style["layers"]
                              if "citytwin:group" in l.get("metadata", {}) and not in_base(l)))


def _toggles(page) -> dict[tuple[str, str], tuple[bool, bool, str]]:
    rows = page.locator("#overlay-list input[type=checkbox]").evaluate_all(
        "els => els.map(e => [e.dataset.overlay, e.dataset.group, e.checked, e.disabled,"
        " e.closest('label').textContent])")
    return {(o, g): (checked, disabled, text) for o, g, checked, disabled, text in rows}


def _blue_pixels(path: Path) -> int:
    """Pixels in the flood colormap's blue family (blue well above red), from the screenshot."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((b - r) > 60).sum())


def test_overlay_toggles_and_flood_raster(server: str) -> None:
    with chromium_page() as (page, record):
        state = _open_viewer(page, server)
        toggles = _toggles(page)
        before = save_screenshot(page, "viewer_overlays_off.png")
        cog_requests_before = [u for u in record.requests if "/cog/tiles/" in u]

        # The flood raster: off at first, on with its toggle, tiles fetched and drawn.
        page.check("#overlay-list input[data-overlay='hazard'][data-group='Flood depth (raster)']")
        page.wait_for_function("(window.__viewerState.tilesLoaded.flood_depth || 0) > 0"
                               " && window.citytwinViewer.map.isSourceLoaded('flood_depth')",
                               timeout=LOAD_TIMEOUT_MS)
        page.wait_for_function("window.citytwinViewer.map.loaded()", timeout=LOAD_TIMEOUT_MS)
        visibility = page.evaluate("window.citytwinViewer.map.getLayoutProperty('flood-depth', 'visibility')")
        tiles_loaded = page.evaluate("window.__viewerState.tilesLoaded.flood_depth")
        page.wait_for_timeout(500)  # let the last frame reach the canvas before the screenshot
        shot = save_screenshot(page, "viewer_overlays.png")
        final = page.evaluate("window.__viewerState")

    _assert_clean(record)  # no console error, no failed request (no 404 for the unpublished)
    assert state["errors"] == [] and final["errors"] == []
    assert state["missingSources"] == []  # the base style is wholly published

    # One toggle per group of each overlay style, all off; unpublished ones disabled and marked.
    published = {("hazard", "Flood depth (raster)")}
    expected = {(o, g) for o in ("hazard", "transit", "tourism") for g in _groups(o)}
    assert set(toggles) == expected
    for key, (checked, disabled, text) in toggles.items():
        assert checked is False
        assert disabled is (key not in published), key
        assert ("(not published)" in text) is (key not in published), key
    assert set(final["overlays"]["transit"]["missing"]) == {"transit_routes", "transit_stops"}
    assert set(final["overlays"]["hazard"]["missing"]) == {"hazard_zones"}
    assert set(final["overlays"]["tourism"]["missing"]) == {"tourism_pois"}
    # The unpublished layers were never asked for.
    for name in ("transit_routes", "transit_stops", "hazard_zones", "tourism_pois"):
        assert not [u for u in record.requests if f"/collections/{name}/" in u], name

    # Raster tiles: none while hidden, then fetched from our titiler mount with the flood colormap.
    assert cog_requests_before == []
    cog = [u for u in record.requests if "/cog/tiles/WebMercatorQuad/" in u]
    assert cog and all("name=flood_depth" in u and "colormap_name=flood" in u for u in cog)
    assert visibility == "visible" and tiles_loaded >= 1
    # The flood is visible: many more blue pixels than without the overlay.
    assert _blue_pixels(shot) > _blue_pixels(before) + 2000
