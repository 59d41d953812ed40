"""MapLibre GL JS (the viewer's own copy, from npm) opens a collection's vector tiles two ways,
as a map client that knows nothing of this server would: through its TileJSON, and through its
OGC API Tiles tile set metadata (the tile URL template of the 'item' link, the zoom levels of
tileMatrixSetLimits, the boundingBox). Both must draw the features the store holds."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyogrio
import pytest

from api_server import serve
from browser import chromium_page

pytestmark = pytest.mark.browser
LOAD_TIMEOUT_MS = 120_000

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="{base}/viewer/vendor/maplibre-gl/dist/maplibre-gl.css">
<style>html,body,#map{{margin:0;width:100%;height:100%}}</style></head>
<body><div id="map"></div>
<script type="module">
import {{ Map }} from "{base}/viewer/vendor/maplibre-gl/dist/maplibre-gl.mjs";
window.__openLayer = async (mode, layer) => {{
  let source, bounds;
  if (mode === "tilejson") {{
    const url = "{base}/collections/" + layer + "/tiles/WebMercatorQuad/tilejson.json";
    const tj = await (await fetch(url)).json();
    source = {{type: "vector", url}};
    bounds = tj.bounds;
  }} else {{
    const ts = await (await fetch("{base}/collections/" + layer + "/tiles/WebMercatorQuad?f=json")).json();
    const item = ts.links.find(l => l.rel === "item" && l.type === "application/vnd.mapbox-vector-tile");
    const zooms = ts.tileMatrixSetLimits.map(l => Number(l.tileMatrix));
    const tiles = item.href.replace("{{tileMatrix}}", "{{z}}").replace("{{tileRow}}", "{{y}}").replace("{{tileCol}}", "{{x}}");
    bounds = [...ts.boundingBox.lowerLeft, ...ts.boundingBox.upperRight];
    source = {{type: "vector", tiles: [tiles], minzoom: Math.min(...zooms), maxzoom: Math.max(...zooms), bounds}};
  }}
  const map = new Map({{container: "map", style: {{version: 8, sources: {{}}, layers: []}}, bounds, fitBoundsOptions: {{padding: 20}}}});
  await new Promise(r => map.on("load", r));
  map.addSource("s", source);
  map.addLayer({{id: "fill", type: "fill", source: "s", "source-layer": layer, paint: {{"fill-color": "#c33"}}}});
  await new Promise(r => map.once("idle", r));
  const seen = new Set(map.queryRenderedFeatures({{layers: ["fill"]}}).map(f => f.properties.name_en));
  window.__result = {{names: [...seen].sort(), zoom: map.getZoom()}};
}};
window.__ready = true;
</script></body></html>
"""


@pytest.fixture(scope="module")
def base(built_sample_city: Path) -> Iterator[str]:
    with serve(built_sample_city) as url:
        yield url


@pytest.mark.parametrize("mode", ["tilejson", "ogc-tileset"])
def test_maplibre_draws_a_collection(base: str, built_sample_city: Path, mode: str) -> None:
    gpkg = built_sample_city / "build" / "citytwin.gpkg"
    expected = sorted(pyogrio.read_dataframe(gpkg, layer="gu", read_geometry=False)["name_en"])
    with chromium_page() as (page, record):
        page.goto(f"{base}/conformance?f=json")  # a page of this origin with nothing to load
        page.set_content(PAGE.format(base=base))
        page.wait_for_function("window.__ready === true", timeout=LOAD_TIMEOUT_MS)
        page.evaluate("([mode, layer]) => window.__openLayer(mode, layer)", [mode, "gu"])
        page.wait_for_function("window.__result !== undefined", timeout=LOAD_TIMEOUT_MS)
        result = page.evaluate("window.__result")
    assert result["names"] == expected, result
    assert record.problems == []
