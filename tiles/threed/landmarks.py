"""Landmark glTF/GLB models placed by lon, lat, height, heading and scale in a 3D Tiles tileset.

Each model is one tile whose transform is: ECEF position x local East-North-Up frame x
heading (clockwise from north, about Up) x uniform scale. The GLB is copied as it is; its
glTF y-up axes become z-up through 3D Tiles' own convention. The bounding volume is a sphere
in the tile's frame, sized from the POSITION accessors' min/max (required by glTF).
"""
from __future__ import annotations

import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geo.ecef import enu_rotation, to_ecef
from geo.errors import SourceError
from geo.names import check_layer_name
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


def _glb_extent(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Min/max of every POSITION accessor, in glTF (y-up) model units."""
    data = path.read_bytes()
    if len(data) < 20 or data[:4] != b"glTF" or struct.unpack_from("<I", data, 4)[0] != 2:
        raise SourceError(f"{path}: not a binary glTF 2.0 (GLB) file; export the model as .glb")
    length, kind = struct.unpack_from("<I4s", data, 12)
    if kind != b"JSON":
        raise SourceError(f"{path}: the GLB has no JSON chunk first; re-export it")
    gltf = json.loads(data[20:20 + length])
    lows, highs = [], []
    for mesh in gltf.get("meshes", []):
        for prim in mesh.get("primitives", []):
            acc = gltf["accessors"][prim["attributes"]["POSITION"]]
            if "min" not in acc or "max" not in acc:
                raise SourceError(f"{path}: a POSITION accessor lacks min/max (required by glTF); re-export it")
            lows.append(acc["min"])
            highs.append(acc["max"])
    if not lows:
        raise SourceError(f"{path}: the model has no mesh to show")
    return np.min(lows, axis=0), np.max(highs, axis=0)


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
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / "content").mkdir()
        children, radii = [], []
        for m in models:
            check_layer_name(m.id)  # the id names a file
            lo, hi = _glb_extent(m.path)
            centre_yup = (lo + hi) / 2
            centre = [float(centre_yup[0]), float(-centre_yup[2]), float(centre_yup[1])]  # y-up -> z-up
            radius = float(np.linalg.norm(hi - lo) / 2) or 1.0
            radii.append(radius * m.scale)
            name = f"content/{m.id}.glb"
            shutil.copyfile(m.path, tmp / name)
            children.append({
                "transform": model_transform(m).T.ravel().tolist(),  # column-major
                "boundingVolume": {"sphere": centre + [radius]},
                "geometricError": 0.0,
                "content": {"uri": name},
            })
        ecef = to_ecef(np.array([[m.lon, m.lat, m.height] for m in models]))
        centre = ecef.mean(axis=0)
        reach = float(np.max(np.linalg.norm(ecef - centre, axis=1) + np.array(radii)))
        tileset = {
            "asset": {"version": "1.1", "generator": "citytwin"},
            "geometricError": max(reach, 100.0),
            "root": {"boundingVolume": {"sphere": centre.tolist() + [reach]}, "geometricError": max(reach / 4, 25.0),
                     "refine": "ADD", "children": children},
        }
        (tmp / "tileset.json").write_text(json.dumps(tileset, indent=1))
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(models)
