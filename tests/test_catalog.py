"""citytwin.yaml: the starter catalog validates; a bad one names the key and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest
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
