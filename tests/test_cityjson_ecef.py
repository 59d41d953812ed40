"""The export's CityJSON reader gives each building's vertices in ECEF too, transformed once per
distinct vertex of a batch: they must equal PROJ run on the building's own vertices, vertex by
vertex, and the tile mesh made from them must equal the one made from the source CRS."""
from __future__ import annotations

import numpy as np
import pytest
from pyproj import CRS, Transformer

from pipelines.readers import cityjson_batch
from pipelines.readers.cityjson import read_cityjson_flat
from shared_data import SHARED_DATA as SHARED
from tiles.threed.mesh import FlatSurfaces, flat_surfaces_mesh
from tiles.threed.tileset import frame_at

CJ = SHARED / "cityjson"
pytestmark = pytest.mark.realdata


def _rd_to_ecef(xyz: np.ndarray) -> np.ndarray:
    t = Transformer.from_crs(CRS.from_user_input("EPSG:7415").to_3d(), "EPSG:4978", always_xy=True)
    return np.column_stack(t.transform(xyz[:, 0], xyz[:, 1], xyz[:, 2]))


@pytest.mark.parametrize("batch_vertices", [50_000, 300], ids=["one-batch", "many-batches"])
@pytest.mark.parametrize("name", ["delft.city.json", "multi_lod.city.json"])
def test_ecef_equals_proj_on_each_buildings_vertices(monkeypatch, name: str, batch_vertices: int):
    monkeypatch.setattr(cityjson_batch, "BATCH_VERTICES", batch_vertices)
    found = [b for lods in read_cityjson_flat(CJ / name, crs="EPSG:7415", lods=(1, 2)) for b in lods.values()]
    assert len(found) >= 10
    coords = np.concatenate([b.coords for b in found])
    ecef = np.concatenate([b.ecef for b in found])
    assert ecef.shape == coords.shape and len(np.unique(coords, axis=0)) < len(coords)  # vertices are shared
    np.testing.assert_array_equal(ecef, _rd_to_ecef(coords))


def test_mesh_from_ecef_equals_mesh_from_the_source_crs():
    found = [next(iter(lods.values())) for lods in read_cityjson_flat(CJ / "delft.city.json", lods=(1,))]
    frame = frame_at(4.37, 52.0)

    def mesh(coords: list[np.ndarray], crs: str):
        flat = FlatSurfaces(np.concatenate(coords), np.concatenate([b.ring_sizes for b in found]),
                            np.concatenate([b.ring_counts for b in found]),
                            np.array([len(b.ring_counts) for b in found]), [crs] * len(found))
        return flat_surfaces_mesh(flat, frame)[0]

    source = mesh([b.coords for b in found], found[0].crs)
    earth = mesh([b.ecef for b in found], "EPSG:4978")
    assert len(source.indices) > 10_000
    for field in ("positions", "normals", "feature_ids", "indices"):
        np.testing.assert_array_equal(getattr(earth, field), getattr(source, field))


@pytest.mark.parametrize("name", ["delft.city.json", "multi_lod.city.json", "rotterdam_subset.city.json"])
def test_whole_geometry_path_equals_the_surface_by_surface_path(monkeypatch, name: str):
    """A geometry's surfaces gathered at once (``_add_whole``) give the buildings that the
    surface-by-surface path (kept for malformed geometries) gives."""
    def read() -> list:
        return [(lod, b) for lods in read_cityjson_flat(CJ / name, crs="EPSG:7415", lods=(1, 2))
                for lod, b in sorted(lods.items())]

    fast = read()
    monkeypatch.setattr(cityjson_batch.SurfaceBatch, "_add_whole", lambda *args: False)
    slow = read()
    assert len(fast) == len(slow) >= 10
    for (lod, a), (lod_b, b) in zip(fast, slow):
        assert (a.id, lod, a.kinds) == (b.id, lod_b, b.kinds)
        for field in ("ring_counts", "ring_sizes", "coords", "ecef"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
