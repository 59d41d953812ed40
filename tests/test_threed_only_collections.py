"""Layers that exist only as 3D Tiles (placed landmark models, city models) are collections too:
listed in /collections with their GeoVolumes link and 3D extent, described at /collections/{id}."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from pyproj import Geod, Transformer

from api_server import serve, serve_output

GEOVOLUMES_REL = "http://www.opengis.net/def/rel/ogc/1.0/3d-geovolumes"
CRS84H = "http://www.opengis.net/def/crs/OGC/0/CRS84h"


@pytest.fixture(scope="module")
def base(built_sample_city: Path) -> Iterator[str]:
    with serve(built_sample_city) as url:
        yield url


def test_landmark_models_are_listed_and_described(base: str, built_sample_city: Path) -> None:
    catalog = yaml.safe_load((built_sample_city / "citytwin.yaml").read_text(encoding="utf-8"))
    (model,) = catalog["layers"]["landmark_models"]["models"]
    listed = {c["id"]: c for c in httpx.get(f"{base}/collections?f=json").json()["collections"]}
    assert "landmark_models" in listed and "buildings" in listed
    one = httpx.get(f"{base}/collections/landmark_models?f=json")
    assert one.status_code == 200
    doc = one.json()
    assert doc == listed["landmark_models"]
    assert doc["title"] == catalog["layers"]["landmark_models"]["title"]
    rels = [lk["rel"] for lk in doc["links"]]
    assert "items" in rels  # the placed models, as points
    assert doc["itemType"] == "feature"
    (link,) = [lk for lk in doc["links"] if lk["rel"] == GEOVOLUMES_REL]
    assert link["href"] == f"{base}/collections/landmark_models/3dtiles/tileset.json"
    tileset = httpx.get(link["href"])
    assert tileset.status_code == 200
    # The 3D extent holds the tileset's root sphere, and so the model's catalog position.
    x, y, z, r = tileset.json()["root"]["boundingVolume"]["sphere"]
    lon, lat, h = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True).transform(x, y, z)
    assert doc["extent"]["vertical"]["vrs"] == CRS84H
    (box,) = doc["extent"]["spatial"]["bbox"]
    (heights,) = doc["extent"]["vertical"]["interval"]
    bbox = [box[0], box[1], heights[0], box[2], box[3], heights[1]]
    geod = Geod(ellps="WGS84")
    assert bbox[2] == pytest.approx(h - r, abs=1e-3) and bbox[5] == pytest.approx(h + r, abs=1e-3)
    for az, (blon, blat) in ((90, (bbox[3], lat)), (270, (bbox[0], lat)), (0, (lon, bbox[4])), (180, (lon, bbox[1]))):
        _, _, dist = geod.inv(lon, lat, blon, blat)
        assert r <= dist <= 1.01 * r, f"bbox edge at azimuth {az} is {dist:.1f} m from the centre, radius {r:.1f}"
    assert bbox[0] <= model["lon"] <= bbox[3] and bbox[1] <= model["lat"] <= bbox[4]
    assert 10 < r < 60  # sized by the gate, not by its quantized integers


def test_unknown_and_feature_collections_are_unchanged(base: str) -> None:
    assert httpx.get(f"{base}/collections/nope?f=json").status_code == 404
    buildings = httpx.get(f"{base}/collections/buildings?f=json").json()
    assert "items" in [lk["rel"] for lk in buildings["links"]]
    assert GEOVOLUMES_REL in [lk["rel"] for lk in buildings["links"]]


def test_start_up_does_not_call_3d_only_layers_unpublished(base: str, built_sample_city: Path) -> None:
    assert httpx.get(f"{base}/collections/landmark_models?f=json").status_code == 200
    assert "not published" not in serve_output(built_sample_city)
