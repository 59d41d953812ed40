"""3D Tiles from footprints: placement, winding, holes, metadata, validators, b3dm, atomicity."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from click.testing import CliRunner
from pyproj import Transformer
from shapely.geometry import Polygon

from pipelines.cli import main
from pipelines.export3d import footprints_to_tileset
from gltf_read import iter_content, mesh_local_enu, property_strings, read_b3dm, split_glb
from validators import gltf_validate

TO_M = Transformer.from_crs(4326, 5186, always_xy=True)
TO_LL = Transformer.from_crs(5186, 4326, always_xy=True)
ECEF_TO_LLH = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
LLH_TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)


def lonlat_poly(x0, y0, w, h, hole=None) -> Polygon:
    def ring(x, y, ww, hh):
        return [TO_LL.transform(px, py) for px, py in [(x, y), (x + ww, y), (x + ww, y + hh), (x, y + hh)]]
    holes = [ring(*hole)] if hole else []
    return Polygon(ring(x0, y0, w, h), holes)


@pytest.fixture(scope="module")
def footprints() -> gpd.GeoDataFrame:
    x, y = TO_M.transform(126.9779, 37.5663)
    rng = np.random.default_rng(7)
    geoms, heights = [], []
    for i in range(300):
        gx, gy = x + (i % 20) * 40, y + (i // 20) * 40
        if i == 0:  # courtyard building
            geoms.append(lonlat_poly(gx, gy, 30, 30, hole=(gx + 10, gy + 10, 10, 10)))
        else:
            geoms.append(lonlat_poly(gx, gy, rng.uniform(8, 30), rng.uniform(8, 30)))
        heights.append(float(rng.uniform(6, 120)))
    return gpd.GeoDataFrame({
        "id": [f"bld-{i}" for i in range(300)], "name": [f"건물 {i}" for i in range(300)], "height": heights,
        "floors": np.arange(300) % 30 + 1, "usage": ["업무시설"] * 300, "base_height": np.full(300, 20.0),
    }, geometry=geoms, crs=4326)


@pytest.fixture(scope="module")
def tileset(footprints, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ts") / "buildings"
    report = footprints_to_tileset(footprints, out, source="buildings", progress=False, max_per_tile=100)
    assert report.buildings == 300
    return out


def decoded(tileset: Path):
    for tile, path, m in iter_content(tileset):
        gltf, blob = split_glb(path.read_bytes())
        mesh = mesh_local_enu(gltf, blob)
        ecef = mesh["positions"] @ m[:3, :3].T + m[:3, 3]
        yield tile, path, gltf, blob, mesh, ecef


def test_tileset_json_is_3d_tiles_1_1_with_regions(tileset: Path):
    ts = json.loads((tileset / "tileset.json").read_text())
    assert ts["asset"]["version"] == "1.1"
    assert ts["geometricError"] > ts["root"]["geometricError"] >= 0
    regions = [t["boundingVolume"]["region"] for t, _, _ in iter_content(tileset)]
    assert len(regions) > 1  # 300 buildings make more than one tile
    for w, s, e, n, lo, hi in regions:
        assert w < e and s < n and lo < hi
        assert np.degrees(w) > 126.97 and np.degrees(n) < 37.58


def test_each_building_once_with_metadata(tileset: Path, footprints):
    seen = []
    for _, _, gltf, blob, mesh, _ in decoded(tileset):
        ids = property_strings(gltf, blob, "id")
        names = property_strings(gltf, blob, "name")
        assert len(ids) == gltf["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"][0]["featureCount"]
        assert set(np.unique(mesh["feature_ids"])) == set(range(len(ids)))  # every feature has triangles
        for i, n in zip(ids, names):
            assert footprints.set_index("id").loc[i, "name"] == n
        seen += ids
    assert sorted(seen) == sorted(footprints["id"])  # all present, none duplicated


def test_vertices_back_to_lonlat_within_5cm(tileset: Path, footprints):
    by_id = footprints.set_index("id")
    worst = 0.0
    for _, _, gltf, blob, mesh, ecef in decoded(tileset):
        ids = property_strings(gltf, blob, "id")
        for fid, bid in enumerate(ids[:40]):
            got = ecef[mesh["feature_ids"] == fid]
            row = by_id.loc[bid]
            lon, lat = np.asarray(row.geometry.exterior.coords).T
            for h in (row.base_height, row.base_height + row.height):
                sx, sy, sz = LLH_TO_ECEF.transform(lon, lat, np.full(len(lon), h))
                src = np.column_stack([sx, sy, sz])
                d = np.linalg.norm(src[:, None, :] - got[None, :, :], axis=2).min(axis=1)
                worst = max(worst, float(d.max()))
    assert worst < 0.05


def test_winding_and_normals_face_outward(tileset: Path):
    inward: Counter[str] = Counter()
    for _, _, gltf, blob, mesh, _ in decoded(tileset):
        p, tri = mesh["positions"], mesh["indices"]
        a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
        geo_n = np.cross(b - a, c - a)
        geo_n /= np.linalg.norm(geo_n, axis=1)[:, None]
        stored = mesh["normals"][tri[:, 0]]
        # counter-clockwise triangles agree with the stored normals
        assert (np.einsum("ij,ij->i", geo_n, stored) > 0.99).all()
        # roofs face up; walls are vertical and point away from their building's centre
        roof = geo_n[:, 2] > 0.99
        wall = np.abs(geo_n[:, 2]) < 1e-3
        assert (roof | wall).all()
        fid = mesh["feature_ids"][tri[:, 0]]
        centres = np.array([p[mesh["feature_ids"] == f].mean(axis=0) for f in range(fid.max() + 1)])
        out = (a + b + c) / 3 - centres[fid]
        outward = np.einsum("ij,ij->i", geo_n[wall][:, :2], out[wall][:, :2]) > 0
        ids = property_strings(gltf, blob, "id")
        inward.update(ids[f] for f in fid[wall][~outward])
    # Every footprint is a rectangle, so each wall is one quad of 2 triangles facing away from the
    # centre. The one exception the geometry allows: the 4 walls of bld-0's square court face the
    # court, which is where that building's centre lies, so exactly 4 x 2 triangles point inward.
    assert inward == {"bld-0": 8}


def test_courtyard_roof_area_excludes_hole(tileset: Path, footprints):
    for _, _, gltf, blob, mesh, _ in decoded(tileset):
        ids = property_strings(gltf, blob, "id")
        if "bld-0" not in ids:
            continue
        fid = ids.index("bld-0")
        p, tri = mesh["positions"], mesh["indices"]
        mine = tri[mesh["feature_ids"][tri[:, 0]] == fid]
        a, b, c = p[mine[:, 0]], p[mine[:, 1]], p[mine[:, 2]]
        cross = np.cross(b - a, c - a)
        length = np.linalg.norm(cross, axis=1)
        roof_area = 0.5 * length[cross[:, 2] / length > 0.99].sum()
        assert roof_area == pytest.approx(30 * 30 - 10 * 10, rel=0.01)
        return
    pytest.fail("bld-0 not found in any tile")


def test_glbs_pass_khronos_validator(tileset: Path):
    files = [path for _, path, _ in iter_content(tileset)]
    reports = gltf_validate(files)
    assert len(reports) == len(files)
    bad = [r for r in reports if r["numErrors"]]
    assert not bad, bad[:2]


def test_quantized_and_compact(tileset: Path):
    for _, _, gltf, _, _, _ in decoded(tileset):
        assert "KHR_mesh_quantization" in gltf["extensionsRequired"]
        assert gltf["accessors"][0]["componentType"] == 5122


def test_b3dm_for_old_clients(footprints, tmp_path: Path):
    out = tmp_path / "old"
    footprints_to_tileset(footprints, out, source="buildings", b3dm_mode=True, progress=False, max_per_tile=100)
    ts = json.loads((out / "tileset.json").read_text())
    assert ts["asset"]["version"] == "1.0"
    total = 0
    for _, path, _ in iter_content(out):
        assert path.suffix == ".b3dm"
        feature, batch, glb = read_b3dm(path.read_bytes())
        gltf, blob = split_glb(glb)
        mesh = mesh_local_enu(gltf, blob)
        assert feature["BATCH_LENGTH"] == len(batch["id"]) == mesh["feature_ids"].max() + 1
        total += feature["BATCH_LENGTH"]
    assert total == len(footprints)


def test_failed_export_keeps_previous_tileset(tileset: Path, tmp_path: Path):
    before = {p: p.read_bytes() for p in tileset.rglob("*") if p.is_file()}
    bad = tmp_path / "broken.gml"
    bad.write_text("<CityModel><cityObjectMember><bldg:Building")
    result = CliRunner().invoke(main, ["export-3dtiles", str(bad), "--out", str(tileset)])
    assert result.exit_code != 0
    assert {p: p.read_bytes() for p in tileset.rglob("*") if p.is_file()} == before
    assert not [p for p in tileset.parent.iterdir() if p.name.startswith(".buildings")]


def test_base_height_from_a_dem_under_each_footprint(footprints, tmp_path: Path):
    import rasterio
    from rasterio.transform import from_origin

    # a DEM in EPSG:5186 rising 1 m per 10 m northward: the ground differs across the city
    x, y = TO_M.transform(126.9779, 37.5663)
    west, north = x - 200, y + 1200
    rows, cols = 150, 120
    dem = (np.arange(rows)[::-1, None] * 1.0 + np.zeros((1, cols)) + 15.0).astype("float32")
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="float32",
                       crs="EPSG:5186", transform=from_origin(west, north, 10, 10)) as ds:
        ds.write(dem, 1)
    gdf = footprints.drop(columns=["base_height"])
    out = tmp_path / "on_dem"
    footprints_to_tileset(gdf, out, source="buildings", progress=False, dem=path)
    by_id = gdf.set_index("id")
    with rasterio.open(path) as ds:
        for _, _, gltf, blob, mesh, ecef in decoded(out):
            ids = property_strings(gltf, blob, "id")
            for fid, bid in list(enumerate(ids))[:25]:
                ring = np.asarray(by_id.loc[bid].geometry.exterior.coords)
                mx, my = TO_M.transform(ring[:, 0], ring[:, 1])
                expected = min(v[0] for v in ds.sample(zip(mx, my)))
                llh = np.column_stack(ECEF_TO_LLH.transform(*ecef[mesh["feature_ids"] == fid].T))
                assert llh[:, 2].min() == pytest.approx(expected, abs=0.02)
                assert llh[:, 2].max() == pytest.approx(expected + by_id.loc[bid, "height"], abs=0.02)
