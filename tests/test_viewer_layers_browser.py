"""The viewer on a project far from Seoul whose layers no style in styles/ names.

The project is made with the real commands a first-day user runs (init, geotag, ingest of a
GeoJSON and of a small GTFS feed, build) around downtown San Francisco. The page must draw
every published layer by its kind (queried with queryRenderedFeatures), list each catalog
title once, show them in the legend, open on the data, and keep the view in the URL hash.
"""
from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from api_server import run_citytwin, serve
from browser import chromium_page, save_screenshot
from test_viewer_browser import LOAD_TIMEOUT_MS, _assert_clean

pytestmark = pytest.mark.browser

POIS = [  # name, lon, lat
    ("Ferry Building", -122.3937, 37.7955), ("Union Square", -122.4075, 37.7880),
    ("Coit Tower", -122.4058, 37.8024), ("Salesforce Park", -122.3965, 37.7897),
    ("Yerba Buena Gardens", -122.4024, 37.7846), ("Transamerica Pyramid", -122.4028, 37.7952),
]
AREAS = {  # name -> (west, south, east, north)
    "Survey north": (-122.4100, 37.7990, -122.4040, 37.8040),
    "Survey south": (-122.4060, 37.7820, -122.3990, 37.7870),
    "Survey east": (-122.3960, 37.7900, -122.3910, 37.7950),
}
STOPS = [("A", "Embarcadero", -122.3972, 37.7929), ("B", "Montgomery", -122.4016, 37.7894),
         ("C", "Powell", -122.4079, 37.7844)]
ROUTE_COLOUR = "0055AA"
AREAS_TITLE = "Survey areas (2024)"


def _feed(path: Path) -> Path:
    stops = "stop_id,stop_name,stop_lon,stop_lat\n" + "".join(f"{i},{n},{x},{y}\n" for i, n, x, y in STOPS)
    files = {
        "agency.txt": "agency_name,agency_url,agency_timezone\nBay Line,https://example.org,America/Los_Angeles\n",
        "stops.txt": stops,
        "routes.txt": "route_id,route_short_name,route_long_name,route_type,route_color\n"
                      f"R1,1,Market line,1,{ROUTE_COLOUR}\n",
        "trips.txt": "route_id,service_id,trip_id\nR1,WK,T1\nR1,WK,T2\n",
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                          "T1,08:00:00,08:00:00,A,1\nT1,08:05:00,08:05:00,B,2\nT1,08:10:00,08:10:00,C,3\n"
                          "T2,09:00:00,09:00:00,A,1\nT2,09:05:00,09:05:00,B,2\nT2,09:10:00,09:10:00,C,3\n",
        "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
                        "WK,1,1,1,1,1,0,0,20240101,20241231\n",
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def _areas(path: Path) -> Path:
    features = [{"type": "Feature", "properties": {"name": name},
                 "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}
                for name, (w, s, e, n) in AREAS.items()]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sf")
    project = root / "p"
    run_citytwin("init", str(project))
    pois = root / "pois.csv"
    pois.write_text("name,lon,lat\n" + "".join(f"{n},{x},{y}\n" for n, x, y in POIS), encoding="utf-8")
    run_citytwin("geotag", str(pois), "--layer", "pois", "--project", str(project))
    run_citytwin("ingest", str(_areas(root / "areas.geojson")), "--layer", "survey_areas", "--kind", "generic",
                 "--project", str(project))
    feed = _feed(root / "bayline.zip")
    run_citytwin("ingest", str(feed), "--layer", "bayline", "--project", str(project))
    # the same feed under the name styles/transit.json draws: its overlay, shown at first
    run_citytwin("ingest", str(feed), "--layer", "transit", "--project", str(project))
    catalog = project / "citytwin.yaml"  # one layer titled by hand, the others by their name
    catalog.write_text(catalog.read_text(encoding="utf-8").replace(
        "  survey_areas:\n", f"  survey_areas:\n    title: {AREAS_TITLE}\n", 1), encoding="utf-8")
    run_citytwin("build", "--project", str(project))
    return project


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[str]:
    with serve(project) as base:
        yield base


def _titles(project: Path) -> dict[str, str]:
    layers = yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))["layers"]
    return {name: cfg.get("title") or name.replace("_", " ").capitalize() for name, cfg in layers.items()}


def _data_bbox() -> tuple[float, float, float, float]:
    xs = [x for _, x, _ in POIS] + [s[2] for s in STOPS] + [b[i] for b in AREAS.values() for i in (0, 2)]
    ys = [y for _, _, y in POIS] + [s[3] for s in STOPS] + [b[i] for b in AREAS.values() for i in (1, 3)]
    return min(xs), min(ys), max(xs), max(ys)


def _open(page, url: str) -> dict:
    page.goto(url)
    page.wait_for_function("window.__viewerState && (window.__viewerState.loaded"
                           " || window.__viewerState.errors.length > 0)", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function("window.citytwinViewer.map.loaded()", timeout=LOAD_TIMEOUT_MS)
    return page.evaluate("window.__viewerState")


RENDERED = """(layer) => { const m = window.citytwinViewer.map;
    if (!m.getLayer(layer)) return null;
    const features = m.queryRenderedFeatures({layers: [layer]});
    const names = new Set(features.map(f => String(f.properties.name ?? f.properties.id)));
    return [...names].sort(); }"""
VIEW = """(() => { const m = window.citytwinViewer.map; const c = m.getCenter();
    return {lng: c.lng, lat: c.lat, zoom: m.getZoom(), hash: location.hash}; })()"""


def test_every_layer_is_drawn_by_kind_titled_from_the_catalog(server: str, project: Path) -> None:
    titles = _titles(project)
    with chromium_page() as (page, record):
        state = _open(page, f"{server}/viewer/")
        save_screenshot(page, "viewer_layers.png")
        rendered = {layer: page.evaluate(RENDERED, layer) for layer in
                    ("pois-circle", "survey_areas-fill", "bayline_stops-circle", "bayline_routes-line",
                     "bayline_departures-circle", "transit-routes", "transit-stops")}
        route_colour = page.evaluate("""(() => { const m = window.citytwinViewer.map;
            const id = 'bayline_routes-line';
            const f = m.getLayer(id) && m.queryRenderedFeatures({layers: [id]})[0];
            return f ? f.layer.paint['line-color'].toString() : null; })()""")
        listed = page.locator("#layer-list label").all_inner_texts()
        overlay_listed = page.locator("#overlay-list label").all_inner_texts()
        legend = page.locator("#legend ul.catalog-layers li").all_inner_texts()
        toggles = page.locator("#layer-list input[type=checkbox]").evaluate_all(
            "els => Object.fromEntries(els.map(e => [e.dataset.group, e.checked]))")
        page_overlays = {"transit": page.locator("#overlay-list input[data-overlay=transit]").evaluate_all(
            "els => Object.fromEntries(els.map(e => [e.dataset.group, e.checked]))")}

    _assert_clean(record)
    assert state["errors"] == []
    # Each layer by its kind: points as circles, areas filled, routes as lines in their GTFS colour.
    assert rendered["pois-circle"] == sorted(n for n, _, _ in POIS)
    assert rendered["survey_areas-fill"] == sorted(AREAS)
    assert rendered["bayline_stops-circle"] == sorted(i for i, _, _, _ in STOPS)  # stops carry stop_name, not name
    assert rendered["bayline_routes-line"] == ["R1"]
    r, g, b = (int(ROUTE_COLOUR[i:i + 2], 16) for i in (0, 2, 4))
    assert route_colour == f"rgba({r},{g},{b},1)"
    # Layers a validated style draws keep that style, shown at first.
    assert rendered["transit-routes"] == ["R1"] and rendered["transit-stops"] == sorted(i for i, _, _, _ in STOPS)
    assert page_overlays["transit"] == {"Transit routes": True, "Transit stops": True}
    # Departures (one point per stop and hour) are listed but start hidden.
    assert rendered["bayline_departures-circle"] == []
    assert toggles[titles["bayline_departures"]] is False
    # Every catalog layer has its title in the layer list and the legend, in catalog order, once.
    drawn = ["pois", "survey_areas", "bayline_stops", "bayline_routes", "bayline_departures"]
    assert set(titles) == set(drawn) | {"transit_stops", "transit_routes", "transit_departures"}
    # transit_departures: no style draws it, so it is drawn by kind like bayline_departures
    by_kind = [name for name in titles if name in drawn or name == "transit_departures"]
    assert legend == [titles[name] for name in by_kind]
    panel = [text.replace("(not published)", "").strip() for text in listed + overlay_listed]
    for name in drawn:
        assert panel.count(titles[name]) == 1, (titles[name], panel)
    assert len(panel) == len(set(panel)), panel


def test_opens_on_the_data_and_keeps_the_view_in_the_hash(server: str) -> None:
    west, south, east, north = _data_bbox()
    with chromium_page() as (page, record):
        state = _open(page, f"{server}/viewer/")
        opened = page.evaluate(VIEW)
        # A reload with that hash opens at the hash, not on the data.
        page.goto(f"{server}/viewer/#15.5/37.7700/-122.4500/0/30")
        page.reload()
        page.wait_for_function("window.__viewerState && window.__viewerState.loaded", timeout=LOAD_TIMEOUT_MS)
        hashed = page.evaluate(VIEW)
        # A hash MapLibre refuses (latitude 100) is no view: the map opens on the data again.
        page.goto(f"{server}/viewer/#14/100/-122.4")
        page.reload()
        page.wait_for_function("window.__viewerState && window.__viewerState.loaded", timeout=LOAD_TIMEOUT_MS)
        refused = page.evaluate(VIEW)
    _assert_clean(record)
    assert state["errors"] == []
    assert west <= opened["lng"] <= east and south <= opened["lat"] <= north, (opened, (west, south, east, north))
    assert opened["zoom"] >= 12  # the layers' lowest tile zoom: the data is drawn, not an empty map
    zoom, lat, lng = (float(v) for v in opened["hash"].lstrip("#").split("/")[:3])
    assert (lat, lng) == pytest.approx((opened["lat"], opened["lng"]), abs=1e-3)
    assert zoom == pytest.approx(opened["zoom"], abs=0.01)
    assert (hashed["lng"], hashed["lat"], hashed["zoom"]) == pytest.approx((-122.45, 37.77, 15.5), abs=1e-6)
    assert (refused["lng"], refused["lat"], refused["zoom"]) == pytest.approx(
        (opened["lng"], opened["lat"], opened["zoom"]), abs=1e-6)


def test_layer_list_names_every_published_layer_and_their_extent(server: str, project: Path) -> None:
    doc = httpx.get(f"{server}/viewer/layers.json", timeout=30).json()
    titles = _titles(project)
    assert [(e["id"], e["title"]) for e in doc["layers"]] == list(titles.items())
    kinds = {e["id"]: (e["kind"], e["geometry"]) for e in doc["layers"]}
    assert kinds["pois"] == ("pois", "point") and kinds["survey_areas"] == ("generic", "polygon")
    assert kinds["bayline_routes"] == ("transit", "line") and kinds["bayline_stops"] == ("transit", "point")
    assert doc["bbox"] == pytest.approx(list(_data_bbox()), abs=1e-6)
    # every style layer reads its own layer, and the first one opens the popup
    for entry in doc["layers"]:
        assert {(l["source"], l["source-layer"]) for l in entry["style"]} == {(entry["id"], entry["id"])}
        assert entry["style"][0]["metadata"]["citytwin:popup"] is True


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[str]:
    from test_live import write_live_project

    with serve(write_live_project(tmp_path_factory.mktemp("live"))) as base:
        yield base


def test_live_items_are_drawn(live_server: str) -> None:
    """A live layer (items posted, no file behind it at start) is drawn like any other layer."""
    from test_live import collection, item, post

    # Around Seoul City Hall, where the project's stored layers are (the map opens there).
    posted = [item(f"incident-{i}", 126.9780 + dx, 37.5665 + dy, kind="crash")
              for i, (dx, dy) in enumerate([(0.0, 0.0), (0.003, 0.002), (-0.004, -0.001)])]
    assert post(live_server, "incidents", collection(*posted)).status_code == 201
    with chromium_page() as (page, record):
        state = _open(page, f"{live_server}/viewer/")
        rendered = page.evaluate(RENDERED, "incidents-point-circle")
        legend = page.locator("#legend ul.catalog-layers li").all_inner_texts()
        # An item posted while the page is open shows up without a reload: live tiles carry a
        # short max-age, and MapLibre asks again for a tile once it has expired.
        late = item("incident-late", 126.9770, 37.5672, kind="fire")
        assert post(live_server, "incidents", collection(late)).status_code == 201
        page.wait_for_function(f"({RENDERED})('incidents-point-circle').includes('incident-late')",
                               timeout=LOAD_TIMEOUT_MS)
    _assert_clean(record)  # the empty congestion layer's tiles are 204s, not errors
    assert state["errors"] == []
    assert rendered == sorted(f["id"] for f in posted)
    assert legend == ["Traffic incidents", "Congestion"]
