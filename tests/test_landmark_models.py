"""Landmark GLB models placed from the catalog by lon, lat, height, heading and scale."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from gltf_read import accessor, iter_content, split_glb
from pyproj import Transformer
from validators import gltf_validate

from pipelines.cli import main
from pipelines.sample_models import write_gate_model

LLH_TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
CATALOG = """\
layers:
  models3d:
    kind: landmark_models
    models:
      - id: gate
        uri: gate.glb
        lon: 126.9769
        lat: 37.5760
        height: {height}
        heading: {heading}
        scale: {scale}
"""


def enu_of(ecef: np.ndarray, lon: float, lat: float, h: float) -> np.ndarray:
    """ECEF to local ENU, written out here independently of the code under test."""
    lo, la = np.radians(lon), np.radians(lat)
    east = np.array([-np.sin(lo), np.cos(lo), 0])
    north = np.array([-np.sin(la) * np.cos(lo), -np.sin(la) * np.sin(lo), np.cos(la)])
    up = np.array([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])
    o = np.array(LLH_TO_ECEF.transform(lon, lat, h))
    d = ecef - o
    return np.column_stack([d @ east, d @ north, d @ up])


def build(tmp_path: Path, height=12.0, heading=90.0, scale=2.0) -> Path:
    write_gate_model(tmp_path / "gate.glb")
    (tmp_path / "citytwin.yaml").write_text(CATALOG.format(height=height, heading=heading, scale=scale))
    result = CliRunner().invoke(main, ["build", "--project", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 landmark models placed" in result.output
    return tmp_path / "build" / "3dtiles" / "models3d"


def placed_vertices(out: Path) -> np.ndarray:
    (tile, path, m), = list(iter_content(out))
    gltf, blob = split_glb(path.read_bytes())
    node = gltf["nodes"][0]
    pos = accessor(gltf, blob, gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
    pos = pos * np.array(node.get("scale", [1, 1, 1])) + np.array(node.get("translation", [0, 0, 0]))
    zup = np.column_stack([pos[:, 0], -pos[:, 2], pos[:, 1]])  # 3D Tiles: glTF y-up to z-up
    return zup @ m[:3, :3].T + m[:3, 3]


def test_heading_scale_and_height_place_the_model(tmp_path: Path):
    out = build(tmp_path, height=12.0, heading=90.0, scale=2.0)
    enu = enu_of(placed_vertices(out), 126.9769, 37.5760, 12.0)
    # the gate is 36 m wide east-west and 14 m deep; turned 90 degrees and doubled it spans
    # 72 m north-south and 28 m east-west, centred on its anchor, standing on height 12 m
    assert np.ptp(enu[:, 1]) == pytest.approx(72.0, abs=0.05)
    assert np.ptp(enu[:, 0]) == pytest.approx(28.0, abs=0.05)
    assert enu[:, 0].mean() == pytest.approx(0.0, abs=0.05) and np.median(enu[:, 1]) == pytest.approx(0.0, abs=0.05)
    assert enu[:, 2].min() == pytest.approx(0.0, abs=0.02)
    assert enu[:, 2].max() == pytest.approx(38.0, abs=0.05)  # 19 m roof ridge, doubled


def test_unturned_model_keeps_its_axes_and_validates(tmp_path: Path):
    out = build(tmp_path, height=0.0, heading=0.0, scale=1.0)
    enu = enu_of(placed_vertices(out), 126.9769, 37.5760, 0.0)
    assert np.ptp(enu[:, 0]) == pytest.approx(36.0, abs=0.05)
    assert np.ptp(enu[:, 1]) == pytest.approx(14.0, abs=0.05)
    ts = json.loads((out / "tileset.json").read_text())
    assert ts["asset"]["version"] == "1.1" and ts["root"]["refine"] == "ADD"
    # the bounding sphere holds every vertex
    (tile, _, m), = list(iter_content(out))
    cx, cy, cz, r = tile["boundingVolume"]["sphere"]
    centre = m[:3, :3] @ np.array([cx, cy, cz]) + m[:3, 3]
    reach = np.linalg.norm(placed_vertices(out) - centre, axis=1).max()
    assert reach <= r + 1e-6
    # ... and is sized by the model, not by its quantized integers (a 39 km sphere once)
    assert r <= 1.5 * reach and r < 30
    root_centre, root_r = np.array(ts["root"]["boundingVolume"]["sphere"][:3]), ts["root"]["boundingVolume"]["sphere"][3]
    assert np.linalg.norm(placed_vertices(out) - root_centre, axis=1).max() <= root_r + 1e-6 and root_r < 30
    assert [rep["numErrors"] for rep in gltf_validate([p for _, p, _ in iter_content(out)])] == [0]


def test_a_model_that_is_not_a_glb_is_refused(tmp_path: Path):
    (tmp_path / "gate.glb").write_text("not a model")
    (tmp_path / "citytwin.yaml").write_text(CATALOG.format(height=0, heading=0, scale=1))
    result = CliRunner().invoke(main, ["build", "--project", str(tmp_path)])
    assert result.exit_code == 2
    assert "gate.glb" in result.output and "GLB" in result.output
    assert not (tmp_path / "build" / "3dtiles" / "models3d").exists()
