"""The per-feature vertex budget: simplified shapes stay valid and true to the original; what
cannot fit is named, never silently kept or dropped."""
from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from geo.vertex_budget import limit_vertices


def test_huge_ring_is_simplified_to_the_budget_and_stays_true():
    t = np.linspace(0, 2 * np.pi, 200_000, endpoint=False)
    r = 50.0
    circle = Polygon(np.column_stack([r * np.cos(t), r * np.sin(t)]))
    small = box(200, 0, 210, 10)
    out = limit_vertices(np.array([small, circle], dtype=object), max_vertices=5000)
    assert out.simplified.tolist() == [1] and out.dropped.tolist() == []
    assert out.geoms[0] is small  # within the budget: untouched
    g = out.geoms[1]
    assert g.is_valid and shapely.get_num_coordinates(g) <= 5000
    xy = shapely.get_coordinates(g)
    assert np.allclose(np.hypot(xy[:, 0], xy[:, 1]), r)  # its vertices are the circle's own
    assert abs(g.area - np.pi * r**2) / (np.pi * r**2) < 1e-3


def test_a_feature_that_cannot_fit_is_reported_as_dropped():
    squares = MultiPolygon([box(i * 2, 0, i * 2 + 1, 1) for i in range(2000)])  # 10,000 coordinates, none removable
    out = limit_vertices(np.array([squares], dtype=object), max_vertices=5000)
    assert out.dropped.tolist() == [0] and out.simplified.tolist() == [] and out.geoms[0] is None
