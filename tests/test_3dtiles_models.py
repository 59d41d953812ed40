"""CityGML and CityJSON to 3D Tiles on real data: every building once, placed right, valid."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from gltf_read import iter_content, mesh_local_enu, property_strings, split_glb
from pyproj import Transformer
from validators import gltf_validate

from pipelines.cli import main
from pipelines.export3d import models_to_tileset
from shared_data import SHARED_DATA as SHARED

PLATEAU = SHARED / "citygml" / "plateau_yokosuka_52397519_bldg_6697_op.gml"
pytestmark = pytest.mark.realdata


def tile_ids(out: Path) -> dict[str, list[str]]:
    """Building ids per content file."""
    found = {}
    for _, path, _ in iter_content(out):
        gltf, blob = split_glb(path.read_bytes())
        found[path.name] = property_strings(gltf, blob, "id")
    return found


def test_plateau_every_building_once_per_lod_and_lod_refinement(tmp_path: Path):
    out = tmp_path / "plateau"
    report, _ = models_to_tileset([PLATEAU], out, progress=False)
    text = PLATEAU.read_text(encoding="utf-8")
    expected = set(re.findall(r'<bldg:Building gml:id="([^"]+)"', text))
    assert len(expected) == 13 and report.buildings == 13
    ts = json.loads((out / "tileset.json").read_text())
    # each LOD1 tile refines (REPLACE) to one LOD2 child; every building once per level
    lod1_tiles = [t for t, _, _ in iter_content(out) if t.get("refine") == "REPLACE"]
    assert lod1_tiles and all(len(t["children"]) == 1 for t in lod1_tiles)
    assert ts["asset"]["version"] == "1.1"
    lod1 = [i for t in lod1_tiles for i in tile_ids_of(out, t)]
    lod2 = [i for t in lod1_tiles for i in tile_ids_of(out, t["children"][0])]
    assert sorted(lod1) == sorted(expected) == sorted(lod2)


def tile_ids_of(out: Path, tile: dict) -> list[str]:
    gltf, blob = split_glb((out / tile["content"]["uri"]).read_bytes())
    return property_strings(gltf, blob, "id")


@pytest.mark.parametrize("lod", [2, None], ids=["lod2-only", "lod1-to-lod2-chain"])
def test_plateau_vertices_back_to_source_within_5cm(tmp_path: Path, lod: int | None):
    """LOD2 vertices back in ECEF through every transform on the way down the tree, whether the
    LOD2 tile is a leaf of its own or the child that a LOD1 tile refines to."""
    out = tmp_path / "plateau"
    models_to_tileset([PLATEAU], out, lod=lod, progress=False)
    # source coordinates straight from the file: lat lon h triples in EPSG:6697
    text = PLATEAU.read_text(encoding="utf-8")
    first = re.search(r'<bldg:Building gml:id="([^"]+)".*?<bldg:lod2Solid>.*?<gml:posList>([^<]+)</gml:posList>', text, re.S)
    bid, pos = first.group(1), np.array(first.group(2).split(), dtype=float).reshape(-1, 3)
    to_ecef = Transformer.from_crs("EPSG:6697", "EPSG:4978")  # authority axis order: lat, lon, h
    src = np.column_stack(to_ecef.transform(pos[:, 0], pos[:, 1], pos[:, 2]))
    for tile, path, m in iter_content(out):
        gltf, blob = split_glb(path.read_bytes())
        ids = property_strings(gltf, blob, "id")
        if bid not in ids or tile.get("refine") == "REPLACE":  # a LOD1 tile of the chain
            continue
        mesh = mesh_local_enu(gltf, blob)
        ecef = mesh["positions"] @ m[:3, :3].T + m[:3, 3]
        mine = ecef[mesh["feature_ids"] == ids.index(bid)]
        d = np.linalg.norm(src[:, None, :] - mine[None, :, :], axis=2).min(axis=1)
        assert d.max() < 0.05
        return
    pytest.fail(f"{bid} not in any tile")


@pytest.mark.parametrize("name, crs", [("delft.city.json", None), ("rotterdam_subset.city.json", "EPSG:7415"),
                                       ("multi_lod.city.json", "EPSG:7415")])
def test_cityjson_every_building_once(tmp_path: Path, name: str, crs: str | None):
    src = SHARED / "cityjson" / name
    doc = json.loads(src.read_text())
    expected = {k for k, o in doc["CityObjects"].items() if o["type"] == "Building"}
    out = tmp_path / name
    report, _ = models_to_tileset([src], out, crs=crs, progress=False)
    assert report.buildings == len(expected)
    per_level: dict[int, list[str]] = {}
    for tile, path, _ in iter_content(out):
        gltf, blob = split_glb(path.read_bytes())
        level = 1 if tile.get("refine") == "REPLACE" else 2 if tile["geometricError"] == 0 and _is_child(out, tile) else 0
        per_level.setdefault(level, []).extend(property_strings(gltf, blob, "id"))
    for ids in per_level.values():
        assert sorted(ids) == sorted(expected)


def _is_child(out: Path, tile: dict) -> bool:
    ts = json.loads((out / "tileset.json").read_text())
    stack = [ts["root"]]
    while stack:
        t = stack.pop()
        if t.get("refine") == "REPLACE" and tile in t.get("children", []):
            return True
        stack += t.get("children", [])
    return False


def test_all_real_glbs_pass_khronos_validator(tmp_path: Path):
    files = []
    for src, crs in [(PLATEAU, None), (SHARED / "citygml" / "ogc_v3_Building_LOD2-EPSG25832.gml", None),
                     (SHARED / "cityjson" / "rotterdam_subset.city.json", "EPSG:7415")]:
        out = tmp_path / src.name
        models_to_tileset([src], out, crs=crs, progress=False)
        files += [p for _, p, _ in iter_content(out)]
    reports = gltf_validate(files)
    assert [r["numErrors"] for r in reports] == [0] * len(files), reports


# --- bad input: a clear message, counts, never a traceback --------------------------------

def run(*args: str):
    result = CliRunner().invoke(main, ["export-3dtiles", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_bad_model_inputs(tmp_path: Path):
    broken = tmp_path / "broken.gml"
    broken.write_text('<?xml version="1.0"?>\n<core:CityModel xmlns:core="x">\n<core:cityObjectMember>\n')
    empty = tmp_path / "empty.gml"
    empty.write_text("")
    nosrs = tmp_path / "nosrs.city.json"
    nosrs.write_text(json.dumps({"type": "CityJSON", "version": "2.0", "transform": {"scale": [1, 1, 1], "translate": [0, 0, 0]},
                                 "CityObjects": {"b": {"type": "Building", "geometry": [
                                     {"type": "MultiSurface", "lod": "1", "boundaries": [[[0, 1, 2, 3]]]}]}},
                                 "vertices": [[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]]}))
    for path, text in [(broken, "line"), (empty, "empty"), (nosrs, "--crs")]:
        code, out = run(str(path), "--out", str(tmp_path / "o"))
        assert code == 2, out
        assert str(path) in out and text in out and "Traceback" not in out
    assert not (tmp_path / "o").exists()
    # an LOD the file does not have: every building skipped with that reason, counted
    code, out = run(str(SHARED / "citygml" / "ogc_v2_Building_LOD1-EPSG25832.gml"), "--lod", "2", "--out", str(tmp_path / "o"))
    assert code == 2 and "no building could be read: 1 building skipped: requested LOD not present" in out
    assert "(asked for LOD2, has LOD1)" in out  # the example names the building and what it has
    # degenerate polygons are skipped and counted, the rest is written
    code, out = run(str(SHARED / "cityjson" / "rotterdam_subset.city.json"), "--crs", "EPSG:7415", "--out", str(tmp_path / "r"))
    assert code == 0, out
    assert "16 buildings written" in out
    # the count names what it counts: surfaces of the buildings, not buildings
    assert out.rstrip().endswith(
        "; 12 surfaces skipped: degenerate polygon (fewer than 3 distinct points or under 1 cm² of area)")
    # the examples name the surface and say "skipped" once
    examples = [line for line in out.splitlines() if "(degenerate polygon)" in line]
    assert len(examples) == 3 and all(line.count("skipped") == 1 for line in examples), out


def test_city_model_layer_is_built_from_the_catalog(tmp_path: Path):
    (tmp_path / "citytwin.yaml").write_text(f"layers:\n  plateau:\n    kind: city_model\n    source: {PLATEAU}\n")
    result = CliRunner().invoke(main, ["build", "--project", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "13 buildings written" in result.output
    out = tmp_path / "build" / "3dtiles" / "plateau"
    ids = [i for ids in tile_ids(out).values() for i in ids]
    assert len(set(ids)) == 13
