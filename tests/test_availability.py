"""Parking and EV chargers with live availability, over a real ``citytwin serve``.

Three live layers with ``availability`` on the API test city: ``parking`` polled from a CSV and
``chargers`` from a JSON document (both served by a small HTTP server in this test, whose
answers the tests change), and ``ev_posts`` fed by API-key POSTs. Expectations come from what
the tests send (expiry = updated + stale_after_s, worked out here), tile positions from
morecantile, rooftop heights from the test city's own buildings with shapely.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import pytest
import shapely

from api_server import CATALOG, CITY_HALL, make_project, serve, wait_for

KEY_ID, KEY = "parking-desk", "availability-key-for-tests-77"
TMS = morecantile.tms.get("WebMercatorQuad")
STALE_S = 600


class Source:
    """A tiny HTTP server whose documents the tests replace while the citytwin server polls them."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[bytes, str]] = {}
        self.hits: dict[str, int] = {}
        docs, hits = self.docs, self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                hits[self.path] = hits.get(self.path, 0) + 1
                body, kind = docs.get(self.path, (b"not here", "text/plain"))
                self.send_response(200 if self.path in docs else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def now_iso(seconds_ago: float = 0) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")


def lots_csv(rows: list[tuple]) -> bytes:
    lines = ["lot,x,y,spaces,vacant,state,ts,title"]
    lines += [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


CSV_ROWS = [  # lot, lon, lat, spaces, vacant, state, updated, title
    ("P1", 126.9790, 37.5670, 120, 35, "OPEN", None, "City Hall car park"),
    ("P2", 126.9770, 37.5655, 40, 0, "FULL", None, "Deoksugung lot"),
    ("P3", 126.9800, 37.5660, 60, 60, "CLOSED", None, "Plaza underground"),
]


def csv_now(rows: list[tuple]) -> tuple[bytes, list[tuple]]:
    stamped = [(*r[:6], now_iso(30), r[7]) for r in rows]
    return lots_csv(stamped), stamped


def chargers_json(stations: list[dict]) -> bytes:
    return json.dumps({"data": {"stations": stations}}).encode()


@pytest.fixture(scope="module")
def source() -> Source:
    src = Source()
    yield src
    src.server.shutdown()


@pytest.fixture(scope="module")
def project(tmp_path_factory, source: Source) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("availability")
    layers = make_project(root)
    (root / "citytwin.yaml").write_text(CATALOG + f"""\
  parking:
    kind: live
    title: Parking
    availability:
      category: parking
      poll:
        url: {source.url}/parking.csv
        format: csv
        interval_s: 5
        fields: {{id: lot, lon: x, lat: y, capacity: spaces, free: vacant, status: state, updated: ts, name: title}}
        statuses: {{OPEN: available, FULL: full, CLOSED: closed}}
  chargers:
    kind: live
    title: EV chargers
    availability:
      category: ev_charging
      poll:
        url: {source.url}/chargers.json
        records: data.stations
        interval_s: 5
        max_bytes: 4000
  ev_posts:
    kind: live
    title: Posted chargers
    availability: {{category: ev_charging, stale_after_s: {STALE_S}}}
api_keys_file: secrets/keys.txt
""", encoding="utf-8")
    (root / "secrets").mkdir()
    (root / "secrets" / "keys.txt").write_text(f"{KEY_ID}: {KEY}\n", encoding="utf-8")
    return root, layers


@pytest.fixture(scope="module")
def base(project: tuple[Path, dict], source: Source) -> str:
    source.docs["/parking.csv"] = (csv_now(CSV_ROWS)[0], "text/csv")
    source.docs["/chargers.json"] = (chargers_json([
        {"id": "C1", "lon": 126.9782, "lat": 37.5668, "capacity": 4, "free": 1, "updated": time.time() - 10},
    ]), "application/json")
    with serve(project[0]) as url:
        yield url


def place(fid: str, lon: float, lat: float, capacity, free, **props) -> dict:
    return {"type": "Feature", "id": fid, "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"capacity": capacity, "free": free, **props}}


def post(base: str, layer: str, body, key: str | None = KEY) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(f"{base}/live/{layer}/items", json=body, headers=headers, timeout=30)


def items(base: str, layer: str) -> dict:
    r = httpx.get(f"{base}/live/{layer}/items", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


# -- catalog ------------------------------------------------------------------------------
@pytest.mark.parametrize("entry,needle", [
    ("    kind: pois\n    availability: {category: parking}\n", "availability is for layers of kind live"),
    ("    kind: live\n    availability: {poll: {url: data/lots.csv}}\n", "is not an http(s) URL"),
    ("    kind: live\n    availability: {poll: {url: 'http://x/a.csv', statuses: {OPEN: open}}}\n", "available"),
])
def test_catalog_refuses_misplaced_availability(tmp_path: Path, entry: str, needle: str):
    from geo.errors import CatalogError
    from pipelines.catalog import load_catalog

    (tmp_path / "citytwin.yaml").write_text(f"layers:\n  lots:\n{entry}", encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_catalog(tmp_path)
    assert needle in str(err.value) and "lots" in str(err.value)


# -- posts ----------------------------------------------------------------------------------
def test_posting_places_needs_a_key(base: str):
    body = place("nokey", *CITY_HALL, 4, 2, updated=now_iso())
    for key in (None, "not-a-key-at-all"):
        r = post(base, "ev_posts", body, key=key)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("ApiKey"), r.text
    assert "nokey" not in {f["id"] for f in items(base, "ev_posts")["features"]}


def test_posted_places_are_served_as_items_features_tiles_and_anchors(base: str, project: tuple[Path, dict]):
    buildings = project[1]["buildings"]
    roof_building = buildings.iloc[5]
    on_roof = roof_building.geometry.representative_point()
    off = (126.9745, 37.5690)
    assert not buildings.geometry.contains(shapely.Point(off)).any(), "the open-air charger stands on the ground"
    updated = now_iso(60)
    r = post(base, "ev_posts", {"type": "FeatureCollection", "features": [
        place("E1", on_roof.x, on_roof.y, 6, 2, status="available", updated=updated, name="Rooftop chargers"),
        place("E2", *off, 2, 0, updated=updated, operator="kepco"),
    ]})
    assert r.status_code == 201, r.text
    expires = datetime.fromisoformat(updated) + timedelta(seconds=STALE_S)
    got = {f["id"]: f for f in items(base, "ev_posts")["features"]}
    for fid, capacity, free, status in (("E1", 6, 2, "available"), ("E2", 2, 0, "full")):
        props = got[fid]["properties"]
        assert (props["capacity"], props["free"], props["status"], props["category"]) == \
            (capacity, free, status, "ev_charging")
        assert datetime.fromisoformat(props["updated"]) == datetime.fromisoformat(updated)
        assert datetime.fromisoformat(props["expires"]) == expires
    assert got["E2"]["properties"]["operator"] == "kepco"

    ogc = httpx.get(f"{base}/collections/ev_posts/items", params={"f": "json", "limit": 100}, timeout=30)
    assert ogc.status_code == 200, ogc.text
    ogc_props = {f["id"]: f["properties"] for f in ogc.json()["features"]}
    assert (ogc_props["E1"]["free"], ogc_props["E2"]["status"]) == (2, "full")

    tile = TMS.tile(*off, 16)
    t = httpx.get(f"{base}/live/ev_posts/tiles/16/{tile.x}/{tile.y}", timeout=30)
    assert t.status_code == 200, t.text
    decoded = mapbox_vector_tile.decode(t.content)["ev_posts"]["features"]
    assert [(f["properties"]["free"], f["properties"]["capacity"], f["properties"]["status"])
            for f in decoded if f["properties"].get("operator") == "kepco"] == [(0, 2, "full")]

    pad = 0.001
    bbox = f"{min(on_roof.x, off[0]) - pad},{min(on_roof.y, off[1]) - pad},{max(on_roof.x, off[0]) + pad}," \
           f"{max(on_roof.y, off[1]) + pad}"
    a = httpx.get(f"{base}/ar/anchors", params={"bbox": bbox, "types": "availability", "terrain": "none"},
                  timeout=30)
    assert a.status_code == 200, a.text
    anchors = {(x["layer"], x["id"]): x for x in a.json()["items"]}
    assert all(x["type"] == "availability" for x in anchors.values())
    e1, e2 = anchors[("ev_posts", "E1")], anchors[("ev_posts", "E2")]
    assert (e1["surface"], e1["height"]) == ("rooftop", pytest.approx(float(roof_building["height"]), abs=1e-3))
    assert (e2["surface"], e2["height"], e2["free"], e2["capacity"], e2["status"]) == ("terrain", 0.0, 0, 2, "full")
    assert e1["name"] == "Rooftop chargers" and e1["category"] == "ev_charging"


@pytest.mark.parametrize("props,geometry,needle", [
    ({"capacity": 10, "free": 12}, None, "free 12 is more than capacity 10"),
    ({"capacity": 10, "free": 2, "status": "maybe"}, None, "status 'maybe' is not one of available, full"),
    ({"capacity": -1, "free": 0}, None, "capacity must be a whole number from 0"),
    ({"capacity": 10, "free": 2.5}, None, "free must be a whole number"),
    ({"capacity": 10, "free": 2, "updated": "2024-07-01T09:30:00"}, None, "updated must be an ISO 8601 time with an "
                                                                          "offset"),
    ({"capacity": 10, "free": 2, "updated": "2999-01-01T00:00:00Z"}, None, "is in the future"),
    ({"capacity": 10, "free": 2}, {"type": "LineString", "coordinates": [[126.97, 37.56], [126.98, 37.57]]},
     "a place needs a Point geometry"),
])
def test_bad_places_are_refused_naming_the_item(base: str, props: dict, geometry, needle: str):
    feature = place("bad", *CITY_HALL, **{"updated": now_iso(), **props})
    if geometry is not None:
        feature["geometry"] = geometry
    r = post(base, "ev_posts", {"type": "FeatureCollection", "features": [place("fine", *CITY_HALL, 3, 1,
                                                                                 updated=now_iso()), feature]})
    assert r.status_code == 400 and needle in r.json()["description"], r.text
    assert "item 2 (id 'bad')" in r.json()["description"]
    assert not {"bad", "fine"} & {f["id"] for f in items(base, "ev_posts")["features"]}


# -- polls ----------------------------------------------------------------------------------
def test_polled_csv_and_json_places_show_up(base: str, source: Source):
    def parking() -> dict | None:
        """the CSV's places in /live/parking/items"""
        body = items(base, "parking")
        return body if len(body["features"]) == len(CSV_ROWS) else None

    body = wait_for(parking)
    got = {f["id"]: f for f in body["features"]}
    status = {"OPEN": "available", "FULL": "full", "CLOSED": "closed"}
    for lot, lon, lat, spaces, vacant, state, _, title in CSV_ROWS:
        f = got[lot]
        assert f["geometry"]["coordinates"] == [lon, lat]
        assert (f["properties"]["capacity"], f["properties"]["free"], f["properties"]["status"],
                f["properties"]["name"]) == (spaces, vacant, status[state], title)
    assert body["poll"]["error"] is None and body["poll"]["stored"] == 3
    assert body["poll"]["url"].endswith("/parking.csv")

    def chargers() -> dict | None:
        """the JSON's charger in /live/chargers/items"""
        found = items(base, "chargers")["features"]
        return found[0] if found else None

    c1 = wait_for(chargers)
    assert (c1["id"], c1["properties"]["free"], c1["properties"]["capacity"], c1["properties"]["status"]) == \
        ("C1", 1, 4, "available")


def test_a_bad_poll_is_reported_and_keeps_the_last_good_places(base: str, source: Source):
    wait_for(lambda: len(items(base, "parking")["features"]) == len(CSV_ROWS))
    before = {f["id"]: f["properties"]["free"] for f in items(base, "parking")["features"]}
    bad_rows = [CSV_ROWS[0], ("P2", 126.977, 37.5655, 40, "lots", "OPEN", None, "x")]
    source.docs["/parking.csv"] = (csv_now(bad_rows)[0], "text/csv")

    def refused() -> dict | None:
        """the poll status names the bad record"""
        poll = items(base, "parking")["poll"]
        return poll if poll["error"] else None

    poll = wait_for(refused)
    assert "/parking.csv: record 2 (id 'P2'): free must be a whole number" in poll["error"], poll
    assert poll["error"].endswith("kept the last good places")
    assert {f["id"]: f["properties"]["free"] for f in items(base, "parking")["features"]} == before

    # too large for the chargers' max_bytes of 4000: refused by size, last good charger kept
    big = [{"id": f"C{i}", "lon": 126.978, "lat": 37.5668, "capacity": 4, "free": 1, "updated": time.time() - 5}
           for i in range(200)]
    source.docs["/chargers.json"] = (chargers_json(big), "application/json")
    poll = wait_for(lambda: (p := items(base, "chargers")["poll"])["error"] and p)
    assert "over the limit of 4,000" in poll["error"] and "max_bytes" in poll["error"]
    assert [f["id"] for f in items(base, "chargers")["features"]] == ["C1"]

    # fixed: the new counts replace the old places (P3 gone, P1 changed)
    source.docs["/parking.csv"] = (csv_now([(*CSV_ROWS[0][:4], 7, *CSV_ROWS[0][5:])])[0], "text/csv")
    wait_for(lambda: {f["id"]: f["properties"]["free"] for f in items(base, "parking")["features"]} == {"P1": 7})
    assert items(base, "parking")["poll"]["error"] is None


def test_the_audit_log_has_the_polls_and_posts(base: str, project: tuple[Path, dict]):
    wait_for(lambda: len(items(base, "parking")["features"]) >= 1)
    lines = [json.loads(x) for x in (project[0] / "build" / "logs" / "audit.log").read_text().splitlines()]
    polls = [x for x in lines if x.get("action") == "poll" and x.get("layer") == "parking"]
    assert polls and {x["status"] for x in polls} <= {"ok", "error"} and polls[0]["who"].startswith("poll:http")
    assert any(x.get("who") == KEY_ID and x.get("layer") == "ev_posts" for x in lines)


# -- viewer ---------------------------------------------------------------------------------
def test_the_viewer_draws_places_by_availability(base: str, tmp_path: Path):
    from test_styles import style_errors

    layers = {entry["id"]: entry for entry in httpx.get(f"{base}/viewer/layers.json", timeout=30).json()["layers"]}
    style = layers["parking"]["style"]
    circle = next(s for s in style if s["type"] == "circle")
    assert circle["paint"]["circle-color"][:2] == ["match", ["get", "status"]]
    assert next(s for s in style if s["type"] == "symbol")["layout"]["text-field"] == ["to-string", ["get", "free"]]
    assert layers["parking"]["tiles"] == "/live/parking/tiles/{z}/{x}/{y}"
    doc = tmp_path / "availability.json"
    doc.write_text(json.dumps({"version": 8, "sources": {"parking": {"type": "vector", "tiles": [
        "http://localhost/live/parking/tiles/{z}/{x}/{y}"]}}, "layers": style}), encoding="utf-8")
    assert style_errors(doc) == []


# -- polled documents, without a server -----------------------------------------------------
@pytest.mark.parametrize("doc,records,needle", [
    (b"\xff\xfe{}", None, "not UTF-8 text"),
    (b'{"data": [', None, "not JSON"),
    (b'{"data": {"stations": {}}}', "data.stations", "the places must be a JSON list (found dict)"),
    (b'{"data": {}}', "data.stations", "no key 'stations' on the path 'data.stations'"),
    (b"[" * 100_000 + b"]" * 100_000, None, "not JSON"),
    (b'[{"id": "A", "lon": 127, "lat": 37.5, "capacity": 3}]', None, "'free', 'updated' missing or empty"),
    (b'[{"id": "A", "lon": "east", "lat": 37.5, "capacity": 3, "free": 1, "updated": 1700000000}]', None,
     "record 1: 'lon' must be a number"),
    (b'[{"id": "A", "lon": 127, "lat": 37.5, "capacity": 3, "free": 1, "updated": 99}]', None,
     "updated '99' is not POSIX seconds between 2000 and 2100"),
])
def test_bad_polled_documents_name_the_fault(doc: bytes, records: str | None, needle: str):
    from geo.errors import SourceError
    from pipelines.availability import read_places
    from pipelines.catalog import AvailabilityConfig

    spec = AvailabilityConfig.model_validate({"poll": {"url": "http://example.org/p.json", "records": records}})
    with pytest.raises(SourceError) as err:
        read_places(doc, spec, "http://example.org/p.json")
    assert str(err.value).startswith("http://example.org/p.json: ") and needle in str(err.value), str(err.value)


def test_too_many_polled_places_are_refused():
    from geo.errors import SourceError
    from pipelines.availability import read_places
    from pipelines.catalog import AvailabilityConfig
    from pipelines.live import MAX_ITEMS_PER_WRITE

    spec = AvailabilityConfig.model_validate({"poll": {"url": "http://example.org/p.json"}})
    doc = json.dumps([{"id": i, "lon": 127, "lat": 37.5, "capacity": 1, "free": 1, "updated": time.time()}
                      for i in range(MAX_ITEMS_PER_WRITE + 1)]).encode()
    with pytest.raises(SourceError, match=f"{MAX_ITEMS_PER_WRITE + 1:,} places; at most {MAX_ITEMS_PER_WRITE:,}"):
        read_places(doc, spec, "http://example.org/p.json")


# -- several server processes poll once -----------------------------------------------------
def test_two_workers_poll_from_one_process(tmp_path: Path, source: Source):
    root = tmp_path / "workers"
    make_project(root)
    (root / "citytwin.yaml").write_text(CATALOG + f"""\
  lots:
    kind: live
    availability: {{poll: {{url: '{source.url}/workers.json', interval_s: 5}}}}
""", encoding="utf-8")
    source.docs["/workers.json"] = (json.dumps([{"id": "W1", "lon": 126.978, "lat": 37.566, "capacity": 9,
                                                 "free": 4, "updated": time.time()}]).encode(), "application/json")
    agents: list[str] = []
    handler = source.server.RequestHandlerClass
    original = handler.do_GET

    def recording(self) -> None:
        if self.path == "/workers.json":
            agents.append(self.headers.get("User-Agent", ""))
        original(self)

    handler.do_GET = recording
    try:
        with serve(root, extra_args=("--workers", "2"), timeout=180) as url:
            wait_for(lambda: len(agents) >= 3, timeout=60)
            assert [f["id"] for f in items(url, "lots")["features"]] == ["W1"]
    finally:
        handler.do_GET = original
    assert len(set(agents)) == 1 and agents[0].startswith("citytwin-availability (pid "), agents
