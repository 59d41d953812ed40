"""Single-triangle surfaces are triangulated without calling earcut, with earcut's own answer:
the same three indices in the same order wherever the shortcut answers, on random, thin,
collinear and repeated-point triangles."""
from __future__ import annotations

import mapbox_earcut as earcut
import numpy as np

from tiles.threed.mesh import FlatSurfaces, LocalFrame, _triangles, flat_surfaces_mesh
from tiles.threed.tileset import frame_at


def _cases(rng: np.random.Generator, n: int) -> np.ndarray:
    tri = rng.normal(size=(n, 3, 2)) * rng.choice([1e-6, 1.0, 1e3], size=(n, 1, 1))
    tri[: n // 8, 2] = tri[: n // 8, 0] + (tri[: n // 8, 1] - tri[: n // 8, 0]) * 0.5  # collinear
    tri[n // 8: n // 4, 1] = tri[n // 8: n // 4, 0]  # a repeated point
    tri[n // 4: n // 3, 2] = tri[n // 4: n // 3, 1] + rng.normal(size=(n // 3 - n // 4, 2)) * 1e-12  # thin
    return tri


def test_shortcut_gives_earcuts_indices_where_it_answers():
    tri = _cases(np.random.default_rng(7), 20_000)
    done, ear = _triangles(tri.reshape(-1, 2), np.arange(len(tri)) * 3, np.ones(len(tri), dtype=bool))
    expected = [earcut.triangulate_float64(t, np.array([3], dtype=np.uint32)).tolist() for t in tri]
    assert done.sum() > 15_000  # the shortcut answers nearly every real triangle
    assert [e.tolist() for e in ear] == [expected[k] for k in np.flatnonzero(done)]
    assert all(len(expected[k]) in (0, 3) for k in np.flatnonzero(~done))


def test_mesh_of_triangles_equals_the_mesh_made_surface_by_surface():
    """The tile mesh of many triangle surfaces (some degenerate) against a reference assembled
    here with one earcut call per surface in a horizontal plane."""
    rng = np.random.default_rng(3)
    tri = _cases(rng, 3_000)
    coords = np.concatenate([tri, np.full((len(tri), 3, 1), 5.0)], axis=2).reshape(-1, 3) + [85_000, 447_000, 0]
    flat = FlatSurfaces(coords, np.full(len(tri), 3), np.ones(len(tri), dtype=np.int64),
                        np.array([len(tri)], dtype=np.int64), ["EPSG:7415"])
    frame: LocalFrame = frame_at(4.37, 52.0)
    mesh, counts = flat_surfaces_mesh(flat, frame)
    local = frame.from_crs(coords, "EPSG:7415").reshape(-1, 3, 3)
    positions, indices = [], []
    for t in local:
        normal = np.cross(t[1] - t[0], t[2] - t[0])
        if np.linalg.norm(normal) < 1e-9:
            continue
        found = earcut.triangulate_float64(np.ascontiguousarray(t[:, :2]), np.array([3], dtype=np.uint32))
        if len(found):
            indices.append(found + 3 * len(positions))
            positions.append(t)
    assert len(mesh.positions) == 3 * len(positions) and len(positions) > 1_000
    np.testing.assert_allclose(mesh.positions, np.concatenate(positions), atol=1e-6)
    got = mesh.indices.reshape(-1, 3)
    want = np.concatenate(indices).reshape(-1, 3)
    assert (np.sort(got, axis=1) == np.sort(want, axis=1)).all()  # same triangles; winding is made outward
    assert counts.degenerate == len(tri) - len(positions)
