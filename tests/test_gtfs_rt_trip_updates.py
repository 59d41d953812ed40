"""TripUpdates to per-stop estimates (GTFS-Realtime delay propagation), loaded from a real protobuf
file with ``citytwin realtime`` and read back through ``pipelines.gtfs_rt.realtime_source``, the
interface the next departures use. Scheduled times come from stop_times.txt (csv module)."""
from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from google.transit import gtfs_realtime_pb2 as rt

from gtfs_rt_feeds import CALTRAIN, message, table
from pipelines.cli import main
from pipelines.departures import StopUpdate
from pipelines.gtfs_rt import realtime_source

pytestmark = pytest.mark.realdata("gtfs", "caltrain-2017-07-24.zip")
TZ = ZoneInfo("America/Los_Angeles")
TRIP, CANCELED = "6512099-CT-17JUL-Combo-Weekday-01", "6512079-CT-17JUL-Combo-Weekday-01"
CATALOG = """\
name: trip updates test
layers: {}
realtime:
  caltrain: {max_age_s: 600}
"""
STU = rt.TripUpdate.StopTimeUpdate


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def scheduled(trip: str, day: dt.date) -> dict[int, tuple[str, int, int]]:
    """stop_sequence -> (stop_id, arrival, departure) as POSIX seconds (noon minus 12 h + GTFS time)."""
    origin = int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=TZ).timestamp()) - 12 * 3600

    def secs(hms: str) -> int:
        h, m, s = map(int, hms.split(":"))
        return origin + h * 3600 + m * 60 + s
    return {int(s["stop_sequence"]): (s["stop_id"], secs(s["arrival_time"]), secs(s["departure_time"]))
            for s in table("stop_times.txt") if s["trip_id"] == trip}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trip_updates")
    (root / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    result = run("ingest", str(CALTRAIN), "--layer", "caltrain", "--project", str(root))
    assert result.exit_code == 0, result.output
    return root


def test_delays_propagate_stop_no_data_and_skipped_per_the_spec(project: Path, tmp_path: Path):
    day = dt.date(2017, 7, 25)
    sched = scheduled(TRIP, day)
    msg = message(int(time.time()))
    tu = msg.entity.add(id="late").trip_update
    tu.trip.trip_id, tu.trip.start_date = TRIP, "20170725"
    u = tu.stop_time_update.add(stop_sequence=3)
    u.departure.delay = 60
    tu.stop_time_update.add(stop_sequence=6, schedule_relationship=STU.NO_DATA)
    u = tu.stop_time_update.add(stop_sequence=8)
    u.arrival.time = sched[8][1] + 300  # an absolute time only: its delay is against the schedule
    tu.stop_time_update.add(stop_sequence=10, schedule_relationship=STU.SKIPPED)
    u = tu.stop_time_update.add(stop_sequence=15)
    u.departure.delay = -30
    gone = msg.entity.add(id="gone").trip_update
    gone.trip.trip_id, gone.trip.start_date = CANCELED, "20170725"
    gone.trip.schedule_relationship = rt.TripDescriptor.CANCELED
    path = tmp_path / "trips.pb"
    path.write_bytes(msg.SerializeToString())
    result = run("realtime", str(path), "--feed", "caltrain", "--type", "trip_updates", "--project", str(project))
    assert result.exit_code == 0, result.output
    assert "loaded 2 of 2 entities" in result.output

    source = realtime_source(project / "build", "caltrain")
    assert source is not None
    delay = {**{s: 60 for s in (3, 4, 5)}, **{s: 300 for s in range(8, 15)}, **{s: -30 for s in range(15, 23)}}
    for seq, (stop, arr, dep) in sched.items():
        got = source.stop_update(TRIP, "20170725", stop, seq)
        if seq not in delay:  # before the first update, and after NO_DATA until the next one
            assert got is None, seq
        elif seq == 10:
            assert got == StopUpdate(None, None, 300, True)
        else:
            assert got == StopUpdate(arr + delay[seq], dep + delay[seq], delay[seq], False), seq
    for seq, (stop, _, _) in scheduled(CANCELED, day).items():
        assert source.stop_update(CANCELED, "20170725", stop, seq) == StopUpdate(None, None, None, True)
    assert source.stop_update(TRIP, "20170726", sched[4][0], 4) is None  # another service day
    assert source.stop_update(TRIP, "20170725", "70011", 4) is None  # not that stop at that sequence


def test_a_trip_update_without_start_date_takes_the_service_day_of_the_feed(project: Path, tmp_path: Path):
    now = int(time.time()) + 1  # newer than the previous test's feed
    msg = message(now)
    tu = msg.entity.add(id="undated").trip_update
    tu.trip.trip_id = TRIP
    u = tu.stop_time_update.add(stop_sequence=1)
    u.departure.delay = 90
    path = tmp_path / "undated.pb"
    path.write_bytes(msg.SerializeToString())
    result = run("realtime", str(path), "--feed", "caltrain", "--type", "trip_updates", "--project", str(project))
    assert result.exit_code == 0, result.output
    # the trip runs 24:05-25:38: of the service days around now, the one whose run is nearest to now
    local = dt.datetime.fromtimestamp(now, TZ).date()
    days = [local + dt.timedelta(days=k) for k in (-1, 0, 1)]
    best = min(days, key=lambda d: abs((scheduled(TRIP, d)[1][2] + scheduled(TRIP, d)[22][2]) / 2 - now))
    sched = scheduled(TRIP, best)
    got = realtime_source(project / "build", "caltrain").stop_update(TRIP, None, sched[5][0], 5)
    assert got == StopUpdate(sched[5][1] + 90, sched[5][2] + 90, 90, False)


def test_an_older_feed_does_not_replace_a_newer_one(project: Path, tmp_path: Path):
    now = int(time.time())
    for ts, name in ((now + 5, "new.pb"), (now - 120, "old.pb")):
        (tmp_path / name).write_bytes(message(ts).SerializeToString())
    args = ("--feed", "caltrain", "--type", "trip_updates", "--project", str(project))
    assert run("realtime", str(tmp_path / "new.pb"), *args).exit_code == 0
    result = run("realtime", str(tmp_path / "old.pb"), *args)
    assert result.exit_code == 2
    assert "is older than the data served" in result.output and "kept the newer data" in result.output
    assert realtime_source(project / "build", "caltrain") is not None


def test_estimates_follow_the_state_file_replaced_or_deleted_while_read(project: Path, tmp_path: Path):
    """Readers keep a connection per thread; a state file put in place of the one they opened, or
    deleted and made again by the next feed, is what they read next (not the file they opened)."""
    sched = scheduled(TRIP, dt.date(2017, 7, 25))
    state = project / "build" / "live" / "realtime" / "caltrain.sqlite"
    start = int(time.time()) + 10

    def load(ts: int, delay: int) -> None:
        msg = message(ts)
        tu = msg.entity.add(id="late").trip_update
        tu.trip.trip_id, tu.trip.start_date = TRIP, "20170725"
        tu.stop_time_update.add(stop_sequence=1).departure.delay = delay
        path = tmp_path / f"{ts}.pb"
        path.write_bytes(msg.SerializeToString())
        result = run("realtime", str(path), "--feed", "caltrain", "--type", "trip_updates", "--project", str(project))
        assert result.exit_code == 0, result.output

    def delay_served() -> int | None:
        source = realtime_source(project / "build", "caltrain")
        got = source.stop_update(TRIP, "20170725", sched[2][0], 2) if source else None
        return got.delay_s if got else None

    def remove_state() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{state}{suffix}").unlink(missing_ok=True)

    load(start, 60)
    assert delay_served() == 60
    kept = tmp_path / "kept.sqlite"
    with sqlite3.connect(state) as src, sqlite3.connect(kept) as dst:
        src.backup(dst)
    load(start + 1, 120)
    assert delay_served() == 120
    remove_state()
    os.replace(kept, state)  # an older copy put back
    assert delay_served() == 60
    remove_state()
    assert realtime_source(project / "build", "caltrain") is None
    load(start + 2, 180)  # the next feed makes the file again
    assert delay_served() == 180
