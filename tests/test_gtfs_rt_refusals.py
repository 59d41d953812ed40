"""Every GTFS-Realtime feed type, refused, keeps what it last served; alerts that name routes by
trip, agency or route type are drawn on those routes.

test_gtfs_rt.py polls the vehicles of a real server through every kind of broken feed; here
TripUpdates and Alerts go through the same refusals (another static feed, stale, cut short,
older than the data served, not protobuf) with ``citytwin realtime`` and ``load_feed``, and the
served estimates and alert items are compared before and after. Expectations come from the feeds
built here and from the zip's text tables (csv module).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import shapely
from click.testing import CliRunner
from google.transit import gtfs_realtime_pb2 as rt

from gtfs_rt_feeds import CALTRAIN, message, table
from pipelines.catalog import load_catalog
from pipelines.cli import main
from pipelines.gtfs_rt import FeedRefused, realtime_source
from pipelines.gtfs_rt.load import load_feed
from pipelines.gtfs_rt.store import RealtimeState
from pipelines.live import LiveLayer

pytestmark = pytest.mark.realdata("gtfs", "caltrain-2017-07-24.zip")
CATALOG = """\
name: refused feeds
layers:
  alerts: {kind: live, title: Caltrain alerts}
realtime:
  caltrain: {alerts_layer: alerts, max_age_s: 600}
"""
TRIP = "6512099-CT-17JUL-Combo-Weekday-01"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("refusals")
    (root / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    result = CliRunner().invoke(main, ["ingest", str(CALTRAIN), "--layer", "caltrain", "--project", str(root)])
    assert result.exit_code == 0, result.output
    return root


def cli_load(project: Path, tmp_path: Path, kind: str, data: bytes):
    path = tmp_path / f"{kind}-{time.monotonic_ns()}.pb"
    path.write_bytes(data)
    return CliRunner().invoke(main, ["realtime", str(path), "--feed", "caltrain", "--type", kind,
                                     "--project", str(project)])


def broken_variants(good: rt.FeedMessage, foreign: rt.FeedMessage, now: int) -> dict[str, tuple[bytes, str]]:
    """Each broken version of a feed, with what its refusal must say."""
    stale, older = rt.FeedMessage(), rt.FeedMessage()
    stale.CopyFrom(good)
    stale.header.timestamp = now - 3600
    older.CopyFrom(good)
    older.header.timestamp = good.header.timestamp - 1
    foreign.header.timestamp = good.header.timestamp + 1
    return {
        "foreign": (foreign.SerializeToString(), "name ids the static feed 'caltrain' lacks"),
        "stale": (stale.SerializeToString(), "s old, over max_age_s 600"),
        "cut short": (good.SerializeToString()[:-5], "not a complete GTFS-Realtime message"),
        "older": (older.SerializeToString(), "is older than the data served"),
        "not protobuf": (b'{"entity": []}', "not a complete GTFS-Realtime message"),
    }


def test_refused_trip_updates_keep_the_last_good_estimates(project: Path, tmp_path: Path):
    stops = sorted((s for s in table("stop_times.txt") if s["trip_id"] == TRIP), key=lambda s: int(s["stop_sequence"]))
    now = int(time.time())
    good = message(now)
    tu = good.entity.add(id="late").trip_update
    tu.trip.trip_id, tu.trip.start_date = TRIP, "20170725"
    tu.stop_time_update.add(stop_sequence=2).departure.delay = 300
    assert cli_load(project, tmp_path, "trip_updates", good.SerializeToString()).exit_code == 0

    def estimates() -> list:
        source = realtime_source(project / "build", "caltrain")
        return [source.stop_update(TRIP, "20170725", s["stop_id"], int(s["stop_sequence"])) for s in stops]

    before = estimates()
    assert [e.delay_s for e in before[1:]] == [300] * (len(stops) - 1)
    foreign = message(now)
    for i in range(3):
        e = foreign.entity.add(id=f"muni-{i}").trip_update
        e.trip.trip_id, e.trip.start_date = f"MUNI-{i}", "20170725"
        e.stop_time_update.add(stop_sequence=2).departure.delay = 60
    for name, (data, needle) in broken_variants(good, foreign, now).items():
        result = cli_load(project, tmp_path, "trip_updates", data)
        assert result.exit_code == 2 and needle in result.output, (name, result.output)
        status = RealtimeState(project / "build", "caltrain").status("trip_updates")
        assert needle in status.error, name
        assert status.header_timestamp == now, name  # the figures of the good feed stay
        assert estimates() == before, name


def alert(msg: rt.FeedMessage, eid: str, *selectors: dict, texts: dict[str, str] | None = None) -> rt.Alert:
    a = msg.entity.add(id=eid).alert
    for sel in selectors:
        e = a.informed_entity.add()
        for key, value in sel.items():
            if key == "trip_id":
                e.trip.trip_id = value
            else:
                setattr(e, key, value)
    for lang, text in (texts or {"en": eid}).items():
        t = a.header_text.translation.add(text=text)
        if lang:
            t.language = lang
    return a


def route_lines(route_ids: set[str]) -> shapely.Geometry:
    """The shapes of every trip of ``route_ids``, from trips.txt and shapes.txt."""
    shape_ids = {t["shape_id"] for t in table("trips.txt") if t["route_id"] in route_ids}
    pts: dict[str, list] = {}
    for p in sorted(table("shapes.txt"), key=lambda p: int(p["shape_pt_sequence"])):
        if p["shape_id"] in shape_ids:
            pts.setdefault(p["shape_id"], []).append((float(p["shape_pt_lon"]), float(p["shape_pt_lat"])))
    return shapely.MultiLineString(list(pts.values()))


def test_alerts_by_trip_agency_and_route_type_and_refused_alerts_keep_the_last_good(project: Path, tmp_path: Path):
    routes = table("routes.txt")
    trip_route = next(t["route_id"] for t in table("trips.txt") if t["trip_id"] == TRIP)
    agency = table("agency.txt")[0]["agency_id"]
    now = int(time.time()) + 10
    good = message(now)
    alert(good, "by-trip", {"trip_id": TRIP}, texts={"": "Delayed", "es": "Retrasado"})
    alert(good, "by-type", {"route_type": 3})
    alert(good, "by-agency", {"agency_id": agency})
    report = load_feed(load_catalog(project), "caltrain", "alerts", good.SerializeToString(), "good.pb")
    assert report.status.loaded == 3
    layer = LiveLayer(load_catalog(project), "alerts")
    served = {f["id"]: f for f in layer.features()}
    want = {"by-trip": {trip_route}, "by-type": {r["route_id"] for r in routes if r["route_type"] == "3"},
            "by-agency": {r["route_id"] for r in routes}}
    assert set(served) == {f"{eid}/routes" for eid in want}
    for eid, route_ids in want.items():
        f = served[f"{eid}/routes"]
        assert set(f["properties"]["route_ids"]) == route_ids, eid
        drawn = shapely.geometry.shape(f["geometry"])
        assert shapely.Polygon.from_bounds(*drawn.bounds).equals_exact(
            shapely.Polygon.from_bounds(*route_lines(route_ids).bounds), 1e-6), eid
    # a translation without a language is the feed's default text, kept beside the others
    assert served["by-trip/routes"]["properties"]["header_text"] == {"": "Delayed", "es": "Retrasado"}
    assert served["by-trip/routes"]["properties"]["informed_entities"] == [{"trip": {"trip_id": TRIP}}]
    assert served["by-type/routes"]["properties"]["informed_entities"] == [{"route_type": 3}]

    foreign = message(now)
    for i in range(3):
        alert(foreign, f"muni-{i}", {"route_id": f"MUNI-{i}"})
    for name, (data, needle) in broken_variants(good, foreign, now - 10).items():
        with pytest.raises(FeedRefused) as err:
            load_feed(load_catalog(project), "caltrain", "alerts", data, f"{name}.pb")
        assert needle in str(err.value), name
        assert needle in RealtimeState(project / "build", "caltrain").status("alerts").error, name
        assert {f["id"]: f for f in layer.features()} == served, name
