"""Real OGC API Features clients against ``citytwin serve``: GDAL's OAPIF driver (through
pyogrio) and OWSLib. If they can list and page through every feature, so can QGIS and
ArcGIS, which use the same protocol."""
from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import shapely
from owslib.ogcapi.features import Features

from api_server import make_project, serve


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("oapifproj")
    layers = make_project(root)
    with serve(root) as url:
        yield url, layers


def test_gdal_oapif_lists_the_collections(served):
    url, layers = served
    listed = {str(name): str(gtype) for name, gtype in pyogrio.list_layers(f"OAPIF:{url}")}
    assert set(listed) == set(layers) | {"catalog"}  # the layers, and the OGC API Records catalog of them
    assert listed["buildings"] == "Polygon"


def test_gdal_oapif_reads_every_feature(served):
    url, layers = served
    src = layers["buildings"]
    # GDAL follows the server's paging links until numberMatched features are read.
    df = pyogrio.read_dataframe(f"OAPIF:{url}", layer="buildings")
    assert len(df) == len(src)
    assert set(df["id"]) == set(src["id"])
    got = df.set_index("id").loc[src["id"]]
    np.testing.assert_allclose(got["height"].to_numpy(), src["height"].to_numpy())
    assert all(shapely.equals_exact(got.geometry.values, src.geometry.values, 1e-9))


def test_gdal_oapif_bbox_filter(served):
    url, layers = served
    src = layers["buildings"]
    bbox = (126.9750, 37.5640, 126.9810, 37.5690)
    df = pyogrio.read_dataframe(f"OAPIF:{url}", layer="buildings", bbox=bbox)
    expected = set(src.loc[src.intersects(shapely.box(*bbox)), "id"])
    # GDAL sends the bbox to the server, then also filters the result itself: same set.
    assert set(df["id"]) == expected


def test_owslib_lists_collections_and_reads_items(served):
    url, layers = served
    api = Features(url)
    ids = {c["id"] for c in api.collections()["collections"]}
    assert ids == set(layers) | {"catalog"}
    src = layers["buildings"]
    page = api.collection_items("buildings", limit=50, offset=100)
    assert page["numberMatched"] == len(src)
    assert len(page["features"]) == 50
    item = api.collection_item("buildings", "bld-0123")
    row = src.set_index("id").loc["bld-0123"]
    assert item["properties"]["name"] == row["name"]
    assert item["properties"]["height"] == pytest.approx(row["height"])
    lm = api.collection_items("landmarks")
    assert sorted(f["properties"]["name"] for f in lm["features"]) == sorted(layers["landmarks"]["name"])
    queryables = api.collection_queryables("buildings")
    assert {"name", "height"} <= set(queryables["properties"])
