"""A simple landmark model for the sample city: Gwanghwamun gate as a stone base and a roof.

Written with our own GLB writer so the demo needs no third-party model file. The shape is
a sketch (a base block pierced by nothing, a hipped roof as a prism), not a survey.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tiles.threed.glb import TileMesh, write_glb

GATE = {"id": "gwanghwamun", "name": "Gwanghwamun Gate (simplified model)", "lon": 126.97690, "lat": 37.57597,
        "heading": 0.0}


def _quad_mesh(quads: list[np.ndarray]) -> TileMesh:
    """Flat-shaded mesh from planar quads or triangles given counter-clockwise from outside."""
    pos, nrm, idx = [], [], []
    for face in quads:
        n = np.cross(face[1] - face[0], face[2] - face[0])
        n = n / np.linalg.norm(n)
        base = sum(len(p) for p in pos)
        pos.append(face)
        nrm.append(np.tile(n, (len(face), 1)))
        idx += [base, base + 1, base + 2] + ([base, base + 2, base + 3] if len(face) == 4 else [])
    positions = np.vstack(pos)
    return TileMesh(positions, np.vstack(nrm), np.zeros(len(positions), dtype=np.int64),
                    np.array(idx, dtype=np.uint32), 1)


def _box(w: float, d: float, z0: float, z1: float) -> list[np.ndarray]:
    x, y = w / 2, d / 2
    c = np.array([[-x, -y], [x, -y], [x, y], [-x, y]])
    lo = np.column_stack([c, np.full(4, z0)])
    hi = np.column_stack([c, np.full(4, z1)])
    faces = [hi.copy()]  # top, counter-clockwise from above
    for i in range(4):
        j = (i + 1) % 4
        faces.append(np.array([lo[i], lo[j], hi[j], hi[i]]))
    return faces


def _roof(w: float, d: float, z0: float, z1: float) -> list[np.ndarray]:
    x, y, r = w / 2, d / 2, w / 2 - d / 2
    a, b, c, e = [-x, -y, z0], [x, -y, z0], [x, y, z0], [-x, y, z0]
    ridge_w, ridge_e = [-r, 0, z1], [r, 0, z1]
    return [np.array(f, dtype=float) for f in (
        [a, b, ridge_e, ridge_w], [c, e, ridge_w, ridge_e], [b, c, ridge_e], [e, a, ridge_w])]


def write_gate_model(path: Path) -> None:
    """The gate, in metres in a local East-North-Up frame (x east, y north, z up)."""
    faces = _box(36.0, 14.0, 0.0, 9.0) + _box(30.0, 11.0, 9.0, 13.0) + _roof(34.0, 14.0, 13.0, 19.0)
    mesh = _quad_mesh(faces)
    props = {"id": ("STRING", [GATE["id"]]), "name": ("STRING", [GATE["name"]])}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(write_glb(mesh, props))
