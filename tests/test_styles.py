"""The MapLibre styles in styles/: the official style-spec validator reports 0 errors.

``gl-style-validate`` comes from npm (@maplibre/maplibre-gl-style-spec), installed by
``make tools`` into $CITYTWIN_TOOLS_DIR. A deliberately broken style proves that the
check really catches errors (a validator that is not run would also say "0 errors").
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from validators import TOOLS_DIR

REPO = Path(__file__).resolve().parents[1]
STYLES = sorted((REPO / "styles").glob("*.json"))
TILEJSON_URL = re.compile(r"^/collections/([a-z][a-z0-9_]{0,62})/tiles/WebMercatorQuad/tilejson\.json$")


def _validator_cmd() -> list[str]:
    bin_link = TOOLS_DIR / "node_modules" / ".bin" / "gl-style-validate"
    if shutil.which("node") is None or not bin_link.exists():
        raise AssertionError(f"gl-style-validate is not installed under {TOOLS_DIR}; run 'make tools'")
    return [str(bin_link)]


def style_errors(path: Path) -> list[dict]:
    """The validator's errors for one style file (its --json output; empty when valid)."""
    res = subprocess.run([*_validator_cmd(), "--json", str(path)], capture_output=True, text=True, timeout=120)
    out = res.stdout.strip()
    errors = json.loads(out) if out else []
    # Its exit code and its report must agree, else we are not reading what we think.
    assert (res.returncode != 0) == bool(errors), (res.returncode, out, res.stderr)
    return errors


def test_the_expected_styles_exist():
    assert {p.stem for p in STYLES} >= {"base", "transit", "hazard", "tourism"}


@pytest.mark.parametrize("path", STYLES, ids=[p.stem for p in STYLES])
def test_style_has_no_validator_errors(path: Path):
    assert style_errors(path) == []


def test_validator_catches_a_broken_style(tmp_path: Path):
    style = json.loads((REPO / "styles" / "transit.json").read_text(encoding="utf-8"))
    style["layers"][1]["source"] = "no_such_source"
    style["layers"][2]["paint"]["line-width"] = "wide"
    style["layers"].append({"id": "background", "type": "background"})  # duplicate id
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(style), encoding="utf-8")
    messages = [e["message"] for e in style_errors(broken)]
    assert len(messages) == 3, messages
    assert any('source "no_such_source" not found' in m for m in messages)
    assert any("line-width" in m and "number expected" in m for m in messages)
    assert any("duplicate" in m for m in messages)


def test_not_json_is_an_error(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 8, "sources": {', encoding="utf-8")
    assert len(style_errors(bad)) >= 1


@pytest.mark.parametrize("path", STYLES, ids=[p.stem for p in STYLES])
def test_vector_sources_point_at_our_tilejson(path: Path):
    """Vector sources use the server-relative TileJSON URL whose layer is the source-layer."""
    style = json.loads(path.read_text(encoding="utf-8"))
    for name, source in style["sources"].items():
        if source["type"] != "vector":
            continue
        m = TILEJSON_URL.match(source["url"])
        assert m, source["url"]
        layer = m.group(1)
        for style_layer in style["layers"]:
            if style_layer.get("source") == name:
                assert style_layer["source-layer"] == layer


def test_transit_routes_take_their_gtfs_colour():
    style = json.loads((REPO / "styles" / "transit.json").read_text(encoding="utf-8"))
    routes = next(layer for layer in style["layers"] if layer["id"] == "transit-routes")
    colour = routes["paint"]["line-color"]
    assert colour[0] == "to-color" and colour[1] == ["get", "route_color"]


def test_hazard_raster_is_served_by_our_titiler_mount():
    style = json.loads((REPO / "styles" / "hazard.json").read_text(encoding="utf-8"))
    raster = [s for s in style["sources"].values() if s["type"] == "raster"]
    assert len(raster) == 1
    (template,) = raster[0]["tiles"]
    assert template.startswith("/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?")
    assert "name=flood_depth" in template


def test_layers_drawn_by_kind_validate(tmp_path: Path):
    """The layers the viewer adds for a published layer of each kind and geometry (mixed
    included) make a style the official validator accepts."""
    from api.kind_styles import PALETTE, kind_layers
    from pipelines.catalog import LayerKind

    kinds = [k for k in LayerKind.__args__ if k not in ("raster", "live", "city_model", "landmark_models")]
    sources, layers = {}, []
    for kind in kinds:
        for geometry in ("point", "line", "polygon", None):
            name = f"{kind}_{geometry or 'mixed'}"
            sources[name] = {"type": "vector", "url": f"/collections/{name}/tiles/WebMercatorQuad/tilejson.json"}
            layers += kind_layers(name, kind, geometry, PALETTE[0], name.title(), label="name")
    assert len({layer["id"] for layer in layers}) == len(layers)
    style = tmp_path / "by_kind.json"
    style.write_text(json.dumps({"version": 8, "sources": sources, "layers": layers}), encoding="utf-8")
    assert style_errors(style) == []


@pytest.mark.parametrize("store_type, family", [
    ("Point", "point"), ("MultiPoint", "point"), ("LineString", "line"), ("MultiLineString Z", "line"),
    ("Polygon", "polygon"), ("MultiPolygon Z", "polygon"), ("Unknown", None), ("GeometryCollection", None),
])
def test_store_geometry_types_map_to_what_the_viewer_draws(store_type: str, family: str | None):
    from api.kind_styles import geometry_family

    assert geometry_family(store_type) == family


@pytest.mark.parametrize("fields, label", [
    (["id", "address", "name_ko", "name"], "name"),
    (["id", "주소", "시설명"], "시설명"),  # Korean records: the facility name, not the address
    (["id", "stop_name", "routes"], "stop_name"),
    (["id", "height", "floors"], None),
])
def test_labels_come_from_a_name_field(fields: list[str], label: str | None):
    from api.kind_styles import label_field

    assert label_field(fields) == label
