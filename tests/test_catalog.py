"""citytwin.yaml: the starter catalog validates; a bad one names the key and the fix."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from geo.errors import CatalogError
from pipelines.catalog import add_layer_entry, load_catalog
from pipelines.cli import main


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "citytwin.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_init_writes_a_commented_catalog_that_validates(tmp_path: Path):
    result = CliRunner().invoke(main, ["init", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "p" / "citytwin.yaml").read_text()
    assert text.count("#") > 10
    cat = load_catalog(tmp_path / "p")
    assert cat.layers == {}
    again = CliRunner().invoke(main, ["init", str(tmp_path / "p")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_valid_catalog(tmp_path: Path):
    cat = load_catalog(write(tmp_path, """
layers:
  buildings:
    kind: buildings
    source: data/b.shp
    crs: EPSG:5174
    encoding: cp949
    fields: [name, height]
    minzoom: 13
    maxzoom: 16
"""))
    layer = cat.layers["buildings"]
    assert layer.source == ["data/b.shp"]
    assert cat.source_paths("buildings") == [(tmp_path / "data" / "b.shp").resolve()]
    assert (layer.crs, layer.encoding, layer.minzoom, layer.maxzoom) == ("EPSG:5174", "cp949", 13, 16)


@pytest.mark.parametrize("body, key, hint", [
    ("layers:\n  b:\n    kind: castle\n", "layers.b.kind", "buildings"),
    ("layers:\n  b:\n    crs: EPSG:999999\n", "layers.b.crs", "EPSG code"),
    ("layers:\n  b:\n    encoding: klingon\n", "layers.b.encoding", "cp949"),
    ("layers:\n  b:\n    minzoom: 16\n    maxzoom: 12\n", "layers.b", "above maxzoom"),
    ("layers:\n  b:\n    maxzoom: 40\n", "layers.b.maxzoom", "22"),
    ("layers:\n  b:\n    colour: red\n", "layers.b.colour", "unknown key"),
    ("layers:\n  Bad-Name:\n    kind: generic\n", "layers", "not allowed"),
    ("storey_height: -3\n", "storey_height", "greater than 0"),
])
def test_bad_catalog_names_key_and_fix(tmp_path: Path, body: str, key: str, hint: str):
    with pytest.raises(CatalogError) as err:
        load_catalog(write(tmp_path, body))
    msg = str(err.value)
    assert f"key '{key}'" in msg and hint in msg and "citytwin.yaml" in msg


def test_broken_yaml_and_missing_catalog(tmp_path: Path):
    with pytest.raises(CatalogError, match="no catalog here.*citytwin init"):
        load_catalog(tmp_path)
    with pytest.raises(CatalogError, match="not valid YAML at line [0-9]+"):
        load_catalog(write(tmp_path, "layers:\n  b: [unclosed\n"))


def test_add_layer_entry_keeps_comments(tmp_path: Path):
    CliRunner().invoke(main, ["init", str(tmp_path)])
    before = (tmp_path / "citytwin.yaml").read_text()
    add_layer_entry(tmp_path, "gu", {"kind": "boundaries", "source": "gu.geojson"})
    after = (tmp_path / "citytwin.yaml").read_text()
    assert after.count("#") == before.count("#")
    assert load_catalog(tmp_path).layers["gu"].kind == "boundaries"


# --- commands that write the catalog edit it structurally --------------------------------

HAND_WRITTEN = """\
# Hand-written catalog: every comment must survive an edit.
name: Comment city   # the project name
layers:
  # the districts come first
  gu:
    kind: boundaries
    source: gu.geojson   # from the city's open data portal
    fields: [code, name]
storey_height: 3.5   # a top-level key after layers
server:
  title: Kept title  # shown on the landing page
"""
COMMENTS = ["# Hand-written catalog", "# the project name", "# the districts come first",
            "# from the city's open data portal", "# a top-level key after layers", "# shown on the landing page"]


def _square(path: Path, lon: float = 126.978, lat: float = 37.566) -> Path:
    ring = [[lon, lat], [lon + 0.001, lat], [lon + 0.001, lat + 0.001], [lon, lat + 0.001], [lon, lat]]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": "11140", "name": "a"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}),
        encoding="utf-8")
    return path


def _run(*args: object):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_ingest_keeps_comments_and_keys_after_layers(tmp_path: Path):
    write(tmp_path, HAND_WRITTEN)
    code, out = _run("ingest", _square(tmp_path / "parks.geojson"), "--layer", "parks", "--kind", "boundaries",
                     "--project", tmp_path)
    assert code == 0, out
    text = (tmp_path / "citytwin.yaml").read_text(encoding="utf-8")
    for comment in COMMENTS:
        assert comment in text, comment
    data = yaml.safe_load(text)
    assert data["storey_height"] == 3.5 and data["server"] == {"title": "Kept title"}
    assert data["layers"]["gu"] == {"kind": "boundaries", "source": "gu.geojson", "fields": ["code", "name"]}
    # ingest adds the zoom range fitted to the data (a small square: boundaries from z12)
    assert data["layers"]["parks"] == {"kind": "boundaries", "source": "parks.geojson", "minzoom": 12, "maxzoom": 16}
    cat = load_catalog(tmp_path)
    assert (cat.storey_height, cat.server.title, sorted(cat.layers)) == (3.5, "Kept title", ["gu", "parks"])
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_reingest_updates_the_entry_in_place(tmp_path: Path):
    write(tmp_path, HAND_WRITTEN)
    src = _square(tmp_path / "gu.geojson")
    code, out = _run("ingest", src, "--layer", "gu", "--crs", "EPSG:4326", "--encoding", "utf-8",
                     "--project", tmp_path)
    assert code == 0, out
    assert "updated 'gu'" in out and "crs: EPSG:4326 (was not set)" in out
    text = (tmp_path / "citytwin.yaml").read_text(encoding="utf-8")
    for comment in COMMENTS:
        assert comment in text, comment
    gu = yaml.safe_load(text)["layers"]["gu"]
    assert gu == {"kind": "boundaries", "source": "gu.geojson", "fields": ["code", "name"],
                  "crs": "EPSG:4326", "encoding": "utf-8", "minzoom": 12, "maxzoom": 16}


def test_failed_ingest_leaves_the_catalog_byte_identical(tmp_path: Path):
    write(tmp_path, HAND_WRITTEN)
    before = (tmp_path / "citytwin.yaml").read_bytes()
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [{"type": "Feat', encoding="utf-8")
    code, out = _run("ingest", broken, "--layer", "parks", "--project", tmp_path)
    assert code == 2 and "broken.geojson" in out, out
    code, out = _run("ingest", _square(tmp_path / "gu2.geojson"), "--layer", "gu", "--encoding", "klingon",
                     "--project", tmp_path)
    assert code == 2 and "--encoding" in out, out
    assert (tmp_path / "citytwin.yaml").read_bytes() == before


def test_an_entry_that_would_not_validate_is_never_written(tmp_path: Path):
    write(tmp_path, HAND_WRITTEN.split("storey_height")[0])
    before = (tmp_path / "citytwin.yaml").read_bytes()
    with pytest.raises(CatalogError, match=r"key 'layers.parks.kind'"):
        add_layer_entry(tmp_path, "parks", {"kind": "castle", "source": "parks.geojson"})
    assert (tmp_path / "citytwin.yaml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["citytwin.yaml"]


def test_geotag_adds_its_layer_structurally(tmp_path: Path):
    write(tmp_path, HAND_WRITTEN)
    records = tmp_path / "places.csv"
    records.write_text("name,lon,lat\nCity Hall,126.9779,37.5663\nGate,126.9769,37.5760\n", encoding="utf-8")
    code, out = _run("geotag", records, "--layer", "places", "--project", tmp_path)
    assert code == 0, out
    text = (tmp_path / "citytwin.yaml").read_text(encoding="utf-8")
    for comment in COMMENTS:
        assert comment in text, comment
    cat = load_catalog(tmp_path)
    assert (cat.storey_height, cat.server.title) == (3.5, "Kept title")
    assert cat.layers["places"].kind == "pois" and cat.layers["gu"].source == ["gu.geojson"]


def test_starter_catalog_grows_a_block_of_layers(tmp_path: Path):
    CliRunner().invoke(main, ["init", str(tmp_path)])
    add_layer_entry(tmp_path, "gu", {"kind": "boundaries", "source": "gu.geojson", "fields": ["code", "name"]})
    text = (tmp_path / "citytwin.yaml").read_text(encoding="utf-8")
    assert "layers:\n  gu:\n    kind: boundaries\n    source: gu.geojson\n    fields: [code, name]\n" in text
    assert "description: Buildings, boundaries and places, as OGC API Features and vector tiles\n" in text


def test_raster_rerun_updates_its_entry_and_the_next_build_follows(tmp_path: Path):
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from pipelines.rasters import write_geotiff

    write(tmp_path, HAND_WRITTEN)
    grid = from_origin(197000, 552000, 10, 10)  # EPSG:5186 metres near City Hall
    write_geotiff(tmp_path / "depth_2023.tif", np.full((20, 30), 1.5, dtype="float32"), grid, "EPSG:5186")
    write_geotiff(tmp_path / "depth_2024.tif", np.full((20, 30), 2.25, dtype="float32"), grid, "EPSG:5186")
    code, out = _run("raster", tmp_path / "depth_2023.tif", "--name", "depth", "--project", tmp_path)
    assert code == 0, out
    code, out = _run("raster", tmp_path / "depth_2024.tif", "--name", "depth", "--title", "Depth 2024",
                     "--project", tmp_path)
    assert code == 0, out
    entry = yaml.safe_load((tmp_path / "citytwin.yaml").read_text(encoding="utf-8"))["layers"]["depth"]
    assert entry == {"kind": "raster", "source": "depth_2024.tif", "title": "Depth 2024"}
    code, out = _run("build", "--project", tmp_path, "--layer", "depth")
    assert code == 0, out
    with rasterio.open(tmp_path / "build" / "cog" / "depth.tif") as ds:
        assert set(np.unique(ds.read(1))) == {2.25}


def test_text_that_yaml_1_1_reads_as_something_else_is_quoted(tmp_path: Path):
    write(tmp_path, HAND_WRITTEN)
    entry = {"kind": "generic", "title": "yes", "description": "on", "source": ["0755.geojson", "0755"]}
    add_layer_entry(tmp_path, "odd", entry)
    layer = load_catalog(tmp_path).layers["odd"]
    assert (layer.title, layer.description, layer.source) == ("yes", "on", ["0755.geojson", "0755"])
