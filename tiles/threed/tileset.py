"""A 3D Tiles 1.1 tileset: a quadtree over building positions, one GLB per leaf.

- Each building lives in exactly one leaf (by its centre), once per LOD.
- Where a building set has LOD1 and LOD2, the leaf holds LOD1 and refines (REPLACE) to a
  child with the same region holding LOD2: LOD1 far away, LOD2 near.
- Content is placed by a tile transform (local ENU -> ECEF) so float32/int16 vertices stay
  exact to millimetres; bounding volumes are regions in EPSG:4979 radians.
- Geometric error comes from the tile size (diagonal / 10 for inner tiles).
- Written into a scratch folder next to the output (``tiles.publish``), made readable by
  everyone, then swapped in atomically.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from geo.city3d import SkipReason, skip_summary
from geo.ecef import ecef_to_lonlath, enu_rotation, enu_to_ecef_matrix, to_ecef
from tiles.threed.glb import TileMesh, write_glb
from tiles.publish import make_readable, scratch_dir
from tiles.threed.mesh import LocalFrame

EARTH_RADIUS = 6_378_137.0


@dataclass
class Node:
    bounds: tuple[float, float, float, float]  # lon/lat
    items: np.ndarray | None = None  # leaf: indices into the caller's building list
    children: list["Node"] = field(default_factory=list)


def quadtree(lon: np.ndarray, lat: np.ndarray, max_items: int, max_depth: int = 18) -> Node:
    pad = 1e-9
    root = Node((float(lon.min()) - pad, float(lat.min()) - pad, float(lon.max()) + pad, float(lat.max()) + pad))
    stack = [(root, np.arange(len(lon)), 0)]
    while stack:
        node, idx, depth = stack.pop()
        if len(idx) <= max_items or depth >= max_depth:
            node.items = idx
            continue
        w, s, e, n = node.bounds
        mx, my = (w + e) / 2, (s + n) / 2
        for bounds in ((w, s, mx, my), (mx, s, e, my), (w, my, mx, n), (mx, my, e, n)):
            x0, y0, x1, y1 = bounds
            sel = idx[(lon[idx] >= x0) & (lon[idx] < x1) & (lat[idx] >= y0) & (lat[idx] < y1)]
            if len(sel):
                child = Node(bounds)
                node.children.append(child)
                stack.append((child, sel, depth + 1))
    return root


def diagonal_m(bounds) -> float:
    w, s, e, n = bounds
    dx = np.radians(e - w) * EARTH_RADIUS * np.cos(np.radians((s + n) / 2))
    dy = np.radians(n - s) * EARTH_RADIUS
    return float(np.hypot(dx, dy))


@dataclass
class TilesetReport:
    out: Path
    buildings: int = 0
    tiles: int = 0
    skipped: dict[SkipReason, int] = field(default_factory=dict)
    bytes: int = 0
    implicit: bool = False

    def summary(self) -> str:
        tiling = ", implicit tiling" if self.implicit else ""
        return (f"3D Tiles {self.out}: {self.buildings} buildings written in {self.tiles} tiles "
                f"({self.bytes / 1e6:.1f} MB{tiling}); {skip_summary(self.skipped)}")


#: builds the mesh, property columns and skip counts of the given building indices in a local frame
MeshMaker = Callable[[np.ndarray, int, LocalFrame], tuple[TileMesh, dict[str, tuple[str, list]], dict[str, int]]]


def b3dm(glb: bytes, properties: dict[str, tuple[str, list]], count: int) -> bytes:
    """Wrap a GLB (with _BATCHID) as a 3D Tiles 1.0 Batched 3D Model."""
    def padded(obj) -> bytes:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return raw + b" " * ((-(28 + len(raw))) % 8)
    feature = padded({"BATCH_LENGTH": count})
    batch = json.dumps({k: [None if isinstance(v, float) and np.isnan(v) else v for v in vals]
                        for k, (_, vals) in properties.items()}, separators=(",", ":"), default=_json_default).encode()
    batch += b" " * ((-(28 + len(feature) + len(batch))) % 8)
    total = 28 + len(feature) + len(batch) + len(glb)
    return struct.pack("<4s6I", b"b3dm", 1, total, len(feature), 0, len(batch), 0) + feature + batch + glb


def _json_default(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return None if np.isnan(v) else float(v)
    return str(v)


def write_tileset(out: Path, lon: np.ndarray, lat: np.ndarray, lods: dict[int, MeshMaker], *,
                  max_per_tile: int = 400, b3dm_mode: bool = False, progress: bool = True,
                  report: TilesetReport | None = None, runner=None, implicit: bool | None = None,
                  compress: bool = True) -> TilesetReport:
    """Write the tileset for buildings at ``lon``/``lat``; ``lods`` maps LOD -> mesh maker (1 and/or 2).

    Leaves are rendered by ``runner`` (in process by default, or on Dask); this driver alone
    numbers and writes the content files, then swaps the folder in. ``implicit`` chooses
    implicit tiling (None: by the number of buildings, see ``tiles.threed.implicit``).
    """
    from pipelines.runner import InProcessRunner
    from tiles.threed.implicit import RENDER_BATCH, use_implicit, write_implicit

    out = Path(out)
    report = report or TilesetReport(out)
    report.out = out
    runner = runner or InProcessRunner()
    if use_implicit(len(lon), implicit):
        return write_implicit(out, lon, lat, lods, max_per_tile=max_per_tile, b3dm_mode=b3dm_mode,
                              progress=progress, report=report, runner=runner, compress=compress)
    root = quadtree(lon, lat, max_per_tile)
    leaves: list[Node] = []
    _collect(root, leaves)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir(out)
    try:
        (tmp / "content").mkdir()
        ext = "b3dm" if b3dm_mode else "glb"
        tiles: dict[int, dict] = {}
        counter = 0
        with tqdm(total=len(leaves), desc=f"3D tiles {out.name}", unit="tile", disable=not progress) as bar:
            for start in range(0, len(leaves), RENDER_BATCH):  # written batch by batch: memory follows the batch
                batch = leaves[start:start + RENDER_BATCH]
                rendered = runner.map(render_leaf, [(leaf.bounds, leaf.items) for leaf in batch],
                                      shared={"lods": lods, "b3dm_mode": b3dm_mode, "compress": compress})
                for leaf, parts in zip(batch, rendered):
                    counter = _write_leaf(tmp, leaf, parts, counter, ext, tiles, report)
                bar.update(len(batch))
        root_json = _inner_json(root, tiles)
        tileset = {
            "asset": {"version": "1.0" if b3dm_mode else "1.1", "generator": "citytwin"},
            # a single-leaf tileset has a root error of 0: the tile size keeps it visible from afar
            "geometricError": max(root_json["geometricError"] * 2, diagonal_m(root.bounds) / 10, 1.0),
            "root": root_json,
        }
        tileset["root"].setdefault("refine", "ADD")  # required on the root; a LOD chain keeps REPLACE
        (tmp / "tileset.json").write_text(json.dumps(tileset, indent=1))
        report.buildings = len(lon)
        report.bytes = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _write_leaf(tmp: Path, leaf: Node, parts: list[dict], counter: int, ext: str, tiles: dict[int, dict],
                report: TilesetReport) -> int:
    """Write one leaf's content files (numbered on from ``counter``) and keep its tile JSON; the new counter."""
    chain = []
    for part in parts:
        counter += 1
        name = f"content/{counter}.{ext}"
        (tmp / name).write_bytes(part["data"])
        report.tiles += 1
        for why, n in part["skipped"].items():
            report.skipped[why] = report.skipped.get(why, 0) + n
        chain.append({"transform": part["transform"], "boundingVolume": {"region": part["region"]},
                      "content": {"uri": name}})
    tiles[id(leaf)] = _chain_json(chain, leaf.bounds)
    return counter


def _collect(node: Node, leaves: list[Node]) -> None:
    if node.items is not None:
        leaves.append(node)
    for c in node.children:
        _collect(c, leaves)


def render_leaf(leaf: tuple[tuple[float, float, float, float], np.ndarray], lods: dict[int, MeshMaker],
                b3dm_mode: bool, compress: bool = True) -> list[dict]:
    """One partition: the content of one leaf, per LOD (bytes, region, transform, skip counts)."""
    (w, s, e, n), items = leaf
    frame = frame_at((w + e) / 2, (s + n) / 2)
    transform = frame_transform(frame)
    parts = []
    for lod in sorted(lods):
        part = render_content(items, lod, lods[lod], frame, b3dm_mode, compress)
        if part is not None:
            parts.append({**part, "transform": transform})
    return parts


def frame_at(lon: float, lat: float) -> LocalFrame:
    """The local ENU frame at ``lon``/``lat`` on the ellipsoid."""
    return LocalFrame(to_ecef(np.array([[lon, lat, 0.0]]))[0], enu_rotation(lon, lat))


def frame_transform(frame: LocalFrame) -> list[float]:
    """A 3D Tiles tile transform (column-major) placing ``frame``'s coordinates in ECEF."""
    return enu_to_ecef_matrix(frame.origin_ecef, frame.rotation).T.ravel().tolist()


def render_content(items: np.ndarray, lod: int, maker: MeshMaker, frame: LocalFrame, b3dm_mode: bool,
                   compress: bool = True) -> dict | None:
    """The content file of buildings ``items`` at one LOD in ``frame`` (bytes, region, skip counts),
    or None when they have no triangle."""
    mesh, props, skipped = maker(items, lod, frame)
    if len(mesh.indices) == 0:
        return None
    glb = write_glb(mesh, props, batch_id=b3dm_mode, compress=compress and not b3dm_mode)  # b3dm: older clients
    data = b3dm(glb, props, mesh.feature_count) if b3dm_mode else glb
    llh = ecef_to_lonlath(frame.origin_ecef + mesh.positions @ frame.rotation)
    region = [np.radians(llh[:, 0].min()), np.radians(llh[:, 1].min()), np.radians(llh[:, 0].max()),
              np.radians(llh[:, 1].max()), float(llh[:, 2].min()), float(llh[:, 2].max())]
    return {"data": data, "region": [float(v) for v in region], "skipped": skipped}


def _chain_json(chain: list[dict], bounds) -> dict:
    """LOD1 far, LOD2 near: each level refines to the next with REPLACE."""
    if not chain:
        return {}
    size = diagonal_m(bounds)
    for i, tile in enumerate(chain):
        last = i == len(chain) - 1
        tile["geometricError"] = 0.0 if last else max(size / 40, 1.0)
        if not last:
            tile["refine"] = "REPLACE"
    for i in range(len(chain) - 1, 0, -1):
        _relative_to_parent(chain[i], chain[i - 1]["transform"])
        chain[i - 1]["children"] = [chain[i]]
        chain[i - 1]["boundingVolume"] = _union([chain[i - 1]["boundingVolume"], chain[i]["boundingVolume"]])
    return chain[0]


def _relative_to_parent(tile: dict, parent_transform: list[float]) -> None:
    """A child's transform applies on top of its parent's (3D Tiles): keep only the difference,
    none at all when both place their content in the same frame."""
    if tile["transform"] == parent_transform:
        del tile["transform"]
        return
    parent = np.array(parent_transform, dtype=float).reshape(4, 4).T
    child = np.array(tile["transform"], dtype=float).reshape(4, 4).T
    tile["transform"] = (np.linalg.inv(parent) @ child).T.reshape(-1).tolist()


def _union(volumes: list[dict]) -> dict:
    r = np.array([v["region"] for v in volumes])
    return {"region": [float(r[:, 0].min()), float(r[:, 1].min()), float(r[:, 2].max()), float(r[:, 3].max()),
                       float(r[:, 4].min()), float(r[:, 5].max())]}


def _inner_json(node: Node, tiles: dict[int, dict]) -> dict:
    if node.items is not None:
        t = tiles[id(node)]
        if t:
            # the leaf's own error (first LOD) must not exceed what its parent will show
            return t
        return {}
    children = [c for c in (_inner_json(ch, tiles) for ch in node.children) if c]
    if not children:
        return {}
    # a node without content refines to its children when its error exceeds the screen threshold
    err = max(diagonal_m(node.bounds) / 10, max(c["geometricError"] for c in children) * 1.5, 1.0)
    return {"boundingVolume": _union([c["boundingVolume"] for c in children]), "geometricError": err,
            "refine": "ADD", "children": children}


_RENAME_EXCHANGE = 2


def _swap_in(new: Path, out: Path) -> None:
    """Make ``new`` appear at ``out`` in one step, readable by everyone; the old folder is removed afterwards."""
    make_readable(new)
    if not out.exists():
        os.rename(new, out)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    at_fdcwd = -100
    if renameat2 is not None and renameat2(at_fdcwd, os.fsencode(str(new)), at_fdcwd, os.fsencode(str(out)),
                                           _RENAME_EXCHANGE) == 0:
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old tileset
        return
    old = out.with_name(f".{out.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)
