"""Compiled inner loops of the occlusion test (numba): sight lines against LOD1 blocks.

The footprints are held flat: ``xy`` (all ring vertices, each ring closed), ``ring_start``
(offsets of each ring in ``xy``, one extra at the end) and ``block_ring`` (offsets of each
block's rings in ``ring_start``). A block's rings (shells and holes of all its parts) are
read with the even-odd rule, which is exact for valid polygons and multipolygons.

Per request there are a dozen sight lines and a few thousand (line, block) candidate pairs
from the STRtree; in numpy each step of the test is a separate call, and the call overhead
was most of the request. Here one pass settles them all.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _inside(xy, ring_start, first_ring, last_ring, px, py):
    """Even-odd point-in-polygon over the rings ``first_ring`` .. ``last_ring - 1``."""
    inside = False
    for r in range(first_ring, last_ring):
        a, b = ring_start[r], ring_start[r + 1]
        for k in range(a, b - 1):
            x0, y0, x1, y1 = xy[k, 0], xy[k, 1], xy[k + 1, 0], xy[k + 1, 1]
            if (y0 > py) != (y1 > py):
                if px < x0 + (py - y0) * (x1 - x0) / (y1 - y0):
                    inside = not inside
    return inside


@njit(cache=True, nogil=True)
def _near(xy, ring_start, first_ring, last_ring, px, py, tol):
    """True when (px, py) is inside the rings or within ``tol`` of one of their edges."""
    if _inside(xy, ring_start, first_ring, last_ring, px, py):
        return True
    tol2 = tol * tol
    for r in range(first_ring, last_ring):
        a, b = ring_start[r], ring_start[r + 1]
        for k in range(a, b - 1):
            x0, y0 = xy[k, 0], xy[k, 1]
            ex, ey = xy[k + 1, 0] - x0, xy[k + 1, 1] - y0
            ee = ex * ex + ey * ey
            u = 0.0 if ee == 0.0 else ((px - x0) * ex + (py - y0) * ey) / ee
            u = min(1.0, max(0.0, u))
            dx, dy = x0 + u * ex - px, y0 + u * ey - py
            if dx * dx + dy * dy <= tol2:
                return True
    return False


@njit(cache=True, nogil=True)
def _first_hiding_t(xy, ring_start, first_ring, last_ring, sx, sy, sh, dx, dy, dh, base, top, buf):
    """Where along the segment S + t*D (t in 0..1, height sh + t*dh) it first runs inside the
    footprint at a height within (base, top); -1 when it never does.

    The segment is cut at every crossing with an edge; each piece lies wholly inside or
    outside (tested at its middle), and inside a piece the height is linear, so its range
    is given by the piece's ends.
    """
    n = 0
    buf[n] = 0.0
    n += 1
    for r in range(first_ring, last_ring):
        a, b = ring_start[r], ring_start[r + 1]
        for k in range(a, b - 1):
            ax, ay = xy[k, 0], xy[k, 1]
            ex, ey = xy[k + 1, 0] - ax, xy[k + 1, 1] - ay
            den = dx * ey - dy * ex
            if den == 0.0:
                continue  # parallel: the pieces' middles decide
            wx, wy = ax - sx, ay - sy
            t = (wx * ey - wy * ex) / den
            u = (wx * dy - wy * dx) / den
            if 0.0 < t < 1.0 and 0.0 <= u <= 1.0:
                buf[n] = t
                n += 1
    buf[n] = 1.0
    n += 1
    ts = np.sort(buf[:n])
    for i in range(n - 1):
        ta, tb = ts[i], ts[i + 1]
        if tb - ta <= 1e-12:
            continue
        tm = 0.5 * (ta + tb)
        if not _inside(xy, ring_start, first_ring, last_ring, sx + tm * dx, sy + tm * dy):
            continue
        ha, hb = sh + ta * dh, sh + tb * dh
        if min(ha, hb) < top and max(ha, hb) > base:
            return ta
    return -1.0


@njit(cache=True, nogil=True)
def nearest_blockers(start, ends, pair_line, pair_block, bounds, base, top, xy, ring_start, block_ring, tol):
    """For each sight line (``start`` -> ``ends[i]``, x/y/height) the nearest block that hides
    it, or -1. ``pair_line``/``pair_block`` are the candidate pairs (e.g. from an envelope
    query). A block the target or the device stands in (within ``tol``) never hides.

    Each pair is first clipped to the block's bounding box (Liang-Barsky): a line that misses
    the box, or whose height over the box stays outside (base, top), is dropped without
    reading the polygon. The rest are tested exactly, nearest box first per line, until the
    best hit so far starts before the next box.
    """
    n = ends.shape[0]
    m = pair_line.shape[0]
    sx, sy, sh = start[0], start[1], start[2]
    box_t = np.empty(m)
    alive = np.zeros(m, dtype=np.bool_)
    for p in range(m):
        i, b = pair_line[p], pair_block[p]
        dx, dy = ends[i, 0] - sx, ends[i, 1] - sy
        t0, t1 = 0.0, 1.0
        ok = True
        for axis in range(2):
            s = sx if axis == 0 else sy
            d = dx if axis == 0 else dy
            lo, hi = bounds[b, axis], bounds[b, axis + 2]
            if d == 0.0:
                if s < lo or s > hi:
                    ok = False
            else:
                ta, tb = (lo - s) / d, (hi - s) / d
                if ta > tb:
                    ta, tb = tb, ta
                t0, t1 = max(t0, ta), min(t1, tb)
        if not ok or t0 > t1:
            continue
        dh = ends[i, 2] - sh
        h0, h1 = sh + t0 * dh, sh + t1 * dh
        if min(h0, h1) >= top[b] or max(h0, h1) <= base[b]:
            continue
        box_t[p] = t0
        alive[p] = True

    best_t = np.full(n, np.inf)
    blocker = np.full(n, -1, dtype=np.int64)
    idx = np.flatnonzero(alive)
    if idx.shape[0] == 0:
        return blocker
    key = pair_line[idx].astype(np.float64) + 0.5 * box_t[idx]  # by line, then box entry
    idx = idx[np.argsort(key, kind="mergesort")]
    # Everything below touches only the candidate blocks, never the whole city.
    blocks = np.unique(pair_block[idx])
    max_vertices = 0
    for b in blocks:
        max_vertices = max(max_vertices, ring_start[block_ring[b + 1]] - ring_start[block_ring[b]])
    buf = np.empty(max_vertices + 2)
    home_known = np.zeros(blocks.shape[0], dtype=np.int8)  # per candidate block: 0 unknown, 1 home, 2 not
    for p in idx:
        i, b = pair_line[p], pair_block[p]
        if box_t[p] >= best_t[i]:
            continue  # this box starts after the best hit: so does every later one of the line
        r0, r1 = block_ring[b], block_ring[b + 1]
        k = np.searchsorted(blocks, b)
        if home_known[k] == 0:
            home_known[k] = 1 if _near(xy, ring_start, r0, r1, sx, sy, tol) else 2
        if home_known[k] == 1 or _near(xy, ring_start, r0, r1, ends[i, 0], ends[i, 1], tol):
            continue
        t = _first_hiding_t(xy, ring_start, r0, r1, sx, sy, sh, ends[i, 0] - sx, ends[i, 1] - sy,
                            ends[i, 2] - sh, base[b], top[b], buf)
        if t >= 0.0 and (t < best_t[i] or (t == best_t[i] and b < blocker[i])):
            best_t[i] = t
            blocker[i] = b
    return blocker


def flat_rings(footprints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``xy``, ``ring_start``, ``block_ring`` (see the module docstring) of shapely polygons or
    multipolygons."""
    import shapely

    parts, part_owner = shapely.get_parts(footprints, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    xy, vertex_ring = shapely.get_coordinates(rings, return_index=True)
    ring_start = np.searchsorted(vertex_ring, np.arange(len(rings) + 1)).astype(np.int64)
    ring_owner = part_owner[ring_part]
    block_ring = np.searchsorted(ring_owner, np.arange(len(footprints) + 1)).astype(np.int64)
    return np.ascontiguousarray(xy, dtype=np.float64), ring_start, block_ring
