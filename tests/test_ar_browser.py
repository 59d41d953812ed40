"""The AR preview page (/viewer/ar/) in headless Chromium.

1. The constructed scene of test_ar_api (a tower hiding one POI): the page must load with no
   console error and no request leaving localhost, show the tileset, and report the same
   visible / hidden POIs as /ar/view, drawn in their colours (pixels counted on a screenshot).
2. The sample city from Gwanghwamun Square looking north: the page's items are /ar/view's.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from api_server import serve
from browser import chromium_page, save_screenshot
from test_ar_api import DEVICE, make_scene

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
LOAD_TIMEOUT_MS = 180_000
VISIBLE_RGB = (0x2E, 0x9D, 0x32)
OCCLUDED_RGB = (0xD7, 0x37, 0x2F)


def _open(page, url: str) -> dict:
    page.goto(url)
    page.wait_for_function("window.__arState && (window.__arState.loaded || window.__arState.error)",
                           timeout=LOAD_TIMEOUT_MS)
    return page.evaluate("window.__arState")


def _pixels_near(png: bytes, rgb: tuple[int, int, int], tol: int = 40) -> int:
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(img - np.array(rgb)).sum(axis=2) < tol).sum())


@pytest.fixture(scope="module")
def scene_server(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("arb") / "city"
    make_scene(root)
    with serve(root) as url:
        yield url


def test_ar_page_on_the_constructed_scene(scene_server: str) -> None:
    pose = {"lon": DEVICE[0], "lat": DEVICE[1], "alt": 1.6, "heading": 45, "pitch": 0, "fov": 120, "radius": 400}
    query = "&".join(f"{k}={v}" for k, v in pose.items())
    api = httpx.get(f"{scene_server}/ar/view", params={**pose, "terrain": "none", "limit": 100}, timeout=30).json()
    with chromium_page() as (page, record):
        state = _open(page, f"{scene_server}/viewer/ar/?{query}")
        page.wait_for_timeout(500)
        png = page.screenshot()
        save_screenshot(page, "ar.png")
        entity_ids = page.evaluate("window.citytwinAr.viewer.entities.values.map(e => e.id)")
    assert record.external_requests == []
    assert record.problems == []
    assert state["error"] is None and state["loaded"] is True
    assert state["tilesLoaded"] > 0 and state["tileset"].endswith("/collections/buildings/3dtiles/tileset.json")
    assert state["occluded"] == ["behind"]
    assert sorted(state["visible"]) == ["clear", "on_tower", "rec-1"]
    assert [(i["id"], i["occluded"], i["enu"]) for i in state["items"]] == \
        [(i["id"], i["occluded"], i["enu"]) for i in api["items"]]
    for it in api["items"]:
        assert f"poi:{it['layer']}:{it['id']}" in entity_ids
    # Both colours are on screen: labels, points and sight lines.
    assert _pixels_near(png, VISIBLE_RGB) > 30
    assert _pixels_near(png, OCCLUDED_RGB) > 10


def test_ar_page_on_the_sample_city(built_sample_city) -> None:
    project = built_sample_city
    with serve(project) as base, chromium_page() as (page, record):
        state = _open(page, f"{base}/viewer/ar/")
        # the Gwanghwamun gate model, straight ahead, is drawn beside the buildings
        page.wait_for_function("(window.__arState.models.landmark_models || 0) > 0 || window.__arState.error",
                               timeout=LOAD_TIMEOUT_MS)
        state = page.evaluate("window.__arState")
        save_screenshot(page, "ar_sample_city.png")
        api = httpx.get(f"{base}/ar/view", params={"lon": 126.9768, "lat": 37.5722, "alt": 1.6, "heading": 0,
                                                   "pitch": 3, "fov": 60, "radius": 1200, "lang": "en",
                                                   "terrain": "none", "limit": 100}, timeout=30).json()
    assert record.external_requests == [] and record.problems == []
    assert state["error"] is None and state["loaded"] is True and state["tilesLoaded"] > 0
    assert state["models"]["landmark_models"] > 0
    assert any("/collections/landmark_models/3dtiles/content/" in url for url in record.requests)
    assert [t["kind"] for t in api["tilesets"]] == ["buildings", "landmark_models"]
    assert [(i["id"], i["occluded"]) for i in state["items"]] == [(i["id"], i["occluded"]) for i in api["items"]]
    ids = {i["id"] for i in state["items"]}
    assert {"gyeongbokgung", "gwanghwamun"} <= ids  # straight up Sejong-daero
    assert all(i["bearing_deg"] <= 30 or i["bearing_deg"] >= 330 for i in state["items"])
