"""What a CityGML/CityJSON tileset holds, to compare two runs: each building with the LOD it
shows in each tile ('id@lod'), the vertices and triangles of all tiles, and the root region."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from gltf_read import iter_content, property_strings, split_glb


def tileset_summary(out: Path) -> dict:
    features, vertices, triangles, tiles = [], 0, 0, 0
    for _, path, _ in iter_content(out):
        gltf, blob = split_glb(path.read_bytes())
        prim = gltf["meshes"][0]["primitives"][0]
        lods = _int_property(gltf, blob, "lod")
        features += [f"{i}@{lod}" for i, lod in zip(property_strings(gltf, blob, "id"), lods)]
        vertices += gltf["accessors"][prim["attributes"]["POSITION"]]["count"]
        triangles += gltf["accessors"][prim["indices"]]["count"] // 3
        tiles += 1
    region = json.loads((out / "tileset.json").read_text())["root"]["boundingVolume"]["region"]
    return {"features": sorted(features), "vertices": vertices, "triangles": triangles, "tiles": tiles,
            "region": [round(v, 9) for v in region[:4]] + [round(v, 2) for v in region[4:]]}


def _int_property(gltf: dict, blob: bytes, name: str) -> list[int]:
    table = gltf["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
    view = gltf["bufferViews"][table["properties"][name]["values"]]
    return np.frombuffer(blob, dtype=np.int32, count=table["count"], offset=view["byteOffset"]).tolist()
