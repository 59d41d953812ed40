"""Which trips run on a representative day of a GTFS feed.

Departure counts are only meaningful for one service day: summing every trip of a
feed would add the Saturday, Sunday and weekday timetables together. So we pick the
*busiest weekday*: over every date the feed's calendar.txt and calendar_dates.txt
cover, the Monday-Friday date with the most active trips (the earliest such date on a
tie). A feed whose service runs only at weekends falls back to its busiest date of any
day; a feed with neither calendar file falls back to all trips, and says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.readers.gtfs import WEEKDAYS, GtfsFeed


@dataclass(frozen=True)
class ServiceDay:
    date: pd.Timestamp | None  # None: no calendar, every trip counted
    trip_ids: frozenset[str]
    basis: str  # how the day was chosen, for reports and layer descriptions

    @property
    def label(self) -> str:
        return self.date.strftime("%Y-%m-%d") if self.date is not None else "all"


def active_services(feed: GtfsFeed) -> pd.DataFrame:
    """(date, service_id) pairs: calendar.txt ranges plus calendar_dates additions, minus removals."""
    frames = []
    if feed.calendar is not None and not feed.calendar.empty:
        for row in feed.calendar.itertuples(index=False):
            days = pd.date_range(row.start_date, row.end_date, freq="D")
            runs = np.array([bool(getattr(row, WEEKDAYS[d])) for d in range(7)])
            days = days[runs[days.day_of_week]]
            frames.append(pd.DataFrame({"date": days, "service_id": row.service_id}))
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {"date": pd.Series([], dtype="datetime64[ns]"), "service_id": pd.Series([], dtype=object)})
    cd = feed.calendar_dates
    if cd is not None and not cd.empty:
        added = cd.loc[cd["exception_type"] == 1, ["date", "service_id"]]
        removed = cd.loc[cd["exception_type"] == 2, ["date", "service_id"]]
        pairs = pd.concat([pairs, added], ignore_index=True).drop_duplicates()
        if not removed.empty:
            key = pd.MultiIndex.from_frame(removed)
            pairs = pairs[~pd.MultiIndex.from_frame(pairs[["date", "service_id"]]).isin(key)]
    return pairs.reset_index(drop=True)


def representative_day(feed: GtfsFeed) -> ServiceDay:
    """The busiest weekday of the feed and the trips that run on it (see the module docstring)."""
    has_calendar = feed.calendar is not None or feed.calendar_dates is not None
    if not has_calendar:
        return ServiceDay(None, frozenset(feed.trips["trip_id"]),
                          "all trips (the feed has neither calendar.txt nor calendar_dates.txt)")
    trips_per_service = feed.trips.groupby("service_id").size().rename("trips")
    pairs = active_services(feed).join(trips_per_service, on="service_id")
    per_date = pairs.groupby("date")["trips"].sum()
    per_date = per_date[per_date > 0]
    if per_date.empty:
        return ServiceDay(None, frozenset(), "no date of the calendar has any trip")
    weekdays = per_date[per_date.index.day_of_week < 5]
    pool, kind = (weekdays, "busiest weekday") if not weekdays.empty else (per_date, "busiest day (no weekday service)")
    best = pool[pool == pool.max()].index.min()
    services = set(pairs.loc[pairs["date"] == best, "service_id"])
    trip_ids = frozenset(feed.trips.loc[feed.trips["service_id"].isin(services), "trip_id"])
    return ServiceDay(best, trip_ids, f"{kind} {best:%Y-%m-%d} ({best:%A}), {len(trip_ids)} trips")
