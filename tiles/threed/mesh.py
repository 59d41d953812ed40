"""Triangle meshes in a tile's local East-North-Up frame.

Two builders: ``extrude_footprints`` turns 2D footprints into LOD1 blocks with numpy
(walls as quads, roofs by earcut), and ``surfaces_mesh`` triangulates the planar
surfaces of CityGML/CityJSON buildings. Both return a TileMesh with one feature id per
building, outward normals, and counter-clockwise (front-facing) triangles.
"""
from __future__ import annotations

from dataclasses import dataclass

import mapbox_earcut as earcut
import numpy as np
import shapely

from geo.city3d import Building3D
from geo.ecef import ecef_to_enu, to_ecef
from geo.vertex_budget import MAX_VERTICES, limit_vertices
from tiles.threed.glb import TileMesh


@dataclass(frozen=True)
class LocalFrame:
    origin_ecef: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3) rows: east, north, up

    def from_crs(self, xyz: np.ndarray, crs: str) -> np.ndarray:
        return ecef_to_enu(to_ecef(xyz, crs), self.origin_ecef, self.rotation)


def _earcut(xy: np.ndarray, ring_ends: np.ndarray) -> np.ndarray:
    tri = earcut.triangulate_float64(np.ascontiguousarray(xy, dtype=np.float64), ring_ends.astype(np.uint32))
    return tri.reshape(-1, 3)


def _facing(tris: np.ndarray, pts: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Flip triangles whose winding disagrees with ``normal``."""
    if len(tris) == 0:
        return tris
    a, b, c = pts[tris[:, 0]], pts[tris[:, 1]], pts[tris[:, 2]]
    flip = np.einsum("ij,j->i", np.cross(b - a, c - a), normal) < 0
    tris = tris.copy()
    tris[flip] = tris[flip][:, ::-1]
    return tris


def extrude_footprints(geoms: np.ndarray, base: np.ndarray, height: np.ndarray, frame: LocalFrame) -> TileMesh:
    """LOD1 blocks from lon/lat (Multi)Polygons: walls and a flat roof, holes included."""
    geoms = shapely.orient_polygons(np.asarray(geoms, dtype=object))  # exteriors CCW, holes CW
    parts, part_building = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    coord_building = part_building[ring_part[coord_ring]]
    bottom_h = base[coord_building]
    top_h = bottom_h + height[coord_building]
    n = len(coords)
    both = frame.from_crs(
        np.vstack([np.column_stack([coords, bottom_h]), np.column_stack([coords, top_h])]), "EPSG:4979")
    bottom, top = both[:n], both[n:]

    # walls: one quad per ring edge (consecutive coordinates of the same ring)
    start = np.flatnonzero(coord_ring[:-1] == coord_ring[1:])
    end = start + 1
    edge = bottom[end] - bottom[start]
    length = np.hypot(edge[:, 0], edge[:, 1])
    keep = length > 1e-3
    start, end, edge, length = start[keep], end[keep], edge[keep], length[keep]
    k = len(start)
    wall_normal = np.column_stack([edge[:, 1] / length, -edge[:, 0] / length, np.zeros(k)])
    wall_pos = np.stack([bottom[start], bottom[end], top[end], top[start]], axis=1).reshape(-1, 3)
    wall_nrm = np.repeat(wall_normal, 4, axis=0)
    wall_fid = np.repeat(coord_building[start], 4)
    quad = np.array([0, 1, 2, 0, 2, 3])
    wall_idx = (np.arange(k)[:, None] * 4 + quad[None, :]).ravel()

    # roofs: earcut per part on the top ring coordinates (closing vertex dropped)
    roof_pos, roof_idx, roof_fid = [], [], []
    offset = len(wall_pos)
    ring_start = np.searchsorted(coord_ring, np.arange(len(rings)))
    ring_stop = np.append(ring_start[1:], n)
    part_first_ring = np.searchsorted(ring_part, np.arange(len(parts)))
    part_last_ring = np.append(part_first_ring[1:], len(rings))
    up = np.array([0.0, 0.0, 1.0])
    for p in range(len(parts)):
        pts, ends, total = [], [], 0
        for r in range(part_first_ring[p], part_last_ring[p]):
            ring = top[ring_start[r]:ring_stop[r] - 1]
            pts.append(ring)
            total += len(ring)
            ends.append(total)
        pts = np.vstack(pts)
        tris = _facing(_earcut(pts[:, :2], np.array(ends)), pts, up)
        roof_pos.append(pts)
        roof_idx.append(tris.ravel() + offset)
        roof_fid.append(np.full(len(pts), part_building[p]))
        offset += len(pts)
    roof_pos = np.vstack(roof_pos) if roof_pos else np.zeros((0, 3))
    positions = np.vstack([wall_pos, roof_pos])
    normals = np.vstack([wall_nrm, np.tile(up, (len(roof_pos), 1))])
    return TileMesh(
        positions=positions,
        normals=normals,
        feature_ids=np.concatenate([wall_fid, np.concatenate(roof_fid) if roof_fid else []]).astype(np.int64),
        indices=np.concatenate([wall_idx] + roof_idx).astype(np.uint32),
        feature_count=len(geoms),
    )


def _newell(pts: np.ndarray) -> np.ndarray:
    nxt = np.roll(pts, -1, axis=0)
    return np.array([
        np.sum((pts[:, 1] - nxt[:, 1]) * (pts[:, 2] + nxt[:, 2])),
        np.sum((pts[:, 2] - nxt[:, 2]) * (pts[:, 0] + nxt[:, 0])),
        np.sum((pts[:, 0] - nxt[:, 0]) * (pts[:, 1] + nxt[:, 1])),
    ])


@dataclass
class SurfaceCounts:
    degenerate: int = 0  # skipped: no area to triangulate
    simplified: int = 0  # over the vertex budget, simplified in their plane
    too_complex: int = 0  # skipped: over the budget even when simplified


def _fit_in_plane(uv: np.ndarray, ends: np.ndarray) -> list[np.ndarray] | None:
    """The rings of a surface (plane coordinates) brought under the vertex budget, or None."""
    rings = np.split(uv, ends[:-1])
    fitted = limit_vertices(np.array([shapely.Polygon(rings[0], rings[1:])], dtype=object)).geoms[0]
    if fitted is None or fitted.geom_type != "Polygon":
        return None
    return [np.asarray(r.coords)[:-1] for r in (fitted.exterior, *fitted.interiors)]


def surfaces_mesh(buildings: list[Building3D], frame: LocalFrame) -> tuple[TileMesh, SurfaceCounts]:
    """Triangulate every surface of every building; returns the mesh and what was skipped or simplified.

    A surface over the vertex budget is simplified in its own plane (earcut time grows with
    the square of a ring's size), and placed back on that plane."""
    # transform all vertices at once per CRS, then slice them back per ring
    flat, owners = [], []
    for b_i, b in enumerate(buildings):
        for s_i, s in enumerate(b.surfaces):
            for ring in s.rings:
                ring = np.asarray(ring, dtype=np.float64)
                if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
                    ring = ring[:-1]
                flat.append(ring)
                owners.append((b_i, s_i, len(ring)))
    counts = SurfaceCounts()
    if not flat:
        return (TileMesh(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0, np.uint32), 0),
                counts)
    crs_of = np.array([buildings[b].crs for b, _, _ in owners])
    sizes = np.array([n for _, _, n in owners])
    allpts = np.vstack(flat)
    local = np.empty_like(allpts)
    vertex_crs = np.repeat(crs_of, sizes)
    for crs in np.unique(crs_of):
        sel = vertex_crs == crs
        local[sel] = frame.from_crs(allpts[sel], str(crs))
    ring_start = np.concatenate([[0], np.cumsum(sizes)])

    positions, normals, fids, indices = [], [], [], []
    offset, r = 0, 0
    while r < len(owners):
        b_i, s_i, _ = owners[r]
        rings = []
        while r < len(owners) and owners[r][:2] == (b_i, s_i):
            rings.append(local[ring_start[r]:ring_start[r + 1]])
            r += 1
        normal = _newell(rings[0])
        norm = np.linalg.norm(normal)
        if norm < 1e-9 or len(rings[0]) < 3:
            counts.degenerate += 1
            continue
        normal = normal / norm
        # project onto the surface's plane for earcut
        helper = np.array([1.0, 0, 0]) if abs(normal[0]) < 0.9 else np.array([0, 1.0, 0])
        u = np.cross(normal, helper)
        u /= np.linalg.norm(u)
        v = np.cross(normal, u)
        pts = np.vstack(rings)
        ends = np.cumsum([len(x) for x in rings])
        uv = np.column_stack([pts @ u, pts @ v])
        if len(pts) > MAX_VERTICES:
            fitted = _fit_in_plane(uv, ends)
            if fitted is None:
                counts.too_complex += 1
                continue
            counts.simplified += 1
            depth = float(np.mean(pts @ normal))
            uv, ends = np.vstack(fitted), np.cumsum([len(x) for x in fitted])
            pts = uv[:, :1] * u + uv[:, 1:] * v + depth * normal
        tris = _earcut(uv, ends)
        if len(tris) == 0:
            counts.degenerate += 1
            continue
        tris = _facing(tris, pts, normal)
        positions.append(pts)
        normals.append(np.tile(normal, (len(pts), 1)))
        fids.append(np.full(len(pts), b_i))
        indices.append(tris.ravel() + offset)
        offset += len(pts)
    if not positions:
        return TileMesh(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0, np.uint32),
                        len(buildings)), counts
    return TileMesh(np.vstack(positions), np.vstack(normals), np.concatenate(fids).astype(np.int64),
                    np.concatenate(indices).astype(np.uint32), len(buildings)), counts
