"""GTFS-Realtime over the Caltrain schedule: real protobuf feeds built with the bindings library,
polled by a real ``citytwin serve`` from a local HTTP server, or loaded with ``citytwin realtime``.

Every expectation comes from the feed the test built or from the zip's text tables (csv
module): vehicle positions and bearings, route names and colours, alert texts, and the next
departures with their real-time estimates, computed here with GTFS service-day rules.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import mapbox_vector_tile
import morecantile
import numpy as np
import pytest
from click.testing import CliRunner
from google.transit import gtfs_realtime_pb2 as rt

from api_server import SERVER_PIDS, serve, wait_for
from gtfs_rt_feeds import CALTRAIN, FeedServer, message, table, vehicles_along_shapes
from pipelines.cli import main

pytestmark = pytest.mark.realdata("gtfs", "caltrain-2017-07-24.zip")
TZ = ZoneInfo("America/Los_Angeles")
TMS = morecantile.tms.get("WebMercatorQuad")
CATALOG = """\
name: realtime test
layers:
  vehicles: {{kind: live, title: Caltrain vehicles}}
  alerts: {{kind: live, title: Caltrain alerts}}
realtime:
  caltrain:
    vehicle_positions: {url}/vehicles.pb
    trip_updates: {url}/trips.pb
    alerts: {url}/alerts.pb
    vehicles_layer: vehicles
    alerts_layer: alerts
    interval_s: 1
    max_age_s: 600
    max_bytes: 2000000
"""


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def feeds():
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory, feeds: FeedServer) -> Path:
    root = tmp_path_factory.mktemp("realtime")
    (root / "citytwin.yaml").write_text(CATALOG.format(url=feeds.url), encoding="utf-8")
    code, out = run("ingest", str(CALTRAIN), "--layer", "caltrain", "--project", str(root))
    assert code == 0, out
    code, out = run("build", "--project", str(root))
    assert code == 0, out
    return root


@pytest.fixture(scope="module")
def base(project: Path):
    with serve(project) as url:
        yield url


def vehicles(base: str) -> dict[str, dict]:
    r = httpx.get(f"{base}/collections/vehicles/items", params={"limit": 5000, "f": "json"}, timeout=30)
    assert r.status_code == 200, r.text
    return {f["id"]: f for f in r.json()["features"]}


def status(base: str, kind: str) -> dict:
    return httpx.get(f"{base}/transit/realtime", timeout=30).json()["realtime"]["caltrain"]["feeds"][kind]


def check_vehicles(served: dict[str, dict], expected: dict[str, dict]) -> None:
    assert set(served) == set(expected)
    for vid, exp in expected.items():
        f = served[vid]
        lon, lat = f["geometry"]["coordinates"]
        # protobuf positions are 32-bit floats: compare with the value as float32 holds it
        assert (lon, lat) == pytest.approx((float(np.float32(exp["lon"])), float(np.float32(exp["lat"]))), abs=1e-9)
        p = f["properties"]
        assert p["bearing"] == pytest.approx(exp["bearing"], abs=0.06)
        for key in ("trip_id", "route_id", "route_short_name", "route_color", "label", "occupancy_status"):
            assert p[key] == exp[key], (vid, key)


def test_polled_vehicles_show_in_items_and_live_tiles_and_move(base: str, feeds: FeedServer):
    now = int(time.time())
    feeds.feeds["/vehicles.pb"], expected = vehicles_along_shapes(now, 40)
    served = wait_for(lambda: (v := vehicles(base)) and len(v) == 40 and v)
    check_vehicles(served, expected)
    # the live tile holding a vehicle draws it where the feed put it
    exp = expected["veh-5"]
    tile = TMS.tile(exp["lon"], exp["lat"], 14)
    r = httpx.get(f"{base}/live/vehicles/tiles/14/{tile.x}/{tile.y}", timeout=30)
    assert r.status_code == 200
    layer = mapbox_vector_tile.decode(r.content)["vehicles"]
    feat = next(f for f in layer["features"] if f["properties"]["id"] == "veh-5")
    bounds = TMS.xy_bounds(tile)
    x, y = TMS.xy(exp["lon"], exp["lat"])
    want = ((x - bounds.left) / (bounds.right - bounds.left) * 4096, (y - bounds.bottom) / (bounds.top - bounds.bottom) * 4096)
    assert feat["geometry"]["coordinates"] == pytest.approx(list(want), abs=1.0)
    assert feat["properties"]["route_short_name"] == exp["route_short_name"]
    # the next feed moves them
    feeds.feeds["/vehicles.pb"], moved = vehicles_along_shapes(now + 5, 40, step=1)
    served = wait_for(lambda: (v := vehicles(base)) and v["veh-0"]["geometry"]["coordinates"][0] ==
                      pytest.approx(float(np.float32(moved["veh-0"]["lon"])), abs=1e-9) and v)
    check_vehicles(served, moved)
    assert status(base, "vehicle_positions")["loaded"] == 40
    # the live tile follows the move (a tile the server kept must not outlive the write)
    exp = moved["veh-5"]
    tile = TMS.tile(exp["lon"], exp["lat"], 14)
    r = httpx.get(f"{base}/live/vehicles/tiles/14/{tile.x}/{tile.y}", timeout=30)
    feat = next(f for f in mapbox_vector_tile.decode(r.content)["vehicles"]["features"]
                if f["properties"]["id"] == "veh-5")
    bounds = TMS.xy_bounds(tile)
    x, y = TMS.xy(exp["lon"], exp["lat"])
    want = ((x - bounds.left) / (bounds.right - bounds.left) * 4096, (y - bounds.bottom) / (bounds.top - bounds.bottom) * 4096)
    assert feat["geometry"]["coordinates"] == pytest.approx(list(want), abs=1.0)


def test_feed_layers_are_not_cached_past_the_next_feed(base: str, feeds: FeedServer):
    """The catalog names ``vehicles`` and ``alerts`` as the feed's layers: their items and tiles say
    no-cache (a browser keeping a vehicle tile for 15 s would show a feed every 10 s late), and an
    unchanged tile still revalidates to a 304 by its ETag."""
    now = int(time.time())
    feeds.feeds["/vehicles.pb"], expected = vehicles_along_shapes(now, 40)
    wait_for(lambda: len(vehicles(base)) == 40)
    exp = expected["veh-5"]
    tile = TMS.tile(exp["lon"], exp["lat"], 14)
    for path in ("/live/vehicles/items", f"/live/vehicles/tiles/14/{tile.x}/{tile.y}", "/live/alerts/items"):
        r = httpx.get(base + path, timeout=30)
        assert r.status_code == 200, (path, r.status_code)
        assert r.headers["cache-control"] == "no-cache", path
    r = httpx.get(f"{base}/live/vehicles/tiles/14/{tile.x}/{tile.y}", timeout=30)
    again = httpx.get(f"{base}/live/vehicles/tiles/14/{tile.x}/{tile.y}",
                      headers={"If-None-Match": r.headers["etag"]}, timeout=30)
    assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"


def _wait_refused(base: str, kind: str, needle: str) -> dict:
    return wait_for(lambda: (s := status(base, kind))["error"] and needle in s["error"] and s)


def test_broken_feeds_are_reported_and_the_last_good_vehicles_stay(base: str, feeds: FeedServer):
    now = int(time.time())
    good, expected = vehicles_along_shapes(now + 10, 30, step=2)
    feeds.feeds["/vehicles.pb"] = good
    wait_for(lambda: len(vehicles(base)) == 30)
    # for another static feed: most trips unknown
    foreign = rt.FeedMessage.FromString(vehicles_along_shapes(now + 11, 30)[0])
    for e in foreign.entity[:20]:
        e.vehicle.trip.trip_id = f"MUNI-{e.id}"
    feeds.feeds["/vehicles.pb"] = foreign.SerializeToString()
    s = _wait_refused(base, "vehicle_positions", "20 of 30 entities name ids the static feed 'caltrain' lacks")
    assert "trip_id 'MUNI-veh-0'" in s["error"]
    check_vehicles(vehicles(base), expected)
    # stale: the header is older than max_age_s (600)
    feeds.feeds["/vehicles.pb"] = vehicles_along_shapes(now - 3600, 30)[0]
    assert "stale" in _wait_refused(base, "vehicle_positions", "s old, over max_age_s 600")["error"]
    check_vehicles(vehicles(base), expected)
    # truncated bytes
    feeds.feeds["/vehicles.pb"] = vehicles_along_shapes(now + 12, 30)[0][:-7]
    _wait_refused(base, "vehicle_positions", "not a complete GTFS-Realtime message (cut short")
    check_vehicles(vehicles(base), expected)
    # a feed over max_bytes (2 MB here) is not read past the bound
    feeds.feeds["/vehicles.pb"] = b"\x12" * 3_000_000
    _wait_refused(base, "vehicle_positions", "3,000,000 bytes, over the limit of 2,000,000")
    check_vehicles(vehicles(base), expected)
    # the feed served, back again unchanged: no longer in error
    feeds.feeds["/vehicles.pb"] = good
    wait_for(lambda: status(base, "vehicle_positions")["error"] is None)
    check_vehicles(vehicles(base), expected)
    # and a good feed after them is taken again
    feeds.feeds["/vehicles.pb"], expected = vehicles_along_shapes(now + 20, 12)
    wait_for(lambda: len(vehicles(base)) == 12)
    assert status(base, "vehicle_positions")["error"] is None


def test_a_50_mb_feed_is_refused_without_the_memory(base: str, feeds: FeedServer, tmp_path: Path):
    """A real 50 MB protobuf, streamed without a Content-Length: the bound holds on the bytes read,
    the poller stops reading just past it, and the server's peak memory barely moves."""
    big = message(int(time.time()))
    one = vehicles_along_shapes(int(time.time()), 1)[0]
    entity = rt.FeedMessage.FromString(one).entity[0]
    entity.vehicle.vehicle.label = "x" * 2000
    size = len(entity.SerializeToString())
    for i in range(50_000_000 // size + 1):
        e = big.entity.add()
        e.CopyFrom(entity)
        e.id = f"v{i}"
    path = tmp_path / "big.pb"
    path.write_bytes(big.SerializeToString())
    assert path.stat().st_size > 50_000_000
    del big
    feeds.feeds["/vehicles.pb"] = vehicles_along_shapes(int(time.time()) + 30, 12)[0]
    wait_for(lambda: len(vehicles(base)) == 12)
    pid = SERVER_PIDS[base]
    hwm = lambda: int(next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines()  # noqa: E731
                           if l.startswith("VmHWM")).split()[1]) * 1024
    before = hwm()
    feeds.feeds["/vehicles.pb"] = path
    s = _wait_refused(base, "vehicle_positions", "bytes, over the limit of 2,000,000")
    read = int(re.search(r"over ([\d,]+) bytes", s["error"]).group(1).replace(",", ""))
    assert 2_000_000 < read <= 2_000_000 + (1 << 16)  # one chunk past the bound, not 50 MB
    assert hwm() - before < 10_000_000, (before, hwm())
    assert len(vehicles(base)) == 12  # the last good feed still serves


def test_alerts_keep_entities_periods_and_every_language(base: str, feeds: FeedServer):
    now = int(time.time())
    stops = {s["stop_id"]: s for s in table("stops.txt")}
    msg = message(now)
    e = msg.entity.add()
    e.id = "track-work"
    a = e.alert
    a.cause, a.effect = rt.Alert.MAINTENANCE, rt.Alert.REDUCED_SERVICE
    for stop in ("70011", "70012"):
        a.informed_entity.add().stop_id = stop
    a.informed_entity.add().route_id = "Bu-129"
    p = a.active_period.add()
    p.start, p.end = now - 60, now + 7200
    for lang, text in (("en", "Track work at San Francisco"), ("es", "Obras en la vía en San Francisco")):
        t = a.header_text.translation.add()
        t.language, t.text = lang, text
    t = a.description_text.translation.add()
    t.language, t.text = "en", "Trains leave from the other platform."
    feeds.feeds["/alerts.pb"] = msg.SerializeToString()

    def served():
        r = httpx.get(f"{base}/collections/alerts/items", params={"f": "json"}, timeout=30)
        return {f["id"]: f for f in r.json()["features"]} if r.status_code == 200 else {}

    items = wait_for(lambda: (x := served()) and len(x) == 2 and x)
    assert set(items) == {"track-work/stops", "track-work/routes"}
    pts = sorted(map(tuple, items["track-work/stops"]["geometry"]["coordinates"]))
    assert pts == sorted((float(stops[s]["stop_lon"]), float(stops[s]["stop_lat"])) for s in ("70011", "70012"))
    assert items["track-work/routes"]["geometry"]["type"] in ("LineString", "MultiLineString")
    for f in items.values():
        props = f["properties"]
        assert props["header_text"] == {"en": "Track work at San Francisco", "es": "Obras en la vía en San Francisco"}
        assert props["description_text"] == {"en": "Trains leave from the other platform."}
        assert props["informed_entities"] == [{"stop_id": "70011"}, {"stop_id": "70012"}, {"route_id": "Bu-129"}]
        assert props["active_periods"] == [{"start": now - 60, "end": now + 7200}]
        assert (props["cause"], props["effect"]) == ("MAINTENANCE", "REDUCED_SERVICE")


# -- next departures with TripUpdates, against an independent timetable -----------------------
def _date(s: str) -> dt.date:
    return dt.datetime.strptime(s, "%Y%m%d").date()


def active_services(day: dt.date) -> set[str]:
    days = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    out = {c["service_id"] for c in table("calendar.txt")
           if c[days[day.weekday()]] == "1" and _date(c["start_date"]) <= day <= _date(c["end_date"])}
    for e in table("calendar_dates.txt"):
        if _date(e["date"]) == day:
            (out.add if e["exception_type"] == "1" else out.discard)(e["service_id"])
    return out


def posix(day: dt.date, hms: str) -> int:
    """GTFS time on a service day: seconds after local noon minus 12 h."""
    h, m, s = map(int, hms.split(":"))
    noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=TZ)
    return int(noon.timestamp()) - 12 * 3600 + h * 3600 + m * 60 + s


def expected_departures(stop: str, at: int, per_route: int, delays: dict[tuple[str, str], dict[int, int]]) -> list:
    """(trip, scheduled, estimated, delay) of the next departures per route: delays maps
    (trip, service date) to {stop_sequence: delay} for the stops a TripUpdate covers."""
    trips = {t["trip_id"]: t for t in table("trips.txt")}
    local = dt.datetime.fromtimestamp(at, TZ).date()
    cands = []
    for day in (local - dt.timedelta(days=1), local, local + dt.timedelta(days=1)):
        services = active_services(day)
        for st in table("stop_times.txt"):
            t = trips[st["trip_id"]]
            if st["stop_id"] != stop or t["service_id"] not in services:
                continue
            sched = posix(day, st["departure_time"])
            delay = delays.get((st["trip_id"], day.strftime("%Y%m%d")), {}).get(int(st["stop_sequence"]))
            est = None if delay is None else sched + delay
            if (est if est is not None else sched) >= at:
                cands.append((est if est is not None else sched, st["trip_id"], t["route_id"], sched, est, delay))
    cands.sort()
    taken: dict[str, int] = {}
    out = []
    for _, trip, route, sched, est, delay in cands:
        if taken.get(route, 0) < per_route:
            taken[route] = taken.get(route, 0) + 1
            out.append((trip, sched, est, delay))
    return out


def served_board(departures: list[dict]) -> list:
    """(trip, scheduled, estimated, delay) of served departures, times as POSIX seconds."""
    def posix_of(text: str | None) -> int | None:
        return None if text is None else int(dt.datetime.fromisoformat(text).timestamp())
    return [(d["trip_id"], posix_of(d["scheduled"]), posix_of(d["estimated"]), d["delay_s"]) for d in departures]


def trip_update(msg: rt.FeedMessage, trip: str, start_date: str, seq: int, *, delay: int | None = None,
                time_: int | None = None) -> None:
    e = msg.entity.add()
    e.id = f"tu-{trip}"
    tu = e.trip_update
    tu.trip.trip_id, tu.trip.start_date = trip, start_date
    u = tu.stop_time_update.add()
    u.stop_sequence = seq
    if delay is not None:
        u.departure.delay = delay
    else:
        u.departure.time = time_


def stop_times_of(trip: str) -> list[dict]:
    return sorted((s for s in table("stop_times.txt") if s["trip_id"] == trip), key=lambda s: int(s["stop_sequence"]))


def test_departures_carry_trip_update_estimates_including_after_midnight(base: str, feeds: FeedServer):
    day = dt.date(2017, 7, 25)  # a Tuesday
    late, evening = "6512099-CT-17JUL-Combo-Weekday-01", "6512079-CT-17JUL-Combo-Weekday-01"
    assert late.split("-", 1)[1].startswith("CT-17JUL-Combo-Weekday") and "CT-17JUL-Combo-Weekday-01" in active_services(day)
    msg = message(int(time.time()))
    trip_update(msg, late, "20170725", 3, delay=240)  # 24:15 at seq 3; later stops take the delay
    ev = {int(s["stop_sequence"]): s for s in stop_times_of(evening)}
    trip_update(msg, evening, "20170725", 20, time_=posix(day, ev[20]["departure_time"]) + 120)
    feeds.feeds["/trips.pb"] = msg.SerializeToString()
    wait_for(lambda: status(base, "trip_updates")["loaded"] == 2)
    delays = {(late, "20170725"): {s: 240 for s in range(3, 23)}, (evening, "20170725"): {20: 120, 21: 120, 22: 120}}
    stops = {s["stop_id"]: s for s in table("stops.txt")}
    cases = [("70142", dt.datetime(2017, 7, 26, 0, 30, tzinfo=TZ)),  # after midnight: 24:55 + 4 min
             ("70232", dt.datetime(2017, 7, 25, 23, 50, tzinfo=TZ)),  # its own update, an absolute time
             ("70242", dt.datetime(2017, 7, 26, 0, 0, tzinfo=TZ)),  # propagated from seq 20
             ("70012", dt.datetime(2017, 7, 25, 8, 0, tzinfo=TZ))]  # no update covers these: schedule only
    seen_realtime = 0
    for stop, at in cases:
        s = stops[stop]
        r = httpx.get(f"{base}/transit/nearest", params={"lon": s["stop_lon"], "lat": s["stop_lat"], "radius": 30,
                                                         "departures": 2, "at": at.isoformat()}, timeout=60)
        assert r.status_code == 200, r.text
        item = next(i for i in r.json()["items"] if i["stop_id"] == stop)
        got = served_board(item["departures"])
        want = expected_departures(stop, int(at.timestamp()), 2, delays)
        assert got == want, (stop, at)
        seen_realtime += sum(1 for g in got if g[2] is not None)
    assert seen_realtime >= 3  # the estimates were there to compare, not only the schedule
    # /ar/view: stand 150 m south of the station after midnight, look north
    at = cases[0][1]
    lon, lat = float(stops["70142"]["stop_lon"]), float(stops["70142"]["stop_lat"]) - 150 / 111_000
    r = httpx.get(f"{base}/ar/view", params={"lon": lon, "lat": lat, "heading": 0, "fov": 60, "radius": 400,
                                             "terrain": "none", "departures": 2, "at": at.isoformat()}, timeout=60)
    assert r.status_code == 200, r.text
    seen = {s["id"]: s for s in r.json()["stops"]}
    assert "70142" in seen
    for stop, s in seen.items():
        got = served_board(s["departures"])
        assert got == expected_departures(stop, int(at.timestamp()), 2, delays), stop
    assert any(d["trip_id"] == late and d["delay_s"] == 240 for d in seen["70142"]["departures"])


def test_cli_loads_a_file_and_refuses_bad_ones_with_exit_2(project: Path, tmp_path: Path):
    good = tmp_path / "vehicles.pb"
    good.write_bytes(vehicles_along_shapes(int(time.time()) + 100, 8)[0])
    code, out = run("realtime", str(good), "--feed", "caltrain", "--type", "vehicle_positions",
                    "--project", str(project))
    assert code == 0, out
    assert "loaded 8 of 8 entities" in out
    cut = tmp_path / "cut.pb"
    cut.write_bytes(good.read_bytes()[:-3])
    result = CliRunner().invoke(main, ["realtime", str(cut), "--feed", "caltrain", "--type", "vehicle_positions",
                                       "--project", str(project)])
    assert result.exit_code == 2
    assert f"error: {cut}: not a complete GTFS-Realtime message" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["realtime", str(good), "--feed", "muni", "--type", "alerts",
                                       "--project", str(project)])
    assert result.exit_code == 2 and "no realtime feed 'muni' (known: caltrain)" in result.output


def test_two_workers_poll_once_and_both_serve_the_vehicles(tmp_path: Path):
    """With ``--workers 2`` every request for the feed comes from one process (the poller's
    User-Agent names its pid), and whichever worker answers shows the same vehicles."""
    server = FeedServer()
    try:
        (tmp_path / "citytwin.yaml").write_text(CATALOG.format(url=server.url), encoding="utf-8")
        assert run("ingest", str(CALTRAIN), "--layer", "caltrain", "--project", str(tmp_path))[0] == 0
        assert run("build", "--project", str(tmp_path))[0] == 0
        server.feeds["/vehicles.pb"], expected = vehicles_along_shapes(int(time.time()), 25)
        with serve(tmp_path, extra_args=("--workers", "2")) as url:
            wait_for(lambda: len(vehicles(url)) == 25)
            polls_before = sum(1 for path, _ in server.agents if path == "/vehicles.pb")
            wait_for(lambda: sum(1 for path, _ in server.agents if path == "/vehicles.pb") >= polls_before + 5)
            for _ in range(10):  # new connections: the kernel spreads them over both workers
                check_vehicles(vehicles(url), expected)
        pollers = {agent for path, agent in server.agents if path == "/vehicles.pb"}
        assert len(pollers) == 1 and next(iter(pollers)).startswith("citytwin-realtime (pid "), pollers
    finally:
        server.close()


def test_the_viewer_draws_vehicles_in_route_colours_and_alerts(base: str, tmp_path: Path):
    from test_styles import style_errors

    doc = httpx.get(f"{base}/viewer/layers.json", timeout=30).json()
    entries = {e["id"]: e for e in doc["layers"]}
    veh, alerts = entries["vehicles"], entries["alerts"]
    assert veh["tiles"] == "/live/vehicles/tiles/{z}/{x}/{y}"
    circle = next(layer for layer in veh["style"] if layer["type"] == "circle")
    assert circle["paint"]["circle-color"][:2] == ["to-color", ["get", "route_color"]]
    label = next(layer for layer in veh["style"] if layer["type"] == "symbol")
    assert label["layout"]["text-field"] == ["to-string", ["get", "route_short_name"]]
    assert {layer["type"] for layer in alerts["style"]} >= {"line", "circle"}
    sources = {e["id"]: {"type": "vector", "tiles": [f"{base}{e['tiles']}"]} for e in (veh, alerts)}
    style = tmp_path / "realtime.json"
    style.write_text(json.dumps({"version": 8, "sources": sources, "layers": veh["style"] + alerts["style"]}))
    assert style_errors(style) == []


def test_the_realtime_status_route_is_documented_and_names_each_url(base: str, feeds: FeedServer):
    doc = httpx.get(f"{base}/openapi", params={"f": "json"}, timeout=60).json()
    assert "get" in doc["paths"]["/transit/realtime"]
    state = httpx.get(f"{base}/transit/realtime", timeout=30).json()["realtime"]["caltrain"]
    assert (state["interval_s"], state["max_age_s"]) == (1, 600)
    assert {kind: s["url"] for kind, s in state["feeds"].items()} == {
        "vehicle_positions": f"{feeds.url}/vehicles.pb", "trip_updates": f"{feeds.url}/trips.pb",
        "alerts": f"{feeds.url}/alerts.pb"}
    assert state["feeds"]["vehicle_positions"]["layer"] == "vehicles"


@pytest.mark.browser
def test_the_viewer_moves_vehicles_as_the_feed_updates(base: str, feeds: FeedServer):
    """Vehicle tiles are no-cache, so MapLibre never expires them by itself: the open page must
    still show the next feed's vehicles, without a reload."""
    from browser import chromium_page
    from test_viewer_browser import LOAD_TIMEOUT_MS
    from test_viewer_layers_browser import RENDERED, _open

    # newer than every feed the module's earlier tests loaded (the CLI test's is 100 s ahead), or the
    # poller refuses it as older; within max_age_s (600) of the clock
    now = int(time.time()) + 300
    feeds.feeds["/vehicles.pb"], first = vehicles_along_shapes(now, 4)
    wait_for(lambda: set(vehicles(base)) == set(first))
    doc = httpx.get(f"{base}/viewer/layers.json", timeout=30).json()
    entry = next(e for e in doc["layers"] if e["id"] == "vehicles")
    circle = next(layer["id"] for layer in entry["style"] if layer["type"] == "circle")
    lon = sum(v["lon"] for v in first.values()) / len(first)
    lat = sum(v["lat"] for v in first.values()) / len(first)
    with chromium_page() as (page, _record):  # opened on the vehicles, at a zoom their tiles are made for
        state = _open(page, f"{base}/viewer/#{max(entry['minzoom'], 12)}/{lat}/{lon}")
        assert state["errors"] == []
        page.wait_for_function(f"(({RENDERED})('{circle}') || []).length === 4", timeout=LOAD_TIMEOUT_MS)
        assert page.evaluate(RENDERED, circle) == sorted(first)
        # the next feed: three of them, moved on; the fourth gone from the map
        feeds.feeds["/vehicles.pb"], second = vehicles_along_shapes(now + 5, 3, step=1)
        wait_for(lambda: set(vehicles(base)) == set(second))
        page.wait_for_function(f"(({RENDERED})('{circle}') || []).length === 3", timeout=LOAD_TIMEOUT_MS)
        assert page.evaluate(RENDERED, circle) == sorted(second)
