"""GTFS-Realtime feeds with values no real feed sends (NaN bearings, times in the year 30000,
absolute times in the year 292 billion): one such entity must not keep a feed from loading or break the
answers of the layer it feeds. Built with the bindings library on the Caltrain schedule and
read back through the live routes in process; expectations come from the feed built here.
"""
from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.transit import gtfs_realtime_pb2 as rt
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.live_routes import live_routes
from gtfs_rt_feeds import CALTRAIN, message, table, vehicles_along_shapes
from pipelines.catalog import load_catalog
from pipelines.cli import main
from pipelines.gtfs_rt import realtime_source
from pipelines.gtfs_rt.load import load_feed
from pipelines.gtfs_rt.store import RealtimeState

pytestmark = pytest.mark.realdata("gtfs", "caltrain-2017-07-24.zip")
CATALOG = """\
name: hostile feeds
layers:
  vehicles: {kind: live, title: Caltrain vehicles}
realtime:
  caltrain: {vehicles_layer: vehicles, max_age_s: 600}
"""
TRIP = "6512099-CT-17JUL-Combo-Weekday-01"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    (root / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    result = CliRunner().invoke(main, ["ingest", str(CALTRAIN), "--layer", "caltrain", "--project", str(root)])
    assert result.exit_code == 0, result.output
    return root


def served(root: Path) -> dict[str, dict]:
    with TestClient(Starlette(routes=live_routes(load_catalog(root)))) as client:
        r = client.get("/live/vehicles/items")
    assert r.status_code == 200, r.text
    return {f["id"]: f for f in r.json()["features"]}


def test_vehicles_with_non_finite_numbers_or_far_future_times_load_and_serve(project: Path):
    now = int(time.time())
    data, expected = vehicles_along_shapes(now, 4)
    msg = rt.FeedMessage.FromString(data)
    odd = {e.id: e.vehicle for e in msg.entity}
    odd["veh-0"].position.bearing = math.nan
    odd["veh-1"].position.speed = math.inf
    odd["veh-2"].timestamp = 10**12  # the year 33658
    report = load_feed(load_catalog(project), "caltrain", "vehicle_positions", msg.SerializeToString(), "odd.pb")
    assert report.status.loaded == 4
    items = served(project)
    assert set(items) == set(expected)
    assert items["veh-0"]["properties"]["bearing"] is None
    assert items["veh-0"]["properties"]["speed_mps"] == 12.5
    assert items["veh-1"]["properties"]["speed_mps"] is None
    assert items["veh-1"]["properties"]["bearing"] == pytest.approx(expected["veh-1"]["bearing"], abs=0.06)
    # a vehicle time past its feed's is the feed's time (the item must still expire after it)
    header = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    assert dt.datetime.fromisoformat(items["veh-2"]["properties"]["timestamp"]) == header


def test_an_absurd_trip_update_time_leaves_that_stop_out_and_loads_the_rest(project: Path):
    stops = sorted((s for s in table("stop_times.txt") if s["trip_id"] == TRIP), key=lambda s: int(s["stop_sequence"]))
    msg = message(int(time.time()) + 5)
    tu = msg.entity.add(id="late").trip_update
    tu.trip.trip_id, tu.trip.start_date = TRIP, "20170725"
    u = tu.stop_time_update.add(stop_sequence=2)
    u.departure.delay = 120
    u = tu.stop_time_update.add(stop_sequence=4)
    u.departure.time = 2**63 - 1  # int64's largest: the year 292 billion
    report = load_feed(load_catalog(project), "caltrain", "trip_updates", msg.SerializeToString(), "odd.pb")
    assert report.status.loaded == 1
    assert RealtimeState(project / "build", "caltrain").status("trip_updates").error is None
    source = realtime_source(project / "build", "caltrain")
    assert source.stop_update(TRIP, "20170725", stops[1]["stop_id"], 2).delay_s == 120
    assert source.stop_update(TRIP, "20170725", stops[2]["stop_id"], 3).delay_s == 120
    # the impossible time is no data for its stop: the delay before it runs on
    assert source.stop_update(TRIP, "20170725", stops[3]["stop_id"], 4).delay_s == 120


def _hang(*_args) -> None:
    """A child load that never ends (a decoder stuck on some feed)."""
    time.sleep(600)


def test_a_load_that_hangs_is_stopped_and_the_next_feed_loads(project: Path, monkeypatch):
    from pipelines.gtfs_rt import poller

    catalog = load_catalog(project)
    now = int(time.time())
    good, expected = vehicles_along_shapes(now + 1, 8)
    job = poller._Job("caltrain", "vehicle_positions", "https://feeds.example/vehicles.pb", 30.0)
    p = poller.Poller(catalog)
    p._pool = poller._child_pool()
    try:
        monkeypatch.setattr(poller, "LOAD_TIMEOUT_S", 2.0)
        monkeypatch.setattr(poller, "_load_in_child", _hang)
        p._pool.submit(int).result(timeout=60)  # the child has started
        child = next(iter(p._pool._processes.values()))
        started = time.monotonic()
        with pytest.raises(poller.FeedRefused, match="took over 2 s and was stopped"):
            p._load(job, good)
        assert time.monotonic() - started < 30
        child.join(timeout=10)
        assert not child.is_alive()  # killed, not left running beside the new one
        assert "took over 2 s" in RealtimeState(project / "build", "caltrain").status("vehicle_positions").error
        monkeypatch.undo()
        report = p._load(job, good)  # a new child takes the next feed
        assert report.status.loaded == 8 and set(served(project)) == set(expected)
    finally:
        p._pool.shutdown(cancel_futures=True)
