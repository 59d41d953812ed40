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
from geo.ecef import ECEF, ecef_to_enu, to_ecef
from geo.rows import row_norms, row_sums
from geo.vertex_budget import MAX_VERTICES, limit_vertices
from tiles.threed.glb import TileMesh


@dataclass(frozen=True)
class LocalFrame:
    origin_ecef: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3) rows: east, north, up

    def from_crs(self, xyz: np.ndarray, crs: str) -> np.ndarray:
        ecef = xyz if crs == ECEF else to_ecef(xyz, crs)
        return ecef_to_enu(ecef, self.origin_ecef, self.rotation)


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


@dataclass
class FlatSurfaces:
    """The surfaces of a tile's buildings as flat arrays: what ``flat_surfaces_mesh`` reads,
    and what a spill file stores (no object per ring)."""

    coords: np.ndarray  # (n, 3) float64, each ring's vertices in turn (closed or open)
    ring_sizes: np.ndarray  # (rings,) vertices per ring
    ring_counts: np.ndarray  # (surfaces,) rings per surface, exterior first
    surface_counts: np.ndarray  # (buildings,) surfaces per building
    crs: list[str]  # per building
    uv: np.ndarray | None = None  # (n, 2) texture coordinates per vertex (NaN where untextured), or None
    surface_image: np.ndarray | None = None  # (surfaces,) the index of each surface's image, -1 for none


def flatten(buildings: list[Building3D]) -> FlatSurfaces:
    rings = [r for b in buildings for s in b.surfaces for r in s.rings]
    return FlatSurfaces(
        np.concatenate([np.asarray(r, dtype=np.float64) for r in rings]) if rings else np.zeros((0, 3)),
        np.array([len(r) for r in rings], dtype=np.int64),
        np.array([len(s.rings) for b in buildings for s in b.surfaces], dtype=np.int64),
        np.array([len(b.surfaces) for b in buildings], dtype=np.int64), [b.crs for b in buildings])


def surfaces_mesh(buildings: list[Building3D], frame: LocalFrame) -> tuple[TileMesh, SurfaceCounts]:
    """Triangulate every surface of every building; returns the mesh and what was skipped or simplified."""
    return flat_surfaces_mesh(flatten(buildings), frame)


def flat_surfaces_mesh(flat: FlatSurfaces, frame: LocalFrame) -> tuple[TileMesh, SurfaceCounts]:
    """``surfaces_mesh`` of buildings given as flat arrays.

    A surface over the vertex budget is simplified in its own plane (earcut time grows with
    the square of a ring's size), and placed back on that plane. Everything but earcut itself
    is one numpy call over the tile's vertices: per-surface numpy calls (Newell normal, plane
    basis, winding check) took two thirds of a CityGML export.
    """
    n_buildings = len(flat.surface_counts)
    counts = SurfaceCounts()
    if not len(flat.ring_sizes):
        return _empty_mesh(n_buildings), counts
    surface_building = np.repeat(np.arange(n_buildings), flat.surface_counts)
    ring_surface = np.repeat(np.arange(len(flat.ring_counts)), flat.ring_counts)
    raw_sizes, raw = flat.ring_sizes, flat.coords
    n_rings = len(raw_sizes)
    # drop each ring's closing vertex (a repeat of its first)
    raw_start = np.concatenate([[0], np.cumsum(raw_sizes)[:-1]])
    raw_last = raw_start + raw_sizes - 1
    closed = (raw_sizes > 1) & (raw[raw_start] == raw[raw_last]).all(axis=1)
    keep = np.ones(len(raw), dtype=bool)
    keep[raw_last[closed]] = False
    sizes = raw_sizes - closed
    vertex_ring = np.repeat(np.arange(n_rings), sizes)
    local = _to_frame(raw[keep], surface_building[ring_surface[vertex_ring]], flat.crs, frame)
    ring_start = np.concatenate([[0], np.cumsum(sizes)])

    # Newell normal of each surface's exterior (its first ring)
    n_surf = len(surface_building)
    first_ring = np.searchsorted(ring_surface, np.arange(n_surf))
    on_ext = np.zeros(n_rings, dtype=bool)
    on_ext[first_ring] = True
    nxt = np.arange(1, len(local) + 1)
    ends = ring_start[1:] - 1
    nxt[ends[sizes > 0]] = ring_start[:-1][sizes > 0]
    a, b = local, local[nxt]
    ext_vertex = on_ext[vertex_ring]
    owner = ring_surface[vertex_ring][ext_vertex]
    terms = np.column_stack([(a[:, 1] - b[:, 1]) * (a[:, 2] + b[:, 2]), (a[:, 2] - b[:, 2]) * (a[:, 0] + b[:, 0]),
                             (a[:, 0] - b[:, 0]) * (a[:, 1] + b[:, 1])])[ext_vertex]
    normal = np.column_stack([np.bincount(owner, terms[:, k], minlength=n_surf) for k in range(3)])
    norm = row_norms(normal)
    usable = (norm >= 1e-9) & (sizes[first_ring] >= 3)
    counts.degenerate += int((~usable).sum())
    normal = normal / np.where(usable, norm, 1.0)[:, None]
    # a basis of each surface's plane, for earcut
    helper = np.where((np.abs(normal[:, 0]) < 0.9)[:, None], [1.0, 0, 0], [0, 1.0, 0])
    u = np.cross(normal, helper)
    u /= np.where(usable, row_norms(u), 1.0)[:, None]
    v = np.cross(normal, u)
    vertex_surface = ring_surface[vertex_ring]
    uv = np.column_stack([row_sums(local * u[vertex_surface]), row_sums(local * v[vertex_surface])])

    surface_start = ring_start[first_ring]
    surface_size = ring_start[np.append(first_ring[1:], n_rings)] - surface_start
    fast, fast_tris = _triangles(uv, surface_start, usable & (flat.ring_counts == 1) & (surface_size == 3))
    starts, firsts = ring_start.tolist(), [*first_ring.tolist(), n_rings]
    slow_ids, slow_tris, fitted_pts = [], [], {}
    for k in np.flatnonzero(usable & ~fast).tolist():
        r0, r1 = firsts[k], firsts[k + 1]
        lo, hi = starts[r0], starts[r1]
        plane = uv[lo:hi]
        ring_ends = ring_start[r0 + 1:r1 + 1] - lo
        if hi - lo > MAX_VERTICES:
            fitted = _fit_in_plane(plane, ring_ends)
            if fitted is None:
                counts.too_complex += 1
                continue
            counts.simplified += 1
            depth = float(np.mean(local[lo:hi] @ normal[k]))
            plane, ring_ends = np.vstack(fitted), np.cumsum([len(x) for x in fitted])
            fitted_pts[k] = plane[:, :1] * u[k] + plane[:, 1:] * v[k] + depth * normal[k]
        tris = _earcut(plane, ring_ends)
        if len(tris) == 0:
            fitted_pts.pop(k, None)
            counts.degenerate += 1
            continue
        slow_ids.append(np.full(len(tris), k))
        slow_tris.append(tris)
    kept = fast.copy()
    kept[[int(t[0]) for t in slow_ids]] = True
    kept_ids = np.flatnonzero(kept)
    if not len(kept_ids):
        return _empty_mesh(n_buildings), counts
    fitted = np.zeros(n_surf, dtype=bool)
    fitted[list(fitted_pts)] = True
    per = np.where(fitted, 0, surface_size)
    for k, pts in fitted_pts.items():
        per[k] = len(pts)
    per = per[kept_ids]
    offset = np.zeros(n_surf, dtype=np.int64)
    offset[kept_ids] = np.cumsum(per) - per

    # positions in surface order: a kept surface's own vertices, or its simplified ones
    all_pos = np.empty((int(per.sum()), 3))
    taken = np.flatnonzero((kept & ~fitted)[vertex_surface])
    dest = offset[vertex_surface[taken]] + taken - surface_start[vertex_surface[taken]]
    all_pos[dest] = local[taken]
    for k, pts in fitted_pts.items():
        all_pos[offset[k]:offset[k] + len(pts)] = pts
    # triangles in surface order, each surface's as earcut gave them
    tri_surface = np.concatenate([np.flatnonzero(fast), *slow_ids]).astype(np.int64)
    tri_local = np.concatenate([fast_tris, *slow_tris]).reshape(-1, 3)
    order = np.argsort(tri_surface, kind="stable")
    indices = (tri_local[order] + offset[tri_surface[order]][:, None]).astype(np.uint32)
    vertex_normals = np.repeat(normal[kept_ids], per, axis=0)
    tris = _facing_each(indices, all_pos, vertex_normals)
    fids = np.repeat(surface_building[kept_ids], per).astype(np.int64)
    mesh = TileMesh(all_pos, vertex_normals, fids, tris.ravel(), n_buildings)
    if flat.uv is not None:  # simplified surfaces lose their texture: their vertices are new
        image = np.where(fitted, -1, flat.surface_image)
        mesh.uv = np.zeros((len(all_pos), 2))
        tex = taken[image[vertex_surface[taken]] >= 0]
        mesh.uv[offset[vertex_surface[tex]] + tex - surface_start[vertex_surface[tex]]] = flat.uv[keep][tex]
        mesh.image = np.repeat(image[kept_ids], per).astype(np.int64)
    return mesh, counts


def _triangles(plane: np.ndarray, start: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surfaces that are one triangle, triangulated without earcut: which of ``candidates``
    (a mask over surfaces starting at vertex ``start``) were done, and their (n, 3) local indices.

    The result is earcut's own (``earcut.hpp``, same float operations): the ring is linked in
    its winding from the signed area, and the first ear tested is cut when its area is negative.
    Any other case (a degenerate or ambiguous triangle) is left to earcut. Most CityJSON
    surfaces are triangles, and one earcut call from Python costs more than the rest per surface.
    """
    ids = np.flatnonzero(candidates)
    p = plane[start[ids][:, None] + np.arange(3)]
    x, y = p[:, :, 0], p[:, :, 1]
    winding = (x[:, 2] - x[:, 0]) * (y[:, 0] + y[:, 2]) + (x[:, 0] - x[:, 1]) * (y[:, 1] + y[:, 0]) \
        + (x[:, 1] - x[:, 2]) * (y[:, 2] + y[:, 1])
    forward = winding > 0
    ear = np.where(forward[:, None], [1, 2, 0], [1, 0, 2])  # earcut's (prev, ear, next) of its first ear
    rows = np.arange(len(ids))[:, None]
    (ax, bx, cx), (ay, by, cy) = x[rows, ear].T, y[rows, ear].T
    done = (by - ay) * (cx - bx) - (bx - ax) * (cy - by) < 0
    mask = np.zeros(len(candidates), dtype=bool)
    mask[ids[done]] = True
    return mask, ear[done]


def _empty_mesh(features: int) -> TileMesh:
    return TileMesh(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0, np.uint32), features)


def _to_frame(pts: np.ndarray, building_of: np.ndarray, crs: list[str], frame: LocalFrame) -> np.ndarray:
    """Vertices in ``frame``, transformed once per CRS (a tile has one, almost always: then no
    per-vertex CRS lookup)."""
    names, code = np.unique(np.array(crs), return_inverse=True)
    if len(names) == 1:
        return frame.from_crs(pts, str(names[0]))
    local = np.empty_like(pts)
    vertex_code = code[building_of]
    for k, name in enumerate(names):
        sel = vertex_code == k
        local[sel] = frame.from_crs(pts[sel], str(name))
    return local


def _facing_each(tris: np.ndarray, pts: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Flip triangles whose winding disagrees with their first vertex's normal."""
    a, b, c = pts[tris[:, 0]], pts[tris[:, 1]], pts[tris[:, 2]]
    flip = row_sums(np.cross(b - a, c - a) * normals[tris[:, 0]]) < 0
    tris = tris.copy()
    tris[flip] = tris[flip][:, ::-1]
    return tris
