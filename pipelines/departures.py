"""Next departures at a GTFS stop: the static timetable, merged with real-time updates when a source has them.

GTFS service-day rules: a trip runs on a service date D (calendar.txt weekdays within start/end
dates, then calendar_dates.txt adds or removes D), and its times count from "noon minus 12h" of
D in the agency timezone, so 24:04:00 on Saturday is 00:04 on Sunday and a DST day still has
its times right. The timetable is built once per feed: one array of (stop, departure seconds)
sorted, so a request slices a stop's rows with a binary search per candidate service date
instead of scanning the feed.

A stop's last call of a trip (nothing departs) and calls with pickup_type 1 (no pickup) are not
departures. Times are POSIX seconds. A real-time source answers per (trip, service date, stop,
stop_sequence); ``pipelines.gtfs_rt.realtime_source(build_dir, feed)`` gives one for a feed, or None.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from geo.errors import SourceError
from pipelines.readers.gtfs import WEEKDAYS, GtfsFeed

DEFAULT_HORIZON_S = 24 * 3600
# With real-time data a trip scheduled this long ago may still be coming (it runs late).
REALTIME_LOOKBACK_S = 2 * 3600
_DAY = 86_400


@dataclass(frozen=True)
class StopUpdate:
    """What a TripUpdate says about one stop of one trip (times in POSIX seconds, delay in seconds)."""

    arrival_time: int | None
    departure_time: int | None
    delay_s: int | None
    skipped: bool


class RealtimeSource(Protocol):
    def stop_update(self, trip_id: str, start_date: str | None, stop_id: str,
                    stop_sequence: int) -> StopUpdate | None:
        """The update for this stop of this trip (start_date YYYYMMDD, the service date), or None."""
        ...


@dataclass(frozen=True)
class Departure:
    route_id: str
    route: str  # short name, else long name, else the id
    headsign: str
    trip_id: str
    service_date: str  # YYYYMMDD
    stop_sequence: int
    scheduled: int  # POSIX seconds
    estimated: int | None  # from the real-time source, when it covers the trip
    delay_s: int | None

    @property
    def time(self) -> int:
        """When it leaves as best known."""
        return self.estimated if self.estimated is not None else self.scheduled

    def as_dict(self, tz: ZoneInfo) -> dict:
        def local(t: int | None) -> str | None:
            return None if t is None else datetime.fromtimestamp(t, tz).isoformat()
        d = self.service_date
        return {"route_id": self.route_id, "route": self.route, "headsign": self.headsign, "trip_id": self.trip_id,
                "service_date": f"{d[:4]}-{d[4:6]}-{d[6:]}", "scheduled": local(self.scheduled),
                "estimated": local(self.estimated), "delay_s": self.delay_s, "realtime": self.estimated is not None}


def feed_timezone(feed: GtfsFeed) -> ZoneInfo:
    where = f"{feed.source}: agency.txt"
    if feed.agency is None:
        raise SourceError(f"{where} is missing; departures need the feed's agency_timezone (e.g. America/Los_Angeles)")
    names = [n for n in feed.agency["agency_timezone"] if n]
    if not names:
        raise SourceError(f"{where}: agency_timezone is empty; give the agencies' timezone, e.g. America/Los_Angeles")
    try:
        return ZoneInfo(names[0])
    except (ZoneInfoNotFoundError, ValueError):
        raise SourceError(f"{where}: agency_timezone {names[0][:60]!r} is not a known IANA timezone "
                          "(e.g. America/Los_Angeles)") from None


class Calendar:
    """Which services run on a date: calendar.txt ranges and weekdays, then calendar_dates.txt."""

    def __init__(self, feed: GtfsFeed, services: list[str]) -> None:
        index = {s: i for i, s in enumerate(services)}
        self.n = len(services)
        self.weekdays = np.zeros((self.n, 7), dtype=bool)
        self.start = np.full(self.n, np.iinfo(np.int64).max)  # ordinals; unlisted services never run by range
        self.end = np.full(self.n, np.iinfo(np.int64).min)
        if feed.calendar is not None:
            for row in feed.calendar.itertuples(index=False):
                i = index.get(row.service_id)
                if i is not None:
                    self.weekdays[i] = [bool(getattr(row, d)) for d in WEEKDAYS]
                    self.start[i], self.end[i] = row.start_date.toordinal(), row.end_date.toordinal()
        self.exceptions: dict[int, list[tuple[int, bool]]] = {}
        if feed.calendar_dates is not None:
            for sid, day, kind in zip(feed.calendar_dates["service_id"], feed.calendar_dates["date"],
                                      feed.calendar_dates["exception_type"]):
                if sid in index and kind in (1, 2):
                    self.exceptions.setdefault(day.toordinal(), []).append((index[sid], kind == 1))
        self._cache: dict[int, np.ndarray] = {}

    def active(self, day: date) -> np.ndarray:
        """A boolean per service: does it run on ``day``?"""
        n = day.toordinal()
        found = self._cache.get(n)
        if found is None:
            found = self.weekdays[:, day.weekday()] & (self.start <= n) & (n <= self.end)
            for i, added in self.exceptions.get(n, ()):
                found[i] = added
            if len(self._cache) > 64:  # a few days around "now" are asked for; keep the dict small
                self._cache.clear()
            self._cache[n] = found
        return found


class Timetable:
    """A feed's departures per stop, sorted by time of day, ready for next_departures()."""

    def __init__(self, feed: GtfsFeed) -> None:
        self.tz = feed_timezone(feed)
        trips = feed.trips.reset_index(drop=True)
        routes = feed.routes.set_index("route_id")
        names = routes["route_short_name"].where(routes["route_short_name"] != "", routes["route_long_name"])
        services = sorted(set(trips["service_id"]))
        self.calendar = Calendar(feed, services)
        self.trip_id = trips["trip_id"].to_numpy(dtype=object)
        self.trip_route = trips["route_id"].to_numpy(dtype=object)
        self.trip_service = trips["service_id"].map({s: i for i, s in enumerate(services)}).to_numpy(np.int64)
        self.route_name = {r: (n or r) for r, n in names.items()}
        self.trip_rank = np.argsort(np.argsort(self.trip_id.astype(str), kind="stable"))  # ties go by trip_id

        st = feed.stop_times
        last = st["trip_id"].ne(st["trip_id"].shift(-1)).to_numpy()  # rows are sorted by trip, stop_sequence
        keep = ~last & st["departure_s"].notna().to_numpy() & (st["pickup_type"] != "1").to_numpy()
        st = st[keep]
        trip_row = pd.Series(np.arange(len(trips)), index=trips["trip_id"])
        rows = pd.DataFrame({"stop": st["stop_id"].to_numpy(), "dep": st["departure_s"].to_numpy(np.int64),
                             "trip": trip_row.reindex(st["trip_id"]).to_numpy(np.int64),
                             "seq": st["stop_sequence"].to_numpy(np.int64),
                             "headsign": st["stop_headsign"].to_numpy(dtype=object)})
        rows = rows.sort_values(["stop", "dep", "trip"], kind="stable").reset_index(drop=True)
        trip_headsign = trips["trip_headsign"].to_numpy(dtype=object)
        own = rows["headsign"].to_numpy(dtype=object)
        self.headsign = np.where(own != "", own, trip_headsign[rows["trip"].to_numpy()])
        self.dep = rows["dep"].to_numpy(np.int64)
        self.trip = rows["trip"].to_numpy(np.int64)
        self.seq = rows["seq"].to_numpy(np.int64)
        stops = rows["stop"].to_numpy(dtype=object)
        starts = np.flatnonzero(np.r_[True, stops[1:] != stops[:-1]]) if len(stops) else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], len(stops)]
        self.slices = {str(stops[a]): (int(a), int(b)) for a, b in zip(starts, ends)}
        self.routes_at = {s: set(self.trip_route[self.trip[a:b]]) for s, (a, b) in self.slices.items()}
        self.max_s = int(self.dep.max()) if len(self.dep) else 0

    def day_start(self, day: date) -> int:
        """POSIX seconds of "noon minus 12h" on service date ``day`` in the feed's timezone."""
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=self.tz)
        return int(noon.timestamp()) - 12 * 3600

    def scheduled(self, stop_id: str, at: int, horizon_s: int, lookback_s: int) -> Iterator[tuple[int, int, date]]:
        """(POSIX time, row, service date) of the stop's scheduled departures in [at - lookback, at + horizon],
        soonest first (ties by trip_id), ordered in numpy and handed out one by one as the caller reads."""
        span = self.slices.get(stop_id)
        if span is None:
            return
        a, b = span
        dep = self.dep[a:b]
        today = datetime.fromtimestamp(at, self.tz).date()
        back = math.ceil((self.max_s + lookback_s) / _DAY) + 1  # service dates whose times still reach 'at'
        rows, times, days = [], [], []
        for k in range(-back, math.ceil(horizon_s / _DAY) + 1):
            day = today + timedelta(days=k)
            ref = self.day_start(day)
            lo = np.searchsorted(dep, at - lookback_s - ref, side="left")
            hi = np.searchsorted(dep, at + horizon_s - ref, side="right")
            if lo == hi:
                continue
            found = np.arange(a + lo, a + hi)
            found = found[self.calendar.active(day)[self.trip_service[self.trip[found]]]]
            rows.append(found)
            times.append(ref + self.dep[found])
            days.append(np.full(len(found), day.toordinal()))
        if not rows:
            return
        row, when, ordinal = np.concatenate(rows), np.concatenate(times), np.concatenate(days)
        for i in np.lexsort((self.trip_rank[self.trip[row]], when)):
            yield int(when[i]), int(row[i]), date.fromordinal(int(ordinal[i]))

def _merge(scheduled: int, update: StopUpdate) -> tuple[int | None, int | None]:
    """(estimated time, delay) from a stop's update: its departure, else arrival, else schedule + delay."""
    estimate = update.departure_time if update.departure_time is not None else update.arrival_time
    delay = update.delay_s
    if estimate is None and delay is not None:
        estimate = scheduled + delay
    if delay is None and estimate is not None:
        delay = estimate - scheduled
    return estimate, delay


def next_departures(table: Timetable, stop_id: str, at: int, per_route: int, *,
                    horizon_s: int = DEFAULT_HORIZON_S, realtime: RealtimeSource | None = None) -> list[Departure]:
    """Up to ``per_route`` departures of each route from ``stop_id`` at or after ``at`` (POSIX seconds),
    within ``horizon_s``, soonest first. With ``realtime``, a skipped stop is left out and a late trip
    scheduled before ``at`` still counts while its estimate is not past."""
    if per_route <= 0:
        return []
    lookback = REALTIME_LOOKBACK_S if realtime is not None else 0
    wanted = table.routes_at.get(stop_id, set())
    taken: dict[str, int] = {}
    full = 0
    found: list[Departure] = []
    for when, row, day in table.scheduled(stop_id, at, horizon_s, lookback):
        trip = int(table.trip[row])
        route = table.trip_route[trip]
        if taken.get(route, 0) >= per_route:
            continue
        estimate = delay = None
        if realtime is not None:
            update = realtime.stop_update(table.trip_id[trip], day.strftime("%Y%m%d"), stop_id, int(table.seq[row]))
            if update is not None:
                if update.skipped:
                    continue
                estimate, delay = _merge(when, update)
        if (estimate if estimate is not None else when) < at:
            continue
        found.append(Departure(route_id=route, route=table.route_name.get(route, route),
                               headsign=str(table.headsign[row]), trip_id=table.trip_id[trip],
                               service_date=day.strftime("%Y%m%d"), stop_sequence=int(table.seq[row]),
                               scheduled=when, estimated=estimate, delay_s=delay))
        taken[route] = taken.get(route, 0) + 1
        full += taken[route] == per_route
        if full >= len(wanted):
            break
    found.sort(key=lambda d: (d.time, d.trip_id))
    return found
