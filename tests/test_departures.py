"""Next departures on the shared Caltrain feed, checked against a plain reading of the GTFS text.

The expectations come from ``expected()`` below: the zip's tables read with the csv module,
service dates from calendar.txt and calendar_dates.txt by hand, and times placed with the
GTFS rule (seconds after noon-minus-12h of the service date in the agency timezone, done in
UTC here). Moments cover a weekday, a Saturday night with trips past 24:00, the Sunday
morning after (those trips belong to Saturday), Labor Day (calendar_dates swaps the weekday
service for the Sunday one) and the day summer time ends.
"""
from __future__ import annotations

import csv
import io
import math
import zipfile
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from click.testing import CliRunner

from api_server import serve
from pipelines.cli import main
from pipelines.departures import StopUpdate, Timetable, next_departures
from pipelines.readers.gtfs import read_gtfs
from shared_data import SHARED_DATA

CALTRAIN = SHARED_DATA / "gtfs" / "caltrain-2017-07-24.zip"
pytestmark = pytest.mark.realdata("gtfs", "caltrain-2017-07-24.zip")
TZ = ZoneInfo("America/Los_Angeles")
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


# -- the independent reading ---------------------------------------------------------------
@cache
def table(name: str) -> list[dict]:
    with zipfile.ZipFile(CALTRAIN) as zf, zf.open(name) as fh:
        return list(csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8-sig")))


def ymd(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def services_on(day: date) -> set[str]:
    running = {c["service_id"] for c in table("calendar.txt")
               if c[DAYS[day.weekday()]] == "1" and ymd(c["start_date"]) <= day <= ymd(c["end_date"])}
    for e in table("calendar_dates.txt"):
        if ymd(e["date"]) == day:
            if e["exception_type"] == "1":
                running.add(e["service_id"])
            else:
                running.discard(e["service_id"])
    return running


def service_day_origin(day: date) -> datetime:
    """Noon of ``day`` in the agency's timezone, in UTC, minus 12 hours."""
    tz = ZoneInfo(table("agency.txt")[0]["agency_timezone"])
    return datetime(day.year, day.month, day.day, 12, tzinfo=tz).astimezone(timezone.utc) - timedelta(hours=12)


def seconds(hms: str) -> int:
    h, m, s = (int(p) for p in hms.split(":"))
    return h * 3600 + m * 60 + s


def expected(stop_id: str, at: datetime, per_route: int, updates: dict | None = None) -> list[dict]:
    """The next ``per_route`` departures of each route from ``stop_id`` after ``at`` within 24 h.

    ``updates`` maps (trip_id, service date YYYYMMDD) to ("delay", s), ("departure", epoch) or
    ("skipped",); a trip up to 2 h late still counts when real-time data is given.
    """
    trips = {t["trip_id"]: t for t in table("trips.txt")}
    routes = {r["route_id"]: r for r in table("routes.txt")}
    last_seq: dict[str, int] = defaultdict(int)
    for st in table("stop_times.txt"):
        last_seq[st["trip_id"]] = max(last_seq[st["trip_id"]], int(st["stop_sequence"]))
    lookback = timedelta(hours=2) if updates is not None else timedelta(0)
    start, end = at - lookback, at + timedelta(hours=24)
    found = []
    day = at.astimezone(TZ).date() - timedelta(days=3)
    while day <= at.astimezone(TZ).date() + timedelta(days=1):
        running = services_on(day)
        for st in table("stop_times.txt"):
            trip = trips[st["trip_id"]]
            if (st["stop_id"] != stop_id or trip["service_id"] not in running or st.get("pickup_type") == "1"
                    or int(st["stop_sequence"]) == last_seq[st["trip_id"]]):
                continue
            when = service_day_origin(day) + timedelta(seconds=seconds(st["departure_time"]))
            if start <= when <= end:
                found.append((when, st["trip_id"], day, trip))
        day += timedelta(days=1)
    found.sort(key=lambda f: (f[0], f[1]))
    taken: dict[str, int] = defaultdict(int)
    out = []
    for when, trip_id, day, trip in found:
        estimate = None
        update = (updates or {}).get((trip_id, day.strftime("%Y%m%d")))
        if update is not None:
            if update[0] == "skipped":
                continue
            estimate = (when + timedelta(seconds=update[1]) if update[0] == "delay"
                        else datetime.fromtimestamp(update[1], timezone.utc))
        if (estimate or when) < at or taken[trip["route_id"]] >= per_route:
            continue
        taken[trip["route_id"]] += 1
        out.append({"route_id": trip["route_id"], "route": routes[trip["route_id"]]["route_short_name"],
                    "headsign": trip["trip_headsign"], "trip_id": trip_id, "service_date": day.isoformat(),
                    "scheduled": when.astimezone(TZ).isoformat(),
                    "estimated": estimate.astimezone(TZ).isoformat() if estimate else None,
                    "delay_s": round((estimate - when).total_seconds()) if estimate else None,
                    "realtime": estimate is not None})
    out.sort(key=lambda d: (d["estimated"] or d["scheduled"], d["trip_id"]))
    return out


# stop, local moment, per route
MOMENTS = [
    ("70012", datetime(2017, 7, 25, 7, 30, tzinfo=TZ), 2),  # San Francisco southbound, a Tuesday morning
    ("70172", datetime(2017, 7, 26, 17, 0, tzinfo=TZ), 3),  # Palo Alto southbound, Wednesday rush hour
    ("70021", datetime(2017, 7, 29, 23, 55, tzinfo=TZ), 2),  # 22nd St northbound, Saturday: a trip at 24:04
    ("70021", datetime(2017, 7, 30, 0, 1, tzinfo=TZ), 2),  # Sunday 00:01: that 24:04 trip is Saturday's
    ("70202", datetime(2017, 7, 29, 23, 50, tzinfo=TZ), 1),  # a 24:08 call further down the line
    ("70012", datetime(2017, 9, 4, 8, 0, tzinfo=TZ), 2),  # Labor Day: Sunday service added, weekday removed
    ("70171", datetime(2017, 11, 5, 9, 0, tzinfo=TZ), 2),  # summer time ended at 02:00 that morning
]


@pytest.fixture(scope="module")
def timetable() -> Timetable:
    return Timetable(read_gtfs(CALTRAIN))


def test_the_moments_cover_the_hard_cases():
    """Guard the expectations themselves: the past-24:00 trip and the exception day are really in them."""
    saturday = expected("70021", MOMENTS[2][1], 2)
    assert saturday[0]["service_date"] == "2017-07-29" and saturday[0]["scheduled"].startswith("2017-07-30T00:04")
    sunday = expected("70021", MOMENTS[3][1], 2)
    assert sunday[0]["trip_id"] == saturday[0]["trip_id"]
    labor_day = expected("70012", MOMENTS[5][1], 2)
    assert labor_day and all("Sunday" in d["trip_id"] for d in labor_day if d["service_date"] == "2017-09-04")
    assert any("Weekday" in t["service_id"] for t in table("trips.txt"))
    dst = expected("70171", MOMENTS[6][1], 2)
    assert dst[0]["scheduled"].endswith("-08:00")


@pytest.mark.parametrize("stop,at,per_route", MOMENTS)
def test_next_departures_match_the_plain_reading(timetable: Timetable, stop: str, at: datetime, per_route: int):
    got = [d.as_dict(timetable.tz) for d in next_departures(timetable, stop, int(at.timestamp()), per_route)]
    want = expected(stop, at, per_route)
    assert want, "every moment has departures"
    assert got == want


class FixedUpdates:
    """A real-time source answering from a dict, as the Protocol asks; records what was asked."""

    def __init__(self, updates: dict[tuple[str, str], StopUpdate]) -> None:
        self.updates = updates
        self.asked: list[tuple] = []

    def stop_update(self, trip_id: str, start_date: str | None, stop_id: str, stop_sequence: int):
        self.asked.append((trip_id, start_date, stop_id, stop_sequence))
        return self.updates.get((trip_id, start_date))


def _as_plain(update: StopUpdate, scheduled: datetime) -> tuple:
    if update.skipped:
        return ("skipped",)
    if update.departure_time is not None:
        return ("departure", update.departure_time)
    return ("delay", update.delay_s)


def test_realtime_estimates_delays_and_skips(timetable: Timetable):
    at = datetime(2017, 7, 25, 8, 0, tzinfo=TZ)
    plain = expected("70012", at, 3, updates={})  # the schedule alone (with the 2 h look-back)
    earlier = [d for d in expected("70012", at - timedelta(minutes=30), 3) if d["scheduled"] < at.isoformat()]
    assert earlier, "a trip left shortly before 08:00"
    late, delayed, skipped = earlier[-1], plain[0], next(d for d in plain if d["route_id"] != plain[0]["route_id"])
    late_t = datetime.fromisoformat(late["scheduled"])
    updates = {
        (late["trip_id"], "20170725"): StopUpdate(None, int(late_t.timestamp()) + 900, None, False),
        (delayed["trip_id"], "20170725"): StopUpdate(None, None, 420, False),
        (skipped["trip_id"], "20170725"): StopUpdate(None, None, None, True),
    }
    source = FixedUpdates(updates)
    got = [d.as_dict(timetable.tz) for d in
           next_departures(timetable, "70012", int(at.timestamp()), 3, realtime=source)]
    plain_updates = {k: _as_plain(u, late_t) for k, u in updates.items()}
    want = expected("70012", at, 3, updates=plain_updates)
    assert got == want
    by_trip = {d["trip_id"]: d for d in got}
    assert by_trip[late["trip_id"]]["delay_s"] == 900 and by_trip[delayed["trip_id"]]["delay_s"] == 420
    assert skipped["trip_id"] not in by_trip
    assert all(a[1] == "20170725" and a[2] == "70012" for a in source.asked)


def test_realtime_is_asked_with_the_service_date_after_midnight(timetable: Timetable):
    at = datetime(2017, 7, 30, 0, 1, tzinfo=TZ)  # Sunday; the 24:04 trip runs on Saturday's service
    first = expected("70021", at, 1)[0]
    source = FixedUpdates({(first["trip_id"], "20170729"): StopUpdate(None, None, 120, False)})
    got = next_departures(timetable, "70021", int(at.timestamp()), 1, realtime=source)
    assert (got[0].trip_id, got[0].service_date, got[0].delay_s) == (first["trip_id"], "20170729", 120)
    sched = datetime.fromisoformat(first["scheduled"])
    assert got[0].estimated == int(sched.timestamp()) + 120


# -- over HTTP: /transit/nearest and /ar/view -----------------------------------------------
@pytest.fixture(scope="module")
def caltrain_project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("departures")
    (project / "citytwin.yaml").write_text("name: departures test\nlayers: {}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["ingest", str(CALTRAIN), "--layer", "caltrain", "--project", str(project)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return project


@pytest.fixture(scope="module")
def caltrain_server(caltrain_project: Path):
    with serve(caltrain_project) as base:
        yield base


def stop_position(stop_id: str) -> tuple[float, float]:
    row = next(s for s in table("stops.txt") if s["stop_id"] == stop_id)
    return float(row["stop_lon"]), float(row["stop_lat"])


@pytest.mark.parametrize("stop,at,per_route", MOMENTS)
def test_nearest_gives_each_stop_its_departures(caltrain_server: str, stop: str, at: datetime, per_route: int):
    lon, lat = stop_position(stop)
    r = httpx.get(f"{caltrain_server}/transit/nearest", params={
        "lon": lon, "lat": lat, "radius": 100, "departures": per_route, "at": at.isoformat()}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["notes"] == []
    items = {it["stop_id"]: it for it in body["items"]}
    assert stop in items
    for sid, item in items.items():  # the platform across the track too
        assert item["departures"] == expected(sid, at, per_route), sid


def test_ar_view_answers_stops_in_the_frustum_with_departures(caltrain_server: str):
    lon, lat = stop_position("70172")  # Palo Alto: stand 150 m south and look north
    eye_lat = lat - 150 / 111_000
    at = MOMENTS[1][1]
    r = httpx.get(f"{caltrain_server}/ar/view", params={
        "lon": lon, "lat": eye_lat, "heading": 0, "fov": 60, "radius": 400, "terrain": "none",
        "departures": 2, "at": at.isoformat()}, timeout=60)
    assert r.status_code == 200, r.text
    stops = r.json()["stops"]
    in_front = {s["stop_id"] for s in table("stops.txt") if s["location_type"] in ("", "0")
                and abs(float(s["stop_lon"]) - lon) < 0.001 and 0 < float(s["stop_lat"]) - eye_lat < 0.003}
    assert {s["id"] for s in stops} == in_front == {"70171", "70172"}
    for s in stops:
        assert s["feed"] == "caltrain" and s["departures"] == expected(s["id"], at, 2)
        assert 140 < s["distance_m"] < 160 and (s["bearing_deg"] < 5 or s["bearing_deg"] > 355)
    off = httpx.get(f"{caltrain_server}/ar/view", params={
        "lon": lon, "lat": eye_lat, "heading": 180, "radius": 400, "terrain": "none"}, timeout=60).json()
    assert off["stops"] == []  # looking away


@pytest.mark.parametrize("params,needle", [
    ({"departures": 11}, "parameter 'departures' must be at most 10"),
    ({"departures": -1}, "parameter 'departures' must be at least 0"),
    ({"at": "2017-07-25T08:00:00"}, "parameter 'at' must be an ISO 8601 time with an offset"),
    ({"at": "tomorrow"}, "parameter 'at' must be an ISO 8601 time with an offset"),
    ({"at": "9999-12-31T23:00:00+00:00"}, "parameter 'at' must be in the years 1900 to 2199"),
    ({"at": "0001-01-01T00:00:00+00:00"}, "parameter 'at' must be in the years 1900 to 2199"),
])
def test_bad_departure_parameters_are_400(caltrain_server: str, params: dict, needle: str):
    lon, lat = stop_position("70012")
    for path, extra in (("/transit/nearest", {}), ("/ar/view", {"terrain": "none"})):
        r = httpx.get(f"{caltrain_server}{path}", params={"lon": lon, "lat": lat, **extra, **params}, timeout=60)
        assert r.status_code == 400 and needle in r.json()["description"], (path, r.text)


def test_departures_zero_and_outside_the_calendar(caltrain_server: str):
    lon, lat = stop_position("70012")
    base = {"lon": lon, "lat": lat, "radius": 50}
    none = httpx.get(f"{caltrain_server}/transit/nearest", params={**base, "departures": 0}, timeout=60).json()
    assert none["items"] and all(it["departures"] == [] for it in none["items"])
    after = httpx.get(f"{caltrain_server}/transit/nearest",  # the calendar ends in July 2019
                      params={**base, "at": "2020-01-06T08:00:00-08:00"}, timeout=60).json()
    assert after["items"] and all(it["departures"] == [] for it in after["items"])
    assert math.isclose(after["items"][0]["lon"], lon)


def test_a_broken_realtime_store_leaves_the_schedule(caltrain_server: str, caltrain_project: Path):
    from pipelines.gtfs_rt.store import state_path

    broken = state_path(caltrain_project / "build", "caltrain")
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not a database " * 100)
    try:
        lon, lat = stop_position("70012")
        at = MOMENTS[0][1]
        r = httpx.get(f"{caltrain_server}/transit/nearest", params={
            "lon": lon, "lat": lat, "radius": 50, "departures": 2, "at": at.isoformat()}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert [n for n in body["notes"] if n.startswith("real-time departures of feed 'caltrain' unavailable")]
        assert {it["stop_id"]: it["departures"] for it in body["items"]} == \
            {it["stop_id"]: expected(it["stop_id"], at, 2) for it in body["items"]}
    finally:
        broken.unlink()
