"""Ingest input that a first user meets: correct accents, rounding at ±180, broken rings, bad .prj."""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from pyproj import Transformer
from shapely.geometry import box

from test_ingest import project, run, store_path  # noqa: F401 (project is a fixture)

# Natural Earth style names in UTF-8: Latin accents that once read as 'Korean mojibake'
# ('Äq' and 'Ål' are valid CP949 byte pairs), beside real Korean text.
NAMES = ["Äquatorialguinea", "Côte d'Ivoire", "São Tomé and Príncipe", "Curaçao", "Åland", "대한민국", "서울특별시"]


def stored(project: Path, layer: str) -> gpd.GeoDataFrame:
    return pyogrio.read_dataframe(store_path(project), layer=layer)


def countries() -> gpd.GeoDataFrame:
    cells = [box(10 + 2 * i, 0, 11 + 2 * i, 1) for i in range(len(NAMES))]
    return gpd.GeoDataFrame({"NAME_DE": NAMES, "NAME": NAMES}, geometry=cells, crs=4326)


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_correct_utf8_accents_and_korean_are_not_mojibake(project: Path, suffix: str):
    path = project / f"countries{suffix}"
    pyogrio.write_dataframe(countries(), path)
    code, out = run("ingest", str(path), "--layer", "countries", "--kind", "boundaries", "--project", str(project))
    assert code == 0, out
    assert "Korean text" not in out
    assert stored(project, "countries")["NAME_DE"].tolist() == NAMES


def write_geojson(path: Path, features: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def polygon(name: str, ring: list[list[float]]) -> dict:
    return {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def test_rounding_hair_past_180_is_clamped_and_counted(project: Path):
    hair = 180.00000000000006  # what a reprojection round trip leaves on the antimeridian
    path = write_geojson(project / "fiji.geojson", [
        polygon("east", [[179.0, -17.0], [hair, -17.0], [hair, -16.0], [179.0, -16.0], [179.0, -17.0]]),
        polygon("inside", [[178.0, -18.0], [178.5, -18.0], [178.5, -17.5], [178.0, -18.0]]),
    ])
    code, out = run("ingest", str(path), "--layer", "fiji", "--kind", "boundaries", "--project", str(project))
    assert code == 0, out
    assert "coordinates: 1 feature lay up to 1e-09 degrees past ±180/±90 (rounding); clamped onto the limit" in out
    got = stored(project, "fiji")
    assert got.total_bounds.tolist() == [178.0, -18.0, 180.0, -16.0]
    assert len(got) == 2


def test_real_out_of_range_longitude_is_refused(project: Path):
    path = write_geojson(project / "far.geojson", [
        polygon("far", [[179.0, 1.0], [180.001, 1.0], [180.001, 2.0], [179.0, 1.0]]),
    ])
    code, out = run("ingest", str(path), "--layer", "far", "--project", str(project))
    assert code == 2, out
    assert out.startswith(f"error: {path}: coordinates in EPSG:4326 do not map to valid longitude/latitude")
    assert "(got bounds (179.0, 1.0, 180.001, 2.0))" in out
    assert "Traceback" not in out
    assert not store_path(project).exists()


def test_ring_of_two_points_is_dropped_with_its_feature_named(project: Path):
    path = write_geojson(project / "gu.geojson", [
        polygon("ok", [[127.0, 37.5], [127.01, 37.5], [127.01, 37.51], [127.0, 37.5]]),
        polygon("two points", [[127.0, 37.5], [127.01, 37.5]]),
        polygon("ok too", [[127.1, 37.5], [127.11, 37.5], [127.11, 37.51], [127.1, 37.5]]),
    ])
    code, out = run("ingest", str(path), "--layer", "gu", "--kind", "boundaries", "--project", str(project))
    assert code == 0, out
    assert "Traceback" not in out and "GEOSException" not in out
    assert ("geometry: 0 repaired, 1 dropped (no geometry, or degenerate: fewer than 3 distinct points "
            "or zero area)") in out
    assert f"warning: {path}: dropped feature 1 (counting from 0)" in out
    assert stored(project, "gu")["name"].tolist() == ["ok", "ok too"]


NONSENSE_WKT = 'PROJCS["nonsense",FOO[1,2]]'


@pytest.mark.parametrize("prj_bytes", [bytes(range(256))[::7] * 3, NONSENSE_WKT.encode()],
                         ids=["random bytes", "nonsense WKT"])
def test_unreadable_prj_is_named_and_declared_crs_reads_it(project: Path, prj_bytes: bytes):
    x, y = 198000.0, 551000.0  # near Seoul City Hall in EPSG:5186
    shp = project / "blds.shp"
    pyogrio.write_dataframe(gpd.GeoDataFrame({"n": [1]}, geometry=[box(x, y, x + 20, y + 10)], crs=5186), shp)
    shp.with_suffix(".prj").write_bytes(prj_bytes)
    code, out = run("ingest", str(shp), "--layer", "blds", "--project", str(project))
    assert code == 2, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {shp.with_suffix('.prj')}: this .prj could not be read")
    assert "--crs" in lines[0] and "no .prj" not in lines[0]

    code, out = run("ingest", str(shp), "--layer", "blds", "--crs", "EPSG:5186", "--project", str(project))
    assert code == 0, out
    corners = np.array([(x, y), (x + 20, y), (x + 20, y + 10), (x, y + 10)])
    truth = np.column_stack(Transformer.from_crs(5186, 4326, always_xy=True).transform(corners[:, 0], corners[:, 1]))
    got = np.asarray(stored(project, "blds").geometry.iloc[0].exterior.coords)[:-1]
    assert np.allclose(np.sort(got, axis=0), np.sort(truth, axis=0), atol=1e-9)
