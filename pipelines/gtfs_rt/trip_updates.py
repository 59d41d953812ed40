"""TripUpdates: per-stop estimates for every stop of an updated trip, and the real-time
source the departures read them from.

Each update is matched to the static trip's stops (by stop_sequence, else by stop_id). A
stop without its own StopTimeUpdate takes the delay of the latest earlier stop that has
one (GTFS-Realtime delay propagation); NO_DATA stops that propagation; a SKIPPED stop is
marked skipped and passes the delay on; a CANCELED trip skips every stop. Absolute times
become delays against the schedule, delays become estimates, so each stored stop carries both.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from google.transit import gtfs_realtime_pb2 as rt

from pipelines.departures import StopUpdate
from pipelines.gtfs_rt.static import StaticFeed, Trip
from pipelines.gtfs_rt.store import read_status, reader, state_path

_STU = rt.TripUpdate.StopTimeUpdate
_TRIP = rt.TripDescriptor
Row = tuple[str, str, int, str, int | None, int | None, int | None, int]


_LATEST = 2**32  # POSIX seconds of the year 2106: an event time past it (or before 1970) is no data


def _event_time(event: rt.TripUpdate.StopTimeEvent) -> int | None:
    """The event's absolute time; None without one, or with one no clock could mean (a feed's bug)."""
    return int(event.time) if event.HasField("time") and 0 < event.time < _LATEST else None


def _event_delay(event: rt.TripUpdate.StopTimeEvent, scheduled: float) -> int | None:
    if event.HasField("delay"):
        return int(event.delay)
    at = _event_time(event)
    if at is not None and np.isfinite(scheduled):
        return int(at - scheduled)
    return None


def _match(trip: Trip, updates) -> dict[int, rt.TripUpdate.StopTimeUpdate]:
    """Static stop index -> its StopTimeUpdate; updates naming no stop of the trip are left out."""
    out: dict[int, rt.TripUpdate.StopTimeUpdate] = {}
    start = 0
    for u in updates:
        if u.HasField("stop_sequence"):
            hit = np.flatnonzero(trip.stop_sequence == u.stop_sequence)
        else:
            hit = np.flatnonzero(trip.stop_id[start:] == u.stop_id) + start
        if len(hit):
            out[int(hit[0])] = u
            start = int(hit[0]) + 1
    return out


def stop_rows(static: StaticFeed, tu: rt.TripUpdate, trip_id: str, start_date: str) -> list[Row]:
    """The stored estimates of every stop of one updated trip."""
    trip = static.trips[trip_id]
    origin = static.day_origin(start_date)
    sched_arr, sched_dep = origin + trip.arrival_s, origin + trip.departure_s
    canceled = tu.trip.schedule_relationship == _TRIP.CANCELED
    updates = _match(trip, tu.stop_time_update)
    delay: int | None = int(tu.delay) if tu.HasField("delay") else None
    rows: list[Row] = []
    for i in range(len(trip.stop_sequence)):
        u = updates.get(i)
        skipped = canceled or (u is not None and u.schedule_relationship == _STU.SKIPPED)
        if u is not None and u.schedule_relationship == _STU.NO_DATA:
            delay = None
            continue
        if u is not None and not skipped:
            arr = _event_delay(u.arrival, sched_arr[i]) if u.HasField("arrival") else None
            dep = _event_delay(u.departure, sched_dep[i]) if u.HasField("departure") else None
            arr = arr if arr is not None else (dep if dep is not None else delay)
            dep = dep if dep is not None else arr
            delay = dep
            at_arr, at_dep = _event_time(u.arrival), _event_time(u.departure)
            times = (at_arr if at_arr is not None else _plus(sched_arr[i], arr),
                     at_dep if at_dep is not None else _plus(sched_dep[i], dep))
        elif skipped:
            times = (None, None)
        elif delay is not None:
            times = (_plus(sched_arr[i], delay), _plus(sched_dep[i], delay))
        else:
            continue
        rows.append((trip_id, start_date, int(trip.stop_sequence[i]), str(trip.stop_id[i]),
                     *(int(t) if t is not None else None for t in times), None if canceled else delay, int(skipped)))
    return rows


def _plus(scheduled: float, delay: int | None) -> int | None:
    return None if delay is None or not np.isfinite(scheduled) else int(scheduled) + delay


class TripUpdateSource:
    """The departures' RealtimeSource over one feed's stored estimates."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def stop_update(self, trip_id: str, start_date: str | None, stop_id: str,
                    stop_sequence: int) -> StopUpdate | None:
        sql = ("SELECT arrival_time, departure_time, delay_s, skipped, stop_id FROM stop_updates "
               "WHERE trip_id = ? AND stop_sequence = ?")
        params: list = [trip_id, stop_sequence]
        if start_date:
            sql += " AND start_date = ?"
            params.append(start_date)
        row = reader(self.path).execute(sql + " ORDER BY start_date DESC LIMIT 1", params).fetchone()
        if row is None or row[4] != stop_id:
            return None
        return StopUpdate(row[0], row[1], row[2], bool(row[3]))


def realtime_source(build_dir: Path, feed: str) -> TripUpdateSource | None:
    """The real-time source of ``feed``'s TripUpdates, or None when none are loaded or they have expired."""
    path = state_path(build_dir, feed)
    if not path.is_file():
        return None
    status = read_status(path, "trip_updates")
    if status.expires_at is None or status.expires_at <= time.time():
        return None
    return TripUpdateSource(path)
