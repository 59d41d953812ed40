"""Landmark GLBs that are malformed or whose nodes share children: one clear line and exit 2,
in bounded time, and no tileset is published."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from test_landmark_models import CATALOG

MESH = {"meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "accessors": [{"componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 1]}]}


def write_glb_json(path: Path, gltf: dict) -> None:
    """A GLB holding only its JSON chunk (the extent is read from accessor min/max)."""
    raw = json.dumps(gltf).encode()
    raw += b" " * (-len(raw) % 4)
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 20 + len(raw)) + struct.pack("<I4s", len(raw), b"JSON") + raw)


def shared_children(depth: int) -> dict:
    """Node i has node i+1 twice as its children: 2**depth instances of the last node, which has the mesh."""
    nodes = [{"children": [i + 1, i + 1]} for i in range(depth)] + [{"mesh": 0}]
    return {"asset": {"version": "2.0"}, "scenes": [{"nodes": [0]}], "nodes": nodes, **MESH}


@pytest.mark.parametrize("gltf,needle", [
    (shared_children(60), "the scene draws over 100,000 node instances (nodes share their children)"),
    ({"asset": {"version": "2.0"}, "nodes": [{"mesh": 3}], **MESH}, "the glTF JSON is malformed (IndexError"),
    ({"asset": {"version": "2.0"}, "nodes": [{"mesh": 0}], "meshes": [{"primitives": [{"attributes": {}}]}],
      "accessors": MESH["accessors"]},
     "the glTF JSON is malformed (KeyError: 'POSITION')"),
    (["not", "an", "object"], "the GLB's JSON chunk is not a glTF object"),
])
def test_a_hostile_landmark_model_is_refused(tmp_path: Path, gltf, needle: str):
    write_glb_json(tmp_path / "gate.glb", gltf)
    (tmp_path / "citytwin.yaml").write_text(CATALOG.format(height=0, heading=0, scale=1))
    result = CliRunner().invoke(main, ["build", "--project", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'gate.glb'}: {needle}" in result.output
    assert not (tmp_path / "build" / "3dtiles" / "models3d").exists()


def test_a_json_chunk_longer_than_the_file_is_refused(tmp_path: Path):
    write_glb_json(tmp_path / "gate.glb", shared_children(1))
    data = bytearray((tmp_path / "gate.glb").read_bytes())
    struct.pack_into("<I", data, 12, 0xFFFF_FFF0)
    (tmp_path / "gate.glb").write_bytes(bytes(data))
    (tmp_path / "citytwin.yaml").write_text(CATALOG.format(height=0, heading=0, scale=1))
    result = CliRunner().invoke(main, ["build", "--project", str(tmp_path)])
    assert result.exit_code == 2 and "the GLB's JSON chunk claims 4,294,967,280 bytes" in result.output
