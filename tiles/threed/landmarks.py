"""Landmark glTF/GLB models placed by lon, lat, height, heading and scale in a 3D Tiles tileset.

Each model is one tile whose transform is: ECEF position x local East-North-Up frame x
heading (clockwise from north, about Up) x uniform scale. The GLB is copied as it is; its
glTF y-up axes become z-up through 3D Tiles' own convention. The bounding volume is a sphere
in the tile's frame, sized from the POSITION accessors' min/max (required by glTF) carried
through the node transforms that place each mesh (quantized models keep their positions as
integers and scale them in the node).
"""
from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geo.ecef import enu_rotation, to_ecef
from geo.errors import SourceError
from geo.names import check_layer_name
from tiles.publish import scratch_dir
from tiles.threed.tileset import _swap_in


@dataclass(frozen=True)
class PlacedModel:
    id: str
    path: Path
    lon: float
    lat: float
    height: float = 0.0  # ellipsoidal metres, like the building tiles
    heading: float = 0.0  # degrees clockwise from north
    scale: float = 1.0


LANDMARK_ERROR_M = 100.0
# glTF component type -> the integer that a normalized value of 1.0 is stored as
_NORMALIZED_MAX = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}
# Node instances visited per model: a real scene has thousands; nodes sharing their children
# (allowed by no exporter, but parseable) could multiply them past 2**60.
_MAX_NODE_VISITS = 100_000


def _node_matrix(node: dict) -> np.ndarray:
    """A glTF node's local 4x4 matrix (column-major ``matrix``, or T * R * S)."""
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
    x, y, z, w = node.get("rotation", [0.0, 0.0, 0.0, 1.0])
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    out = np.eye(4)
    out[:3, :3] = rot * np.array(node.get("scale", [1.0, 1.0, 1.0]), dtype=np.float64)
    out[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
    return out


def _glb_json(path: Path) -> dict:
    """The JSON chunk of a GLB, read alone (the binary chunk may be hundreds of MB)."""
    with path.open("rb") as f:
        head = f.read(20)
        if len(head) < 20 or head[:4] != b"glTF" or struct.unpack_from("<I", head, 4)[0] != 2:
            raise SourceError(f"{path}: not a binary glTF 2.0 (GLB) file; export the model as .glb")
        length, kind = struct.unpack_from("<I4s", head, 12)
        if kind != b"JSON":
            raise SourceError(f"{path}: the GLB has no JSON chunk first; re-export it")
        if length > path.stat().st_size - 20:
            raise SourceError(f"{path}: the GLB's JSON chunk claims {length:,} bytes, more than the file holds; "
                              "re-export it")
        raw = f.read(length)
    try:
        gltf = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise SourceError(f"{path}: the GLB's JSON chunk is not valid JSON ({exc}); re-export it") from None
    if not isinstance(gltf, dict):
        raise SourceError(f"{path}: the GLB's JSON chunk is not a glTF object; re-export it")
    return gltf


def _glb_extent(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Min/max, in the glTF scene's (y-up) metres, of every mesh the default scene draws."""
    gltf = _glb_json(path)
    try:
        return _scene_extent(gltf, path)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise SourceError(f"{path}: the glTF JSON is malformed ({type(exc).__name__}: {exc}); "
                          "re-export the model") from None


def _scene_extent(gltf: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    nodes = gltf.get("nodes", [])
    scenes = gltf.get("scenes", [])
    roots = scenes[gltf.get("scene", 0)].get("nodes", []) if scenes else range(len(nodes))
    corners = []
    stack = [(i, np.eye(4), 0) for i in roots]
    visits = 0
    while stack:
        i, parent, depth = stack.pop()
        visits += 1
        if depth > 64 or not 0 <= i < len(nodes):
            raise SourceError(f"{path}: the node hierarchy is broken (bad index or a cycle); re-export it")
        if visits > _MAX_NODE_VISITS:
            raise SourceError(f"{path}: the scene draws over {_MAX_NODE_VISITS:,} node instances (nodes share "
                              "their children); re-export it with each node under one parent")
        node = nodes[i]
        world = parent @ _node_matrix(node)
        stack += [(c, world, depth + 1) for c in node.get("children", [])]
        if "mesh" not in node:
            continue
        for prim in gltf["meshes"][node["mesh"]].get("primitives", []):
            acc = gltf["accessors"][prim["attributes"]["POSITION"]]
            if "min" not in acc or "max" not in acc:
                raise SourceError(f"{path}: a POSITION accessor lacks min/max (required by glTF); re-export it")
            lo, hi = np.array(acc["min"], float), np.array(acc["max"], float)
            if acc.get("normalized"):  # min/max are the stored integers (KHR_mesh_quantization)
                unit = _NORMALIZED_MAX.get(acc.get("componentType"))
                if unit is None:
                    raise SourceError(f"{path}: a normalized POSITION accessor of an unknown component type")
                lo, hi = np.maximum(lo / unit, -1.0), hi / unit
            box = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
            corners.append((box @ world.T)[:, :3])
    if not corners:
        raise SourceError(f"{path}: the model has no mesh to show")
    every = np.vstack(corners)
    return every.min(axis=0), every.max(axis=0)


def model_transform(m: PlacedModel) -> np.ndarray:
    """4x4 matrix taking model (z-up) metres to ECEF."""
    origin = to_ecef(np.array([[m.lon, m.lat, m.height]]))[0]
    theta = np.radians(m.heading)
    heading = np.array([[np.cos(theta), np.sin(theta), 0.0], [-np.sin(theta), np.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    out = np.eye(4)
    out[:3, :3] = enu_rotation(m.lon, m.lat).T @ heading * m.scale
    out[:3, 3] = origin
    return out


def write_landmark_tileset(models: list[PlacedModel], out: Path) -> int:
    """Write (atomically) a tileset with one tile per model; returns the number of models."""
    if not models:
        raise SourceError("no landmark models to place; list them under 'models:' in citytwin.yaml")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir(out)
    try:
        (tmp / "content").mkdir()
        children, radii, centres = [], [], []
        for m in models:
            check_layer_name(m.id)  # the id names a file
            lo, hi = _glb_extent(m.path)
            centre_yup = (lo + hi) / 2
            centre = [float(centre_yup[0]), float(-centre_yup[2]), float(centre_yup[1])]  # y-up -> z-up
            radius = float(np.linalg.norm(hi - lo) / 2) or 1.0
            radii.append(radius * m.scale)
            centres.append((model_transform(m) @ np.array([*centre, 1.0]))[:3])  # sphere centre in ECEF
            name = f"content/{m.id}.glb"
            shutil.copyfile(m.path, tmp / name)
            children.append({
                "transform": model_transform(m).T.ravel().tolist(),  # column-major
                "boundingVolume": {"sphere": centre + [radius]},
                "geometricError": 0.0,
                "content": {"uri": name},
            })
        ecef = np.array(centres)
        centre = ecef.mean(axis=0)
        reach = float(np.max(np.linalg.norm(ecef - centre, axis=1) + np.array(radii)))
        tileset = {
            "asset": {"version": "1.1", "generator": "citytwin"},
            "geometricError": 2 * max(2 * reach, LANDMARK_ERROR_M),
            # The root has no content: leaving its models out is an error of a whole landmark.
            # Sized like that (2 x reach) a 30 m gate would only load within ~1 km; landmarks
            # are what one looks for from afar, so at least 100 m (~3 km at 16 px on a phone).
            "root": {"boundingVolume": {"sphere": centre.tolist() + [reach]},
                     "geometricError": max(2 * reach, LANDMARK_ERROR_M),
                     "refine": "ADD", "children": children},
        }
        (tmp / "tileset.json").write_text(json.dumps(tileset, indent=1))
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(models)
