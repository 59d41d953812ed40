"""Next departures for the stops the transit and AR routes answer with.

A feed's timetable (pipelines.departures.Timetable) is built from its GTFS zip, the one the
catalog names for ``<feed>_stops``, on first use and again only when that file changes. The
real-time source comes from ``pipelines.gtfs_rt.realtime_source`` once per request and feed;
without that package or a feed there, departures are the schedule alone.

Query parameters: ``departures`` (per route, 0 for none, at most MAX_PER_ROUTE) and ``at``
(ISO 8601 with an offset; default now).
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from api.params import BadParameter, integer
from geo.errors import CitytwinError
from pipelines.catalog import Catalog
from pipelines.departures import RealtimeSource, Timetable, next_departures
from pipelines.readers.gtfs import read_gtfs
from pipelines.transit import catalog_feed

DEFAULT_PER_ROUTE = 3
MAX_PER_ROUTE = 10
AT_YEARS = (1900, 2199)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoardQuery:
    per_route: int
    at: int  # POSIX seconds


def board_query(params: Mapping[str, str]) -> BoardQuery:
    per_route = integer(params, "departures", DEFAULT_PER_ROUTE, 0, MAX_PER_ROUTE)
    raw = (params.get("at") or "").strip()
    if not raw:
        return BoardQuery(per_route, int(time.time()))
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadParameter(f"parameter 'at' must be an ISO 8601 time with an offset, e.g. "
                           f"2017-07-29T23:55:00-07:00, got {raw[:40]!r}")
    if not AT_YEARS[0] <= when.year <= AT_YEARS[1]:  # service dates a few days around it must exist
        raise BadParameter(f"parameter 'at' must be in the years {AT_YEARS[0]} to {AT_YEARS[1]}, got {raw[:40]!r}")
    return BoardQuery(per_route, int(when.timestamp()))


def board_parameters() -> list[dict]:
    """The OpenAPI query parameters of board_query."""
    return [
        {"name": "departures", "in": "query", "required": False,
         "description": "Next departures per route for each stop (0 for none)",
         "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PER_ROUTE, "default": DEFAULT_PER_ROUTE}},
        {"name": "at", "in": "query", "required": False,
         "description": f"Departures after this time (ISO 8601 with an offset, years {AT_YEARS[0]} to "
                        f"{AT_YEARS[1]}); default now",
         "schema": {"type": "string", "format": "date-time", "pattern": "^(19|20|21)[0-9]{2}-"}},
    ]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass
class Boards:
    """One request's view of the timetables: real-time sources looked up once, problems noted once."""

    owner: DepartureBoards
    realtime: dict[str, RealtimeSource | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def departures(self, feed: str, stop_id: str, q: BoardQuery) -> list[dict]:
        if q.per_route == 0:
            return []
        try:
            table = self.owner.timetable(feed)
        except CitytwinError as exc:
            if str(exc) not in self.notes:
                self.notes.append(f"departures of feed '{feed}' unavailable: {exc}")
            return []
        if table is None:
            return []
        try:
            if feed not in self.realtime:
                self.realtime[feed] = self.owner.realtime(feed)
            found = next_departures(table, stop_id, q.at, q.per_route, realtime=self.realtime[feed])
        except (CitytwinError, sqlite3.Error, OSError) as exc:  # a broken real-time store: the schedule still stands
            self.realtime[feed] = None
            self.notes.append(f"real-time departures of feed '{feed}' unavailable ({exc}); scheduled times only")
            found = next_departures(table, stop_id, q.at, q.per_route)
        return [d.as_dict(table.tz) for d in found]


class DepartureBoards:
    """Timetables of the project's feeds, each rebuilt when its zip changes."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._tables: dict[str, tuple[tuple, Timetable]] = {}

    def timetable(self, feed: str) -> Timetable | None:
        """The feed's timetable, or None when no GTFS zip in the catalog feeds it."""
        name = f"{feed}_stops"
        found = catalog_feed(self.catalog, name) if name in self.catalog.layers else None
        if found is None:
            return None
        path = found[1]
        stamp = _stamp(path)
        if stamp is None:
            raise CitytwinError(f"{path} (the source of '{name}' in citytwin.yaml) is missing; restore it")
        with self._lock:  # one build per change, however many requests wait for it
            cached = self._tables.get(feed)
            if cached is None or cached[0] != stamp:
                started = time.perf_counter()
                table = Timetable(read_gtfs(path, encoding=self.catalog.layers[name].encoding))
                cached = self._tables[feed] = (stamp, table)
                log.info("departures of feed '%s': %d stop calls from %s in %.2f s", feed, len(table.dep), path,
                         time.perf_counter() - started)
            return cached[1]

    def realtime(self, feed: str) -> RealtimeSource | None:
        try:
            from pipelines.gtfs_rt import realtime_source
        except ImportError:
            return None
        return realtime_source(self.catalog.build_path, feed)

    def request(self) -> Boards:
        return Boards(self)
