"""Next departures at a GTFS stop: the static timetable, merged with real-time updates when a source has them.

Times are POSIX seconds. A real-time source answers per (trip, service date, stop, stop_sequence);
``pipelines.gtfs_rt.realtime_source(build_dir, feed)`` gives one for a feed, or None.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
