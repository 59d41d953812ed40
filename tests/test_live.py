"""Live layers over real HTTP: API key, items with expiry, GeoJSON and on-the-fly vector tiles,
the watched file, the OGC collection and the audit log.

One served project (``citytwin serve``) holds the API test buildings plus two live layers:
``incidents`` (fed by POST) and ``congestion`` (a watched GeoJSON file). Expected tile
positions are computed here with morecantile; the item store is read with plain sqlite3.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import pytest

from api_server import CATALOG, CITY_HALL, make_project, serve

KEY_ID, KEY = "traffic-desk", "live-key-for-tests-4242"
LIVE_CATALOG = CATALOG + """\
  incidents:
    kind: live
    title: Traffic incidents
  congestion:
    kind: live
    title: Congestion
    source: data/congestion.geojson
api_keys_file: secrets/keys.txt
"""
TMS = morecantile.tms.get("WebMercatorQuad")


def iso(t: datetime) -> str:
    return t.isoformat()


def item(fid: str, lon: float, lat: float, lifetime_s: float = 3600, **props) -> dict:
    now = datetime.now(timezone.utc)
    return {"type": "Feature", "id": fid, "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"timestamp": iso(now), "expires": iso(now + timedelta(seconds=lifetime_s)), **props}}


def collection(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def write_live_project(root: Path) -> Path:
    """The API test city plus the two live layers and an API key file, in ``root``."""
    make_project(root)
    (root / "citytwin.yaml").write_text(LIVE_CATALOG, encoding="utf-8")
    (root / "secrets").mkdir()
    (root / "secrets" / "keys.txt").write_text(f"{KEY_ID}: {KEY}\n", encoding="utf-8")
    (root / "data").mkdir()
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_live_project(tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="module")
def base(project: Path) -> str:
    with serve(project) as url:
        yield url


def post(base: str, layer: str, body, key: str | None = KEY) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    if isinstance(body, (dict, list)):
        return httpx.post(f"{base}/live/{layer}/items", json=body, headers=headers, timeout=30)
    return httpx.post(f"{base}/live/{layer}/items", content=body, headers=headers, timeout=30)


def get_items(base: str, layer: str, **params) -> httpx.Response:
    return httpx.get(f"{base}/live/{layer}/items", params=params, timeout=30)


def ids(resp: httpx.Response) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {f["id"] for f in resp.json()["features"]}


def max_age(resp: httpx.Response) -> int:
    cc = resp.headers["cache-control"]
    return int(next(p.split("=")[1] for p in cc.split(",") if p.strip().startswith("max-age")))


def audit(project: Path) -> list[dict]:
    return [json.loads(line) for line in (project / "build" / "logs" / "audit.log").read_text().splitlines()]


def stored_rows(project: Path, layer: str) -> list[tuple[str, float]]:
    path = project / "build" / "live" / f"{layer}.sqlite"
    if not path.exists():
        return []
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT id, expires_at FROM items ORDER BY id").fetchall()
    finally:
        con.close()


def test_posting_needs_an_api_key_and_refusals_are_logged(base, project):
    body = item("no-key", *CITY_HALL)
    missing = post(base, "incidents", body, key=None)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["description"]
    wrong = post(base, "incidents", body, key="not-the-key-0000")
    assert wrong.status_code == 401 and "not valid" in wrong.json()["description"]
    assert "no-key" not in ids(get_items(base, "incidents"))
    refused = [e for e in audit(project) if e["action"] == "POST /live/incidents/items" and e["status"] == 401]
    assert [e["refused"] for e in refused[-2:]] == ["no key", "invalid key"]
    assert all(e["who"] is None for e in refused)


def test_posted_items_come_back_as_geojson_with_a_short_cache(base, project):
    lon, lat = CITY_HALL
    crash = item("crash-1", lon + 0.002, lat + 0.001, kind="crash", lanes_closed=1, detail={"by": "cctv"})
    jam = {"type": "Feature", "id": "jam-1",
           "geometry": {"type": "LineString", "coordinates": [[lon - 0.01, lat - 0.01], [lon - 0.008, lat - 0.012]]},
           "properties": item("x", 0, 0)["properties"] | {"kind": "congestion", "speed_kmh": 8.5}}
    resp = post(base, "incidents", collection(crash, jam))
    assert resp.status_code == 201, resp.text
    assert resp.json()["stored"] == 2 and resp.json()["ids"] == ["crash-1", "jam-1"]

    everything = get_items(base, "incidents")
    assert {"crash-1", "jam-1"} <= ids(everything)
    assert everything.headers["content-type"].startswith("application/geo+json")
    assert 0 <= max_age(everything) <= 30
    got = next(f for f in everything.json()["features"] if f["id"] == "crash-1")
    assert got["geometry"]["coordinates"] == pytest.approx([lon + 0.002, lat + 0.001])
    assert got["properties"]["kind"] == "crash" and got["properties"]["detail"] == {"by": "cctv"}
    assert datetime.fromisoformat(got["properties"]["expires"]) == \
        datetime.fromisoformat(crash["properties"]["expires"])
    # bbox: a box around the crash only (the jam's line lies ~1 km south-west)
    near = get_items(base, "incidents", bbox=f"{lon},{lat},{lon + 0.004},{lat + 0.003}")
    assert "crash-1" in ids(near) and "jam-1" not in ids(near)
    # a later post with the same id replaces the item
    moved = item("crash-1", lon + 0.003, lat + 0.001, kind="crash", lanes_closed=2)
    assert post(base, "incidents", moved).status_code == 201
    again = next(f for f in get_items(base, "incidents").json()["features"] if f["id"] == "crash-1")
    assert again["properties"]["lanes_closed"] == 2 and again["geometry"]["coordinates"][0] == \
        pytest.approx(lon + 0.003)
    # who, when and what
    entry = [e for e in audit(project) if e.get("status") == 201 and e.get("layer") == "incidents"][-1]
    assert entry["who"] == KEY_ID and entry["ids"] == ["crash-1"] and entry["stored"] == 1 and entry["time"]
    assert KEY not in (project / "build" / "logs" / "audit.log").read_text()


@pytest.mark.parametrize("mutate,status,needle", [
    (lambda f: f["properties"].pop("expires"), 400, "properties.expires is missing"),
    (lambda f: f["properties"].update(expires="2020-01-01T00:00:00Z"), 400, "is not after timestamp"),
    (lambda f: f["properties"].update(expires="2099-01-01T00:00:00"), 400, "has no UTC offset"),
    (lambda f: f["properties"].update(timestamp="yesterday"), 400, "is not an ISO 8601 time"),
    (lambda f: f.update(geometry=None), 400, "has no geometry"),
    (lambda f: f.update(geometry={"type": "Point", "coordinates": [200000.0, 550000.0]}), 400, "longitude/latitude"),
])
def test_bad_items_are_refused_and_nothing_is_written(base, project, mutate, status, needle):
    before = stored_rows(project, "incidents")
    good = item("good-in-same-post", *CITY_HALL)
    bad = item("bad-1", *CITY_HALL)
    mutate(bad)
    resp = post(base, "incidents", collection(good, bad))
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["description"] and "item 2 (id 'bad-1')" in resp.json()["description"]
    assert stored_rows(project, "incidents") == before  # not even the good item of the same post


@pytest.mark.parametrize("layer,body,status,needle", [
    ("Bad-Name", None, 400, "is not allowed"),
    ("x%3Bdrop%20table%20items", None, 400, "is not allowed"),
    ("nowhere", None, 404, "not in"),
    ("buildings", None, 404, "not a live one"),
    ("incidents", b"{not json", 400, "not JSON"),
    ("incidents", b'{"type": "Point", "coordinates": [0, 0]}', 400, "Feature or FeatureCollection"),
    ("incidents", b'{"type": "FeatureCollection", "features": []}', 400, "holds no features"),
])
def test_bad_layers_and_bodies(base, project, layer, body, status, needle):
    before = stored_rows(project, "incidents")
    resp = post(base, layer, body if body is not None else item("z", *CITY_HALL))
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["description"]
    assert stored_rows(project, "incidents") == before
    assert not (project / "build" / "live" / "buildings.sqlite").exists()
    if status == 400 and body is None:
        assert get_items(base, layer).status_code == 400


def test_an_item_disappears_when_it_expires_and_is_purged_on_write(base, project):
    lon, lat = CITY_HALL
    short = item("short-lived", lon - 0.001, lat, lifetime_s=2)
    long_ = item("long-lived", lon - 0.001, lat + 0.0005)
    assert post(base, "incidents", collection(short, long_)).status_code == 201
    expires = datetime.fromisoformat(short["properties"]["expires"])
    first = get_items(base, "incidents")
    if datetime.fromisoformat(first.json()["timeStamp"]) < expires - timedelta(seconds=1):
        assert "short-lived" in ids(first)
        assert max_age(first) <= 2  # a cache must not keep it past its expiry
    deadline = time.monotonic() + 60
    while "short-lived" in ids(get_items(base, "incidents")) and time.monotonic() < deadline:
        time.sleep(0.5)
    later = get_items(base, "incidents")
    assert "short-lived" not in ids(later) and "long-lived" in ids(later)
    assert datetime.now(timezone.utc) >= expires
    # Filtered at read time; the next write purges the row itself.
    assert "short-lived" in [r[0] for r in stored_rows(project, "incidents")]
    resp = post(base, "incidents", item("trigger", lon, lat))
    assert resp.json()["purged"] >= 1
    assert "short-lived" not in [r[0] for r in stored_rows(project, "incidents")]


def _pixel(lon: float, lat: float, tile: morecantile.Tile, extent: int = 4096) -> tuple[float, float]:
    """Tile-local coordinates, y up (mapbox_vector_tile.decode's default)."""
    b = TMS.xy_bounds(tile)
    mx, my = TMS.xy(lon, lat)
    return (mx - b.left) / (b.right - b.left) * extent, (my - b.bottom) / (b.top - b.bottom) * extent


def test_vector_tile_holds_the_item_with_etag_and_short_cache(base):
    lon, lat = CITY_HALL[0] + 0.0042, CITY_HALL[1] - 0.0021
    assert post(base, "incidents", item("tile-probe", lon, lat, kind="roadworks", lanes_closed=1)).status_code == 201
    tile = TMS.tile(lon, lat, 16)
    resp = httpx.get(f"{base}/live/incidents/tiles/16/{tile.x}/{tile.y}", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert 0 <= max_age(resp) <= 30
    layer = mapbox_vector_tile.decode(resp.content)["incidents"]
    feat = next(f for f in layer["features"] if f["properties"]["id"] == "tile-probe")
    assert feat["properties"]["kind"] == "roadworks" and feat["properties"]["lanes_closed"] == 1
    px, py = _pixel(lon, lat, tile, layer["extent"])
    assert feat["geometry"]["coordinates"] == pytest.approx([px, py], abs=1.0)
    etag = resp.headers["etag"]
    same = httpx.get(f"{base}/live/incidents/tiles/16/{tile.x}/{tile.y}", headers={"If-None-Match": etag},
                     timeout=30)
    assert same.status_code == 304
    # A tile far from every item is empty; a malformed address is a 400; off the grid a 404.
    far = TMS.tile(CITY_HALL[0] + 1.0, CITY_HALL[1] + 1.0, 16)
    assert httpx.get(f"{base}/live/incidents/tiles/16/{far.x}/{far.y}", timeout=30).status_code == 204
    assert httpx.get(f"{base}/live/incidents/tiles/16/x/1", timeout=30).status_code == 400
    assert httpx.get(f"{base}/live/incidents/tiles/2/4/0", timeout=30).status_code == 404
    # A changed item changes the tile's ETag.
    assert post(base, "incidents", item("tile-probe", lon, lat, kind="roadworks", lanes_closed=2)).status_code == 201
    changed = httpx.get(f"{base}/live/incidents/tiles/16/{tile.x}/{tile.y}", headers={"If-None-Match": etag},
                        timeout=30)
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def _write_watched(project: Path, payload: dict, bump_ns: int) -> None:
    path = project / "data" / "congestion.geojson"
    path.write_text(json.dumps(payload), encoding="utf-8")
    # The reload follows mtime/size; make the change visible even on coarse-mtime file systems.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_ns))


def test_watched_file_updates_show_up(base, project):
    lon, lat = CITY_HALL
    _write_watched(project, collection(item("seg-1", lon, lat + 0.003, level="heavy")), 1_000_000_000)
    assert ids(get_items(base, "congestion")) == {"seg-1"}
    _write_watched(project, collection(item("seg-2", lon + 0.001, lat + 0.003, level="slow"),
                                       item("seg-3", lon + 0.002, lat + 0.003, level="heavy")), 2_000_000_000)
    got = get_items(base, "congestion").json()["features"]
    assert {f["id"]: f["properties"]["level"] for f in got} == {"seg-2": "slow", "seg-3": "heavy"}
    # Posts and the file coexist: a posted item stays when the file changes again.
    assert post(base, "congestion", item("manual-1", lon, lat)).status_code == 201
    bad = collection(item("seg-4", lon, lat))
    del bad["features"][0]["properties"]["expires"]
    _write_watched(project, bad, 3_000_000_000)
    assert ids(get_items(base, "congestion")) == {"seg-2", "seg-3", "manual-1"}  # a bad file changes nothing
    _write_watched(project, collection(), 4_000_000_000)
    assert ids(get_items(base, "congestion")) == {"manual-1"}
    reloads = [e for e in audit(project) if e["action"] == "reload" and e["layer"] == "congestion"]
    assert [e["status"] for e in reloads[-4:]] == ["ok", "ok", "error", "ok"]
    assert "properties.expires is missing" in reloads[-2]["error"]
    assert reloads[-3]["stored"] == 2 and reloads[-3]["who"].startswith("file:")


def test_live_layers_are_ogc_collections(base):
    assert post(base, "incidents", item("ogc-1", *CITY_HALL, kind="crash")).status_code == 201
    cols = {c["id"] for c in httpx.get(f"{base}/collections?f=json", timeout=30).json()["collections"]}
    assert {"incidents", "congestion", "buildings"} <= cols
    items = httpx.get(f"{base}/collections/incidents/items", params={"f": "json", "limit": 1000}, timeout=30)
    assert items.status_code == 200, items.text
    assert "ogc-1" in {f["id"] for f in items.json()["features"]}
    one = httpx.get(f"{base}/collections/incidents/items/ogc-1", params={"f": "json"}, timeout=30)
    assert one.status_code == 200 and one.json()["properties"]["kind"] == "crash"
    assert httpx.get(f"{base}/collections/incidents/items/nope", params={"f": "json"},
                     timeout=30).status_code == 404
