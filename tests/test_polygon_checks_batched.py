"""Polygon checks over a whole batch (``check_flat``, which measures planarity only where it can
fail: not on plain triangles) give every polygon the verdict it gets checked alone, on the real
surfaces of the shared CityJSON files (triangles, quads and larger roofs) mixed with bent ones."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.readers.city_common import NON_PLANAR, check_flat, check_polygons
from shared_data import SHARED_DATA as SHARED

CJ = SHARED / "cityjson"
pytestmark = pytest.mark.realdata


def _polygons(name: str) -> list[list[np.ndarray]]:
    """Every surface of the file's Solid and MultiSurface geometries, as rings of x, y, z."""
    data = json.loads((CJ / name).read_text())
    t = data["transform"]
    vertices = np.asarray(data["vertices"], dtype=np.float64) * t["scale"] + t["translate"]
    out = []
    for obj in data["CityObjects"].values():
        for g in obj.get("geometry") or []:
            shells = {"Solid": g["boundaries"], "MultiSurface": [g["boundaries"]]}.get(g["type"], [])
            out += [[vertices[ring] for ring in surface] for shell in shells for surface in shell]
    return out


def _bent(rng: np.random.Generator, n: int) -> list[list[np.ndarray]]:
    """Quads with one corner lifted 0-2 m: some within the tolerance, some not."""
    quads = []
    for _ in range(n):
        corner = rng.uniform(0, 100, 2)
        quad = np.array([[0, 0, 0], [6, 0, 0], [6, 4, rng.uniform(0, 2)], [0, 4, 0]], dtype=np.float64)
        quads.append([quad + [*corner, 10.0]])
    return quads


def test_batch_verdicts_equal_the_verdicts_of_polygons_checked_alone():
    rng = np.random.default_rng(5)
    polygons = _polygons("delft.city.json")[:3000] + _polygons("rotterdam_subset.city.json") + _bent(rng, 200)
    order = rng.permutation(len(polygons))
    polygons = [polygons[i] for i in order]  # triangles, quads and bent quads interleaved
    sizes = np.array([len(r[0]) for r in polygons])
    assert (sizes == 3).sum() > 1000 and (sizes > 3).sum() > 300
    batch = check_polygons(polygons, geographic=False)
    alone = [check_polygons([p], geographic=False)[0] for p in polygons]
    assert sum(c.reason == NON_PLANAR for c in alone) > 20
    for got, want in zip(batch, alone):
        assert (got.reason, got.detail) == (want.reason, want.detail)
        if want.rings is not None:
            assert len(got.rings) == len(want.rings)
            for a, b in zip(got.rings, want.rings):
                np.testing.assert_array_equal(a, b)


def test_planarity_is_measured_where_it_can_fail():
    """A triangle is never non-planar; a bent quad next to triangles keeps its own deviation."""
    tri = [np.array([[0, 0, 0], [1, 0, 0], [0, 1, 5.0]])]
    bent = [np.array([[0, 0, 0], [6, 0, 0], [6, 4, 1.0], [0, 4, 0]])]
    pts = np.concatenate([r for p in (tri, bent, tri) for r in p])
    found = check_flat(pts, np.array([3, 4, 3]), np.array([1, 1, 1]), geographic=False)
    assert found.ok.tolist() == [True, False, True]
    alone = check_flat(bent[0], np.array([4]), np.array([1]), geographic=False)
    assert found.deviation[1] == alone.deviation[0] > 0.1
