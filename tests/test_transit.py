"""Transit from GTFS: the three layers, the CLI and build paths, /transit/nearest over HTTP.

Real data: the Caltrain feed in ../shared/data/gtfs (remix/partridge fixture). Every
expectation about it is computed here from the zip with the csv module (counts, route
colours, shapes, departures of the busiest weekday) and haversine (distances), never with
the code under test. Note: the data README says 68 stops; stops.txt holds 64 rows, which
is what the csv count below finds and what the layer must hold.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from api_server import serve
from pipelines.cli import main
from shared_data import SHARED_DATA

CALTRAIN = SHARED_DATA / "gtfs" / "caltrain-2017-07-24.zip"
realdata = pytest.mark.realdata("gtfs", "caltrain-2017-07-24.zip")
EARTH_R = 6_371_008.8  # mean Earth radius (IUGG), metres
CATALOG = "name: transit test\nlayers: {}\n"


# -- independent helpers ---------------------------------------------------------
def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_R * math.asin(math.sqrt(a))


def initial_bearing(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360


def tolerance(d: float) -> float:
    return max(1.0, 0.005 * d)


def table(zip_path: Path, name: str) -> list[dict]:
    with zipfile.ZipFile(zip_path) as zf, zf.open(name) as fh:
        return list(csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8-sig")))


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def read_layer(project: Path, name: str):
    from pipelines.store import open_store

    return open_store(project / "build").read(name)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def busiest_weekday_trips(zip_path: Path) -> tuple[dt.date, set[str]]:
    """Plain-Python reading of calendar.txt + calendar_dates.txt: the busiest Mon-Fri date."""
    trips = table(zip_path, "trips.txt")
    per_service = Counter(t["service_id"] for t in trips)
    cal = table(zip_path, "calendar.txt")
    exceptions = table(zip_path, "calendar_dates.txt")
    parse = lambda s: dt.datetime.strptime(s, "%Y%m%d").date()  # noqa: E731
    days = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    first = min(parse(c["start_date"]) for c in cal)
    last = max(parse(c["end_date"]) for c in cal)
    best, best_n, best_services = None, -1, set()
    d = first
    while d <= last:
        services = {c["service_id"] for c in cal
                    if c[days[d.weekday()]] == "1" and parse(c["start_date"]) <= d <= parse(c["end_date"])}
        for e in exceptions:
            if parse(e["date"]) == d:
                (services.add if e["exception_type"] == "1" else services.discard)(e["service_id"])
        n = sum(per_service[s] for s in services)
        if d.weekday() < 5 and n > best_n:
            best, best_n, best_services = d, n, services
        d += dt.timedelta(days=1)
    return best, {t["trip_id"] for t in trips if t["service_id"] in best_services}


# -- the Caltrain project, ingested by the CLI and built ------------------------------
@pytest.fixture(scope="module")
def caltrain_project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("caltrain")
    (project / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    code, out = run("ingest", str(CALTRAIN), "--layer", "transit", "--project", str(project))
    assert code == 0, out
    assert "'transit_stops' 64" in out and "busiest weekday" in out
    # build re-reads the feed from the catalog entries and tiles all three layers
    code, out = run("build", "--project", str(project))
    assert code == 0, out
    assert out.count("transit 'transit' from") == 1, out  # the feed is read once for its three entries
    return project


@realdata
def test_catalog_entries_name_the_feed(caltrain_project: Path):
    from pipelines.catalog import load_catalog

    catalog = load_catalog(caltrain_project)
    assert set(catalog.layers) == {"transit_stops", "transit_routes", "transit_departures"}
    for name, cfg in catalog.layers.items():
        assert cfg.kind == "transit"
        assert catalog.source_paths(name) == [CALTRAIN.resolve()]
        assert (caltrain_project / "build" / "tiles" / f"{name}.pmtiles").stat().st_size > 0


@realdata
def test_every_stop_is_published_where_stops_txt_puts_it(caltrain_project: Path):
    rows = table(CALTRAIN, "stops.txt")
    assert len(rows) == 64
    stops = read_layer(caltrain_project, "transit_stops").set_index("id")
    assert len(stops) == len(rows)
    assert set(stops.index) == {r["stop_id"] for r in rows}
    for r in rows:
        s = stops.loc[r["stop_id"]]
        assert s.geometry.x == pytest.approx(float(r["stop_lon"]), abs=1e-9)
        assert s.geometry.y == pytest.approx(float(r["stop_lat"]), abs=1e-9)
        assert s["stop_name"] == r["stop_name"] and s["stop_code"] == r["stop_code"]
        assert int(s["wheelchair_boarding"]) == int(r["wheelchair_boarding"] or 0)
    # routes serving each stop, from stop_times joined to trips
    route_of = {t["trip_id"]: t["route_id"] for t in table(CALTRAIN, "trips.txt")}
    serving = defaultdict(set)
    for st in table(CALTRAIN, "stop_times.txt"):
        serving[st["stop_id"]].add(route_of[st["trip_id"]])
    for stop_id, s in stops.iterrows():
        assert set(filter(None, s["routes"].split(","))) == serving[stop_id], stop_id


@realdata
def test_every_route_is_drawn_from_its_shapes(caltrain_project: Path):
    rows = table(CALTRAIN, "routes.txt")
    routes = read_layer(caltrain_project, "transit_routes").set_index("id")
    assert set(routes.index) == {r["route_id"] for r in rows} and len(routes) == len(rows) == 4
    points = defaultdict(list)
    for p in table(CALTRAIN, "shapes.txt"):
        points[p["shape_id"]].append((int(p["shape_pt_sequence"]), float(p["shape_pt_lon"]), float(p["shape_pt_lat"])))
    shape_coords = {sid: tuple((round(x, 7), round(y, 7)) for _, x, y in sorted(pts)) for sid, pts in points.items()}
    shapes_of = defaultdict(set)
    for t in table(CALTRAIN, "trips.txt"):
        shapes_of[t["route_id"]].add(t["shape_id"])
    for r in rows:
        got = routes.loc[r["route_id"]]
        assert got["route_color"] == "#" + r["route_color"].upper()
        assert got["route_text_color"] == "#000000"  # not in routes.txt: the GTFS default
        assert got["route_short_name"] == r["route_short_name"] and int(got["route_type"]) == int(r["route_type"])
        assert got["geometry_source"] == "shapes"
        assert got.geometry.geom_type == "MultiLineString"
        parts = {tuple((round(x, 7), round(y, 7)) for x, y in line.coords) for line in got.geometry.geoms}
        assert parts == {shape_coords[s] for s in shapes_of[r["route_id"]]}, r["route_id"]


@realdata
def test_departures_per_stop_and_hour_on_the_busiest_weekday(caltrain_project: Path):
    day, trip_ids = busiest_weekday_trips(CALTRAIN)
    by_trip = defaultdict(list)
    for st in table(CALTRAIN, "stop_times.txt"):
        if st["trip_id"] in trip_ids:
            by_trip[st["trip_id"]].append((int(st["stop_sequence"]), st["stop_id"], st["departure_time"]))
    expected = Counter()
    for calls in by_trip.values():
        for _, stop_id, time in sorted(calls)[:-1]:  # the last stop is an arrival, not a departure
            expected[(stop_id, int(time.split(":")[0]))] += 1
    got = read_layer(caltrain_project, "transit_departures")
    assert set(got["service_date"]) == {day.isoformat()}
    assert {(s, int(h)): int(c) for s, h, c in zip(got["stop_id"], got["hour"], got["count"])} == dict(expected)
    assert got["hour"].between(0, 47).all()


# -- /transit/nearest over HTTP --------------------------------------------------
def boardable_stops() -> dict[str, tuple[float, float, str]]:
    return {r["stop_id"]: (float(r["stop_lon"]), float(r["stop_lat"]), r["stop_name"])
            for r in table(CALTRAIN, "stops.txt") if r["location_type"] in ("", "0")}


def check_against_haversine(items: list[dict], lon: float, lat: float, radius: float, limit: int) -> None:
    """The answer is what haversine finds, up to the geodesic-vs-sphere tolerance.

    Distances agree within 1 m / 0.5 %. Order: any two stops whose haversine distances differ
    by more than that tolerance come in haversine order; closer pairs are ties (Caltrain's
    two College Park platforms are 1.5 cm apart in distance from one of the query points,
    and the ellipsoid and the sphere order them differently).
    """
    stops = boardable_stops()
    hav = {sid: haversine(lon, lat, x, y) for sid, (x, y, _) in stops.items()}
    got = [it["stop_id"] for it in items]
    assert len(got) == len(set(got)) and len(got) <= limit
    for it in items:
        x, y, name = stops[it["stop_id"]]
        assert (it["lon"], it["lat"], it["name"]) == (pytest.approx(x), pytest.approx(y), name)
        d = hav[it["stop_id"]]
        assert d <= radius + tolerance(radius)
        assert abs(it["distance_m"] - d) <= tolerance(d), (it, d)
        if d > 20:
            b = initial_bearing(lon, lat, x, y)
            assert abs((it["bearing_deg"] - b + 180) % 360 - 180) < 0.5, (it, b)
    for a, b in zip(got, got[1:]):
        assert hav[a] <= hav[b] + tolerance(hav[b]), (a, b)
    # complete: nothing clearly nearer than the last answer (or inside the radius) is missing
    cutoff = hav[got[-1]] if len(got) == limit else radius
    must = {sid for sid, d in hav.items() if d < cutoff - tolerance(cutoff)}
    assert must <= set(got), must - set(got)
    assert [it["distance_m"] for it in items] == sorted(it["distance_m"] for it in items)


@pytest.fixture(scope="module")
def caltrain_server(caltrain_project: Path):
    with serve(caltrain_project) as base:
        yield base


QUERIES = [  # lon, lat, radius, limit: near SF, Palo Alto, San Jose, and mid-line with a wide radius
    (-122.3960, 37.7770, 800, 10),
    (-122.1620, 37.4440, 1500, 4),
    (-121.9030, 37.3300, 3000, 20),
    (-122.2600, 37.5200, 5000, 100),
]


@realdata
@pytest.mark.parametrize("lon,lat,radius,limit", QUERIES)
def test_nearest_matches_haversine(caltrain_server: str, lon: float, lat: float, radius: float, limit: int):
    r = httpx.get(f"{caltrain_server}/transit/nearest",
                  params={"lon": lon, "lat": lat, "radius": radius, "limit": limit}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["radius_m"] == radius and body["limit"] == limit and body["notes"] == []
    assert body["items"], "every query point is near Caltrain"
    check_against_haversine(body["items"], lon, lat, radius, limit)


@realdata
def test_nearest_lists_the_routes_with_name_and_colour(caltrain_server: str):
    routes = {r["route_id"]: r for r in table(CALTRAIN, "routes.txt")}
    route_of = {t["trip_id"]: t["route_id"] for t in table(CALTRAIN, "trips.txt")}
    serving = defaultdict(set)
    for st in table(CALTRAIN, "stop_times.txt"):
        serving[st["stop_id"]].add(route_of[st["trip_id"]])
    body = httpx.get(f"{caltrain_server}/transit/nearest",
                     params={"lon": -121.9030, "lat": 37.3300, "radius": 3000, "limit": 50}, timeout=30).json()
    assert body["items"]
    for it in body["items"]:
        assert {x["route_id"] for x in it["routes"]} == serving[it["stop_id"]]
        for x in it["routes"]:
            assert x["short_name"] == routes[x["route_id"]]["route_short_name"]
            assert x["color"] == "#" + routes[x["route_id"]]["route_color"].upper()


@realdata
def test_nearest_caps_the_radius_with_a_note(caltrain_server: str):
    body = httpx.get(f"{caltrain_server}/transit/nearest",
                     params={"lon": -122.26, "lat": 37.52, "radius": 50000, "limit": 100}, timeout=30).json()
    assert body["radius_m"] == 5000 and any("capped" in n for n in body["notes"])
    check_against_haversine(body["items"], -122.26, 37.52, 5000, 100)


@realdata
@pytest.mark.parametrize("params,needle", [
    ({"lon": "-122.2", "lat": "91"}, "'lat' must be at most 90"),
    ({"lon": "181", "lat": "37"}, "'lon' must be at most 180"),
    ({"lon": "abc", "lat": "37"}, "'lon' must be a number"),
    ({"lon": "-122.2", "lat": "nan"}, "'lat' must be a finite number"),
    ({"lat": "37"}, "'lon' is required"),
    ({"lon": "-122.2", "lat": "37", "radius": "0"}, "'radius' must be above 0"),
    ({"lon": "-122.2", "lat": "37", "radius": "-5"}, "'radius' must be above 0"),
    ({"lon": "-122.2", "lat": "37", "limit": "0"}, "'limit' must be at least 1"),
    ({"lon": "-122.2", "lat": "37", "limit": "2.5"}, "'limit' must be a whole number"),
    ({"lon": "-122.2", "lat": "37", "limit": "²"}, "'limit' must be a whole number, got '²'"),
    ({"lon": "-122.2", "lat": "37", "feed": "nope"}, "no transit feed 'nope'"),
])
def test_nearest_rejects_bad_parameters(caltrain_server: str, params: dict, needle: str):
    r = httpx.get(f"{caltrain_server}/transit/nearest", params=params, timeout=30)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
    assert needle in r.json()["description"] and r.json()["code"] == r.json()["type"] == "InvalidParameterValue"


@realdata
def test_transit_layers_are_collections_with_tiles_and_the_style_resolves(caltrain_server: str):
    for name, count in (("transit_stops", 64), ("transit_routes", 4)):
        r = httpx.get(f"{caltrain_server}/collections/{name}/items", params={"f": "json", "limit": 1}, timeout=30)
        assert r.status_code == 200 and r.json()["numberMatched"] == count
    r = httpx.get(f"{caltrain_server}/collections/transit_departures", params={"f": "json"}, timeout=30)
    assert r.status_code == 200
    style = httpx.get(f"{caltrain_server}/styles/transit", timeout=30).json()
    for source in style["sources"].values():
        tj = httpx.get(caltrain_server + source["url"], timeout=30)
        assert tj.status_code == 200, source["url"]
        assert tj.json()["tiles"]


@realdata
def test_nearest_on_postgis_answers_like_haversine(tmp_path: Path, pg_db_url: str):
    from pipelines.store import open_store
    from pipelines.transit import ingest_transit

    project = tmp_path / "pg"
    project.mkdir()
    (project / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    for part in ("stops", "routes", "departures"):
        from pipelines.catalog import add_layer_entry

        add_layer_entry(project, f"caltrain_{part}", {"kind": "transit", "source": str(CALTRAIN)})
    store = open_store(project / "build", database_url=pg_db_url)
    try:
        report = ingest_transit(store, "caltrain", CALTRAIN)
        assert report.counts["caltrain_stops"] == 64 and store.info("caltrain_routes").count == 4
    finally:
        store.close()
    lon, lat, radius = -122.1620, 37.4440, 1500
    with serve(project, database_url=pg_db_url) as base:
        body = httpx.get(f"{base}/transit/nearest", params={"lon": lon, "lat": lat, "radius": radius,
                                                           "feed": "caltrain"}, timeout=30).json()
    assert body["items"] and {it["feed"] for it in body["items"]} == {"caltrain"}
    check_against_haversine(body["items"], lon, lat, radius, 10)


# -- a small synthetic feed: edge cases and bad input ------------------------------
SEOUL = (126.9780, 37.5665)


def feed_files(**changes: str | None) -> dict[str, str]:
    files = {
        # a BOM before the header, a station with one child platform, a stop nobody serves
        "stops.txt": "\ufeffstop_id,stop_name,stop_lat,stop_lon,location_type,parent_station\n"
                     "S,Central,37.5665,126.9780,1,\n"
                     "A,Central platform,37.5666,126.9781,0,S\n"
                     "B,Middle,37.5700,126.9850,,\n"
                     "C,End,37.5750,126.9900,0,\n"
                     "D,Unserved,37.5600,126.9700,0,\n",
        "routes.txt": "route_id,route_short_name,route_long_name,route_type,route_color\n"
                      "R1,1,Red line,1,ff0000\n"
                      "R2,2,Bus,3,\n"
                      "R3,3,No trips,3,12345G\n",
        "trips.txt": "route_id,service_id,trip_id\nR1,WK,T1\nR1,WK,T2\nR2,SAT,T3\n",
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                          "T1,08:00:00,08:00:00,A,1\nT1,,,B,2\nT1,08:20:00,08:20:00,C,3\n"
                          "T2,23:50:00,23:50:00,A,1\nT2,24:10:00,24:10:00,B,2\nT2,25:05:00,25:05:00,C,3\n"
                          "T3,10:00:00,10:00:00,C,1\nT3,10:30:00,10:30:00,A,2\n",
        "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
                        "WK,1,1,1,1,1,0,0,20240101,20240131\nSAT,0,0,0,0,0,1,0,20240101,20240131\n",
    }
    for name, text in changes.items():
        if text is None:
            files.pop(name.replace("_txt", ".txt"))
        else:
            files[name.replace("_txt", ".txt")] = text
    return files


def write_zip(path: Path, files: dict[str, str], folder: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(folder + name, text.encode("utf-8"))
    return path


def test_synthetic_feed_layers(tmp_path: Path):
    from pipelines.transit import prepare_transit

    frames, report = prepare_transit(write_zip(tmp_path / "f.zip", feed_files(), folder="gtfs/"), "city")
    stops = frames["city_stops"].set_index("id")
    assert list(stops.index) == ["S", "A", "B", "C", "D"]
    assert stops.loc["S", "routes"] == "R1,R2"  # the station gathers its platform's routes
    assert stops.loc["D", "routes"] == "" and stops.loc["B", "location_type"] == 0
    routes = frames["city_routes"].set_index("id")
    assert list(routes["route_color"]) == ["#FF0000", "#FFFFFF", "#FFFFFF"]  # blank and bad -> GTFS default
    assert any("12345G" in w for w in report.warnings)
    # no shapes.txt: lines run through the stops of each distinct stop sequence
    r1 = routes.loc["R1"].geometry
    assert routes.loc["R1", "geometry_source"] == "stops" and len(r1.geoms) == 1
    assert list(r1.geoms[0].coords) == [(126.9781, 37.5666), (126.985, 37.57), (126.99, 37.575)]
    assert routes.loc["R3"].geometry is None and routes.loc["R3", "geometry_source"] == "none"
    dep = frames["city_departures"]
    # busiest weekday: Monday 2024-01-01 (only WK runs on weekdays); the blank time of T1 at B
    # is interpolated to 08:10; times past midnight keep their hour (24); last stops do not depart
    assert set(dep["service_date"]) == {"2024-01-01"}
    assert sorted(zip(dep["stop_id"], dep["hour"], dep["count"])) == [("A", 8, 1), ("A", 23, 1), ("B", 8, 1),
                                                                      ("B", 24, 1)]


def test_calendar_dates_only_feed(tmp_path: Path):
    from pipelines.transit import prepare_transit

    files = feed_files(calendar_txt=None, calendar_dates_txt="service_id,date,exception_type\n"
                                                                "SAT,20240106,1\nWK,20240108,1\nWK,20240109,1\n")
    frames, report = prepare_transit(write_zip(tmp_path / "f.zip", files), "city")
    assert set(frames["city_departures"]["service_date"]) == {"2024-01-08"}
    assert "busiest weekday 2024-01-08 (Monday)" in report.service


@pytest.fixture
def published(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    code, out = run("ingest", str(write_zip(tmp_path / "good.zip", feed_files())), "--layer", "city",
                    "--project", str(project))
    assert code == 0, out
    return project


@pytest.mark.parametrize("changes,needle", [
    ({"stops_txt": None}, "not a GTFS feed: no stops.txt inside"),
    ({"trips_txt": None}, "the GTFS feed lacks trips.txt"),
    ({"stops_txt": "stop_id,stop_name,stop_lon\nA,x,126.9\n"}, "stops.txt: required column stop_lat is missing"),
    ({"stops_txt": "stop_id,stop_name,stop_lat,stop_lon\nA,x,,126.9\n"}, "stop 'A' (data row 1) has no stop_lat"),
    ({"stops_txt": "stop_id,stop_name,stop_lat,stop_lon\nA,x,north,126.9\n"},
     "stops.txt: column stop_lat: 'north' on data row 1 is not a number"),
    ({"stop_times_txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\nT1,8h,8h,A,1\n"},
     "stop_times.txt: column arrival_time: '8h' on data row 1 is not a time"),
    ({"routes_txt": "route_id,route_short_name\nR1,1\n"}, "routes.txt: required column route_type is missing"),
    ({"stop_times_txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                        "T1,08:00:00,08:00:00,A,1\nT1,08:10:00,08:10:00,GHOST,2\n"},
     "stop_times.txt: 1 row(s) name a stop_id not in stops.txt (first: stop_id 'GHOST' in trip 'T1' at "
     "stop_sequence 2)"),
])
def test_bad_feed_is_a_clear_error_and_leaves_the_store_alone(tmp_path: Path, published: Path, changes: dict,
                                                             needle: str):
    gpkg = published / "build" / "citytwin.gpkg"
    before, catalog_before = digest(gpkg), (published / "citytwin.yaml").read_text()
    bad = write_zip(tmp_path / "bad.zip", feed_files(**changes))
    code, out = run("ingest", str(bad), "--layer", "city", "--project", str(published))
    assert code == 2, out
    assert needle in out and str(bad) in out
    assert digest(gpkg) == before and (published / "citytwin.yaml").read_text() == catalog_before


def test_not_a_zip_and_wrong_options(tmp_path: Path, published: Path):
    fake = tmp_path / "feed.zip"
    fake.write_text("not a zip")
    code, out = run("ingest", str(fake), "--layer", "city", "--kind", "transit", "--project", str(published))
    assert code == 2 and "not a zip file" in out
    good = write_zip(tmp_path / "g.zip", feed_files())
    code, out = run("ingest", str(good), "--layer", "city", "--crs", "EPSG:5186", "--project", str(published))
    assert code == 2 and "WGS84" in out
    code, out = run("ingest", str(good), "--layer", "city", "--kind", "pois", "--project", str(published))
    assert code == 2 and "kind transit" in out


def test_a_gtfs_entry_without_the_part_suffix_is_explained(tmp_path: Path):
    project = tmp_path / "p"
    project.mkdir()
    write_zip(project / "feed.zip", feed_files())
    (project / "citytwin.yaml").write_text("layers:\n  bus:\n    kind: transit\n    source: feed.zip\n")
    code, out = run("build", "--project", str(project))
    assert code == 2 and "name them bus_stops, bus_routes and bus_departures" in out


def test_build_reingests_the_feed_from_the_catalog(tmp_path: Path, published: Path):
    from pipelines.catalog import load_catalog

    catalog = load_catalog(published)
    assert {n for n in catalog.layers} == {"city_stops", "city_routes", "city_departures"}
    code, out = run("build", "--project", str(published))
    assert code == 0, out
    assert out.count("transit 'city' from") == 1
    for name in catalog.layers:
        assert (published / "build" / "tiles" / f"{name}.pmtiles").is_file()
    assert list(read_layer(published, "city_stops")["id"]) == ["S", "A", "B", "C", "D"]
