"""CesiumJS draws the textures of a city model built with ``textures: true``: the 3D viewer,
in headless Chromium over a real ``citytwin build`` and ``citytwin serve``, shows the PLATEAU
buildings with their (solid red, green and blue) images and logs no error."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from api_server import make_project, run_citytwin, serve
from browser import chromium_page, save_screenshot
from shared_data import SHARED_DATA as SHARED

pytestmark = [pytest.mark.browser, pytest.mark.realdata]

PLATEAU = SHARED / "citygml" / "plateau_yokosuka_52397519_bldg_6697_op.gml"
LOAD_TIMEOUT_MS = 120_000
VIEWPORT = (960, 600)
COLOURS = ((230, 20, 20), (20, 230, 20), (20, 20, 230))

# look down at the whole tileset, at LOD2, drawn as its tiles say (no height colours over the textures)
SHOW_AS_IS = """(async () => {
  const {viewer, tileset} = window.citytwinViewer3d;
  tileset.style = undefined;
  tileset.maximumScreenSpaceError = 0.5;  // refine to the textured LOD2 from this far
  await viewer.zoomTo(tileset, new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-50), 0));
  viewer.scene.requestRender();
})()"""


def strong(pixels: np.ndarray, channel: int) -> int:
    """Pixels where ``channel`` clearly dominates the other two (the lighting changes brightness only)."""
    others = np.delete(pixels, channel, axis=2).max(axis=2)
    return int(((pixels[..., channel] > 60) & (pixels[..., channel] > 2.5 * others)).sum())


def textured_project(root: Path, textures: bool) -> Path:
    src = root / "data" / PLATEAU.name
    src.parent.mkdir(parents=True)
    shutil.copy(PLATEAU, src)
    names = sorted({t.text for t in etree.parse(str(src)).iter("{*}imageURI")})
    for name, colour in zip(names, COLOURS):
        (src.parent / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (64, 64), colour).save(src.parent / name, "JPEG")
    make_project(root)  # the server wants a store; its buildings get no 3D Tiles here
    with open(root / "citytwin.yaml", "a", encoding="utf-8") as fh:
        fh.write(f"  yokosuka:\n    kind: city_model\n    source: {src}\n    textures: {str(textures).lower()}\n")
    run_citytwin("build", "--project", str(root), "--layer", "yokosuka")
    return root


@pytest.mark.parametrize("textures", [True, False])
def test_3d_viewer_draws_the_textures(tmp_path: Path, textures: bool) -> None:
    project = textured_project(tmp_path / "city", textures)
    with serve(project, timeout=240) as url, chromium_page(VIEWPORT) as (page, record):  # a loaded machine
        page.goto(f"{url}/viewer/3d/?layer=yokosuka")
        page.wait_for_function("window.citytwinViewer3d && window.citytwinViewer3d.tileset"
                               " || (window.__viewer3dState && window.__viewer3dState.error !== null)",
                               timeout=LOAD_TIMEOUT_MS)
        assert page.evaluate("window.__viewer3dState.error") is None, record.problems
        page.evaluate(SHOW_AS_IS)
        page.wait_for_function("window.__viewer3dState.loaded || window.__viewer3dState.error !== null",
                               timeout=LOAD_TIMEOUT_MS)
        page.wait_for_function("window.citytwinViewer3d.tileset.tilesLoaded", timeout=LOAD_TIMEOUT_MS)
        page.wait_for_timeout(1500)  # a few frames after the last tile
        shot = save_screenshot(page, f"viewer3d_textures_{'on' if textures else 'off'}.png")
        state = page.evaluate("window.__viewer3dState")

    assert record.problems == [] and state["error"] is None, (record.problems, state["error"])
    assert state["layer"] == "yokosuka" and state["tilesLoaded"] > 0
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    red, green = strong(pixels, 0), strong(pixels, 1)
    if textures:  # the big green image covers most textured walls, the red one a few
        assert green > 500 and red > 20, (red, green)
    else:  # the same view without textures has no such colours
        assert green < 20 and red < 20, (red, green)
