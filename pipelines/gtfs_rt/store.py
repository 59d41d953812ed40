"""What a feed's real-time state keeps between processes: one SQLite file per GTFS feed,
``<build>/live/realtime/<feed>.sqlite`` (WAL, so readers in every server process never wait
on the one writer): the per-stop TripUpdate estimates and a status row per feed type.

A good TripUpdates feed replaces every estimate in one transaction; a refused feed only
writes its status, so the last good estimates keep serving until they expire.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

from geo.names import check_layer_name
from pipelines.sqlite_wal import wal_connection

REALTIME_DIR = Path("live") / "realtime"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS stop_updates (
    trip_id TEXT NOT NULL, start_date TEXT NOT NULL, stop_sequence INTEGER NOT NULL, stop_id TEXT NOT NULL,
    arrival_time INTEGER, departure_time INTEGER, delay_s INTEGER, skipped INTEGER NOT NULL,
    PRIMARY KEY (trip_id, start_date, stop_sequence)
);
CREATE TABLE IF NOT EXISTS status (kind TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class FeedStatus:
    """The last load of one feed type: what was accepted, and the last refusal."""

    source: str = ""
    ok_at: float | None = None  # when the last good feed was loaded
    header_timestamp: int | None = None  # of the last good feed
    expires_at: float | None = None  # its data stops serving then
    entities: int = 0
    loaded: int = 0
    unmatched: int = 0
    unmatched_example: str | None = None
    error: str | None = None  # the last refusal, cleared by the next good feed
    error_at: float | None = None


def state_path(build: Path, feed: str) -> Path:
    return Path(build) / REALTIME_DIR / f"{check_layer_name(feed)}.sqlite"


class RealtimeState:
    """One feed's real-time file: status per type and the TripUpdate estimates."""

    def __init__(self, build: Path, feed: str) -> None:
        self.path = state_path(build, feed)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            con.executescript(_SCHEMA)

    def connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return wal_connection(self.path)

    def status(self, kind: str) -> FeedStatus:
        with self.connect() as con:
            row = con.execute("SELECT value FROM status WHERE kind = ?", (kind,)).fetchone()
        return FeedStatus(**json.loads(row[0])) if row else FeedStatus()

    def statuses(self) -> dict[str, FeedStatus]:
        with self.connect() as con:
            rows = con.execute("SELECT kind, value FROM status ORDER BY kind").fetchall()
        return {kind: FeedStatus(**json.loads(value)) for kind, value in rows}

    def _put_status(self, con: sqlite3.Connection, kind: str, status: FeedStatus) -> None:
        con.execute("INSERT OR REPLACE INTO status VALUES (?, ?)", (kind, json.dumps(asdict(status))))

    def refused(self, kind: str, source: str, message: str) -> None:
        """Record a refusal; the last good data and its figures stay."""
        with self.connect() as con:
            con.execute("BEGIN IMMEDIATE")
            status = self._status_in(con, kind)
            status.source, status.error, status.error_at = source, message, time.time()
            self._put_status(con, kind, status)
            con.execute("COMMIT")

    def accepted(self, kind: str, status: FeedStatus, rows: list[tuple] | None = None) -> None:
        """Record a good load; ``rows`` (for TripUpdates) replace every estimate in the same transaction."""
        with self.connect() as con:
            con.execute("BEGIN IMMEDIATE")
            if rows is not None:
                con.execute("DELETE FROM stop_updates")
                con.executemany("INSERT OR REPLACE INTO stop_updates VALUES (?,?,?,?,?,?,?,?)", rows)
            self._put_status(con, kind, status)
            con.execute("COMMIT")

    @staticmethod
    def _status_in(con: sqlite3.Connection, kind: str) -> FeedStatus:
        row = con.execute("SELECT value FROM status WHERE kind = ?", (kind,)).fetchone()
        return FeedStatus(**json.loads(row[0])) if row else FeedStatus()


def read_status(path: Path, kind: str) -> FeedStatus:
    """``kind``'s status through this thread's read connection (no write, no schema check)."""
    row = reader(path).execute("SELECT value FROM status WHERE kind = ?", (kind,)).fetchone()
    return FeedStatus(**json.loads(row[0])) if row else FeedStatus()


_LOCAL = threading.local()


def reader(path: Path) -> sqlite3.Connection:
    """A read connection to the file now at ``path`` for this thread, kept open (departures ask per
    stop) while that file stays there: an open connection would go on reading a file deleted or
    replaced under it. OSError when there is no file."""
    st = os.stat(path)
    here = (st.st_dev, st.st_ino)  # not reused while the kept connection holds the old file open
    cons: dict[Path, tuple[tuple[int, int], sqlite3.Connection]] = _LOCAL.__dict__.setdefault("cons", {})
    found = cons.get(path)
    if found is not None and found[0] == here:
        return found[1]
    if found is not None:
        found[1].close()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=15)
    cons[path] = (here, con)
    return con
