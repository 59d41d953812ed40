"""Next departures on a small feed written here: a service only in calendar_dates.txt, times past
24:00 in a timezone without summer time, stop headsigns over trip headsigns, a call without
pickup, trips ending at a stop, and feeds whose timezone cannot be used. (The Caltrain checks
are in test_departures.py.)"""
from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipelines.departures import Timetable, next_departures
from pipelines.readers.gtfs import read_gtfs


def small_feed(tmp_path: Path, agency: str = "agency_id,agency_name,agency_url,agency_timezone\n"
                                             "a,Test,http://example.org,Asia/Seoul\n") -> Path:
    files = {
        "agency.txt": agency,
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\nA,A,37.50,127.00\nB,B,37.51,127.01\nC,C,37.52,127.02\n",
        "routes.txt": "route_id,route_short_name,route_long_name,route_type\nR1,1,,3\nR2,,Night line,3\n",
        "trips.txt": "route_id,service_id,trip_id,trip_headsign\nR1,S,t1,To C\nR1,S,t2,To C\nR2,S,n1,To A\n",
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence,stop_headsign,pickup_type\n"
                          "t1,08:00:00,08:00:00,A,1,,0\nt1,08:10:00,08:10:00,B,2,Via B,1\n"
                          "t1,08:20:00,08:20:00,C,3,,0\n"
                          "t2,09:00:00,09:00:00,A,1,Express,0\nt2,09:10:00,09:10:00,B,2,,0\n"
                          "t2,09:20:00,09:20:00,C,3,,0\n"
                          "n1,25:30:00,25:30:00,C,1,,0\nn1,25:45:00,25:45:00,B,2,,0\nn1,26:00:00,26:00:00,A,3,,0\n",
        "calendar_dates.txt": "service_id,date,exception_type\nS,20240301,1\n",
    }
    path = tmp_path / "small.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_small_feed_rules(tmp_path: Path):
    seoul = ZoneInfo("Asia/Seoul")
    table = Timetable(read_gtfs(small_feed(tmp_path)))
    at = int(datetime(2024, 3, 1, 7, 0, tzinfo=seoul).timestamp())

    def board(stop: str, when: int = at) -> list[tuple]:
        return [(d.trip_id, d.route, d.headsign, datetime.fromtimestamp(d.scheduled, seoul).strftime("%d %H:%M"))
                for d in next_departures(table, stop, when, 5)]

    # stop headsign over the trip's; the route's long name when it has no short one; 25:30 is 01:30 next day
    assert board("A") == [("t1", "1", "To C", "01 08:00"), ("t2", "1", "Express", "01 09:00")]
    assert board("B") == [("t2", "1", "To C", "01 09:10"), ("n1", "Night line", "To A", "02 01:45")]  # t1: no pickup
    assert board("C") == [("n1", "Night line", "To A", "02 01:30")]  # t1 and t2 end at C: nothing departs
    assert board("A", int(datetime(2024, 3, 2, 7, 0, tzinfo=seoul).timestamp())) == []  # only 1 March runs


@pytest.mark.parametrize("agency,needle", [
    (None, "agency.txt is missing; departures need the feed's agency_timezone"),
    ("agency_id,agency_name,agency_url,agency_timezone\na,T,http://x,\n", "agency_timezone is empty"),
    ("agency_id,agency_name,agency_url,agency_timezone\na,T,http://x,Mars/Olympus\n",
     "agency_timezone 'Mars/Olympus' is not a known IANA timezone"),
])
def test_a_feed_without_a_usable_timezone_is_named(tmp_path: Path, agency: str | None, needle: str):
    from geo.errors import SourceError

    path = small_feed(tmp_path, agency or "")
    if agency is None:  # rewrite the zip without agency.txt
        with zipfile.ZipFile(path) as zf:
            kept = {n: zf.read(n) for n in zf.namelist() if n != "agency.txt"}
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in kept.items():
                zf.writestr(name, data)
    with pytest.raises(SourceError) as err:
        Timetable(read_gtfs(path))
    assert needle in str(err.value) and str(path) in str(err.value)
