"""GTFS static feeds: the tables of a feed .zip as checked, typed pandas DataFrames.

Members are read straight out of the zip (no extraction to disk). Every column is read
as text first, because ids such as '0012' must keep their leading zeros; numbers, times
and dates are then parsed per column, and an unparsable value is a SourceError naming
the file inside the zip, the column and the row. A UTF-8 byte-order mark is tolerated,
as is a feed kept in one sub-folder of the zip.

Structural problems (a required file or column missing, a duplicate id, a stop without
coordinates, a stop time at a stop that stops.txt lacks) are errors; other dangling
references (a trip of an unknown route, a stop time of an unknown trip) are dropped with a
warning, because real feeds carry a few of those and the rest of the feed is still useful.
A stop time at an unknown stop is different: the departures and route lines through that
stop would silently be wrong, so the feed is refused.

A table is parsed from a stream, and the bytes it expands to are bounded: a member whose
declared size is over the limit (``CITYTWIN_GTFS_MAX_MEMBER_MB``, default 512) or that
expands more than 200-fold is refused before it is read, and the bytes actually read are
counted against the same limit, so a few MB of zip cannot become gigabytes of tables.
"""
from __future__ import annotations

import io
import os
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from geo.errors import SourceError

REQUIRED_FILES = ("stops.txt", "routes.txt", "trips.txt", "stop_times.txt")
_MARKERS = {*REQUIRED_FILES, "agency.txt", "calendar.txt", "calendar_dates.txt", "shapes.txt"}

# file -> (columns that must be present, columns read when present)
_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "stops.txt": (("stop_id", "stop_lat", "stop_lon"),
                  ("stop_code", "stop_name", "location_type", "parent_station", "wheelchair_boarding")),
    "routes.txt": (("route_id", "route_type"),
                   ("agency_id", "route_short_name", "route_long_name", "route_color", "route_text_color")),
    "trips.txt": (("route_id", "service_id", "trip_id"), ("shape_id", "direction_id", "trip_headsign")),
    "stop_times.txt": (("trip_id", "stop_id", "stop_sequence"),
                       ("arrival_time", "departure_time", "stop_headsign", "pickup_type")),
    "shapes.txt": (("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"), ()),
    "calendar.txt": (("service_id", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                      "sunday", "start_date", "end_date"), ()),
    "calendar_dates.txt": (("service_id", "date", "exception_type"), ()),
    "agency.txt": ((), ("agency_id", "agency_timezone")),
}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")
# location_type 3 (generic node) and 4 (boarding area) may lack coordinates (GTFS reference).
_COORDS_OPTIONAL = (3, 4)
MAX_MEMBER_ENV = "CITYTWIN_GTFS_MAX_MEMBER_MB"
_DEFAULT_MAX_MEMBER_MB = 512  # parsed tables take several times their text size in memory
# Deflate shrinks real GTFS tables 5-20 fold; rows repeated to blow up memory shrink ~1000 fold.
MAX_RATIO = 200
_RATIO_FROM = 16 << 20  # smaller members are harmless however well they compress


@dataclass
class GtfsFeed:
    source: str  # the zip's path, for messages
    stops: pd.DataFrame  # stop_lat/stop_lon float (NaN only for location_type 3/4), ints for the codes
    routes: pd.DataFrame
    trips: pd.DataFrame
    stop_times: pd.DataFrame  # + arrival_s/departure_s: seconds after service-day noon-minus-12h, NaN if blank
    shapes: pd.DataFrame | None = None  # sorted by shape_id, shape_pt_sequence
    calendar: pd.DataFrame | None = None  # start_date/end_date as datetime64, weekday flags as bool
    calendar_dates: pd.DataFrame | None = None  # date as datetime64, exception_type int
    agency: pd.DataFrame | None = None  # agency_id, agency_timezone as text
    warnings: list[str] = field(default_factory=list)


def find_members(zf: zipfile.ZipFile, source: str) -> dict[str, str]:
    """Base name -> member name for the feed's .txt files (the folder holding stops.txt)."""
    names = [n for n in zf.namelist() if not n.endswith("/")]
    stops = [n for n in names if posixpath.basename(n) == "stops.txt" and not n.startswith("__MACOSX/")]
    if not stops:
        found = ", ".join(sorted(posixpath.basename(n) for n in names if n.endswith(".txt"))[:12]) or "no .txt files"
        raise SourceError(f"{source}: not a GTFS feed: no stops.txt inside (found: {found}). "
                          f"A GTFS zip needs {', '.join(REQUIRED_FILES)} at its top level.")
    if len(stops) > 1:
        raise SourceError(f"{source}: holds {len(stops)} stops.txt files ({', '.join(stops[:3])}); "
                          "zip one feed per file")
    folder = posixpath.dirname(stops[0])
    return {posixpath.basename(n): n for n in names if posixpath.dirname(n) == folder and n.endswith(".txt")}


def is_gtfs_zip(path: Path) -> bool:
    """True for a readable zip holding any GTFS table, so an incomplete feed still gets
    the GTFS reader's precise message rather than a generic 'unsupported file'."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(posixpath.basename(n) in _MARKERS for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_gtfs(path: Path, encoding: str | None = None) -> GtfsFeed:
    """Read and check a GTFS static feed; raise SourceError on anything structural."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise SourceError(f"{source}: no such file. Check the path to the GTFS .zip.")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise SourceError(f"{source}: not a zip file; a GTFS feed is a .zip of .txt tables") from None
    with zf:
        members = find_members(zf, source)
        missing = [f for f in REQUIRED_FILES if f not in members]
        if missing:
            raise SourceError(f"{source}: the GTFS feed lacks {', '.join(missing)}; "
                              f"a feed needs {', '.join(REQUIRED_FILES)}")
        enc = encoding or "utf-8-sig"
        limit = member_limit()
        for name in _COLUMNS:  # every table is checked before any is parsed
            if name in members:
                _check_member(zf.getinfo(members[name]), f"{source}: {name}", limit)
        tables = {name: _read_table(zf, members[name], source, name, enc, limit)
                  for name in _COLUMNS if name in members}
    feed = GtfsFeed(
        source=source,
        stops=_stops(tables["stops.txt"], source),
        routes=_routes(tables["routes.txt"], source),
        trips=_trips(tables["trips.txt"], source),
        stop_times=_stop_times(tables["stop_times.txt"], source),
        shapes=_shapes(tables["shapes.txt"], source) if "shapes.txt" in tables else None,
        calendar=_calendar(tables["calendar.txt"], source) if "calendar.txt" in tables else None,
        calendar_dates=(_calendar_dates(tables["calendar_dates.txt"], source)
                        if "calendar_dates.txt" in tables else None),
        agency=tables.get("agency.txt"),
    )
    _drop_dangling(feed)
    return feed


# -- bounds on what a member may expand to -----------------------------------------
def member_limit() -> int:
    """Bytes one table may hold uncompressed: CITYTWIN_GTFS_MAX_MEMBER_MB, else the default."""
    raw = os.environ.get(MAX_MEMBER_ENV, "").strip()
    if not raw:
        return _DEFAULT_MAX_MEMBER_MB << 20
    if not raw.isdigit() or int(raw) == 0:
        raise SourceError(f"{MAX_MEMBER_ENV}={raw!r}: give a whole number of megabytes, e.g. 2048")
    return int(raw) << 20


def _too_big(where: str, size: int, limit: int) -> str:
    return (f"{where}: {size / 2**20:,.0f} MB uncompressed, over the limit of {limit >> 20:,} MB per GTFS table; "
            f"if the feed is genuine and the machine has the memory, raise the limit with "
            f"{MAX_MEMBER_ENV}=<megabytes>")


def _check_member(info: zipfile.ZipInfo, where: str, limit: int) -> None:
    """Refuse a member by the sizes the zip declares, before a byte of it is inflated."""
    if info.file_size > limit:
        raise SourceError(_too_big(where, info.file_size, limit))
    if info.file_size > _RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise SourceError(
            f"{where}: expands {info.file_size / max(info.compress_size, 1):,.0f}-fold "
            f"({info.file_size / 2**20:,.0f} MB from {info.compress_size / 2**10:,.0f} kB in the zip), over the "
            f"{MAX_RATIO}-fold limit; real tables compress 5-20 fold, so this is not read as a feed. "
            "Re-create the zip from the feed's .txt files")


class _Counted(io.RawIOBase):
    """A member's bytes as they are inflated, refused once more than ``limit`` have come out:
    the declared size is only what the zip says."""

    def __init__(self, raw: io.BufferedIOBase, where: str, limit: int) -> None:
        self._raw, self._where, self._limit, self._count = raw, where, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        self._count += n
        if self._count > self._limit:
            raise SourceError(_too_big(self._where, self._count, self._limit))
        return n


def _open_member(zf: zipfile.ZipFile, member: str, where: str, limit: int) -> io.BufferedReader:
    return io.BufferedReader(_Counted(zf.open(member), where, limit), buffer_size=1 << 20)


# -- reading -------------------------------------------------------------------
def _clean(name: object) -> str:
    return str(name).strip().lstrip("\ufeff").strip()


def _read_table(zf: zipfile.ZipFile, member: str, source: str, name: str, encoding: str,
                limit: int) -> pd.DataFrame:
    required, optional = _COLUMNS[name]
    where = f"{source}: {name}"
    wanted = set(required) | set(optional)
    try:
        with _open_member(zf, member, where, limit) as fh:
            header = [_clean(c) for c in pd.read_csv(fh, nrows=0, encoding=encoding).columns]
        absent = [c for c in required if c not in header]
        if name == "stop_times.txt" and not {"arrival_time", "departure_time"} & set(header):
            absent.append("arrival_time/departure_time")
        if absent:
            raise SourceError(f"{where}: required column {', '.join(absent)} is missing "
                              f"(columns found: {', '.join(header) or 'none'})")
        with _open_member(zf, member, where, limit) as fh:
            df = pd.read_csv(fh, dtype=str, keep_default_na=False, na_filter=False, encoding=encoding,
                             skipinitialspace=True, usecols=lambda c: _clean(c) in wanted)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{where}: not {encoding} text ({exc.reason} at byte {exc.start}); GTFS is UTF-8, "
                          "or give the feed's encoding with --encoding") from None
    except pd.errors.EmptyDataError:
        raise SourceError(f"{where}: the file is empty; it needs a header line naming "
                          f"{', '.join(required)}") from None
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{where}: the zip entry is damaged ({exc}): its data does not match the size or "
                          "checksum the zip declares. Re-create the zip from the feed's .txt files") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise SourceError(f"{where}: cannot be read as CSV: {str(exc).strip().splitlines()[0]}") from None
    df.columns = [_clean(c) for c in df.columns]
    if df.columns.duplicated().any():
        raise SourceError(f"{where}: column {df.columns[df.columns.duplicated()][0]!r} appears twice")
    df = df.apply(lambda s: s.str.strip())
    for col in optional:
        if col not in df.columns:
            df[col] = ""
    return df


def _numbers(df: pd.DataFrame, col: str, where: str, *, default: float | None = None,
             blank_ok: bool = False) -> pd.Series:
    """Column ``col`` as float; blanks become ``default`` (or NaN when blank_ok)."""
    text = df[col]
    vals = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = vals.isna() & (text != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SourceError(f"{where}: column {col}: {text.iloc[i]!r} on data row {i + 1} is not a number")
    blank = text == ""
    if blank.any():
        if default is not None:
            vals = vals.fillna(default)
        elif not blank_ok:
            i = int(np.flatnonzero(blank.to_numpy())[0])
            raise SourceError(f"{where}: column {col} is empty on data row {i + 1}; it needs a value")
    return vals.astype("float64")


def _require_values(df: pd.DataFrame, col: str, where: str) -> None:
    blank = (df[col] == "").to_numpy()
    if blank.any():
        raise SourceError(f"{where}: column {col} is empty on data row {int(np.flatnonzero(blank)[0]) + 1}")


def _unique(df: pd.DataFrame, col: str, where: str) -> None:
    dup = df[col].duplicated()
    if dup.any():
        raise SourceError(f"{where}: {col} {df.loc[dup, col].iloc[0]!r} occurs more than once; ids must be unique")


def _seconds(df: pd.DataFrame, col: str, where: str) -> pd.Series:
    """GTFS times (H:MM:SS, hours may pass 24) as seconds; blank -> NaN."""
    text = df[col]
    parts = text.str.extract(_TIME)
    bad = parts[0].isna() & (text != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SourceError(f"{where}: column {col}: {text.iloc[i]!r} on data row {i + 1} is not a time "
                          "like 08:05:00 (hours may pass 24)")
    p = parts.astype("float64")
    return p[0] * 3600 + p[1] * 60 + p[2]


def _dates(df: pd.DataFrame, col: str, where: str) -> pd.Series:
    vals = pd.to_datetime(df[col], format="%Y%m%d", errors="coerce")
    bad = vals.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SourceError(f"{where}: column {col}: {df[col].iloc[i]!r} on data row {i + 1} is not a date "
                          "like 20170724")
    return vals


# -- per table -----------------------------------------------------------------
def _stops(df: pd.DataFrame, source: str) -> pd.DataFrame:
    where = f"{source}: stops.txt"
    if df.empty:
        raise SourceError(f"{where}: holds no stops")
    _require_values(df, "stop_id", where)
    _unique(df, "stop_id", where)
    df["location_type"] = _numbers(df, "location_type", where, default=0).astype("int64")
    df["wheelchair_boarding"] = _numbers(df, "wheelchair_boarding", where, default=0).astype("int64")
    df["stop_lat"] = _numbers(df, "stop_lat", where, blank_ok=True)
    df["stop_lon"] = _numbers(df, "stop_lon", where, blank_ok=True)
    no_coords = (df["stop_lat"].isna() | df["stop_lon"].isna()) & ~df["location_type"].isin(_COORDS_OPTIONAL)
    if no_coords.any():
        i = int(np.flatnonzero(no_coords.to_numpy())[0])
        raise SourceError(f"{where}: stop {df['stop_id'].iloc[i]!r} (data row {i + 1}) has no stop_lat/stop_lon; "
                          "stops, stations and entrances need coordinates")
    off = (df["stop_lat"].abs() > 90) | (df["stop_lon"].abs() > 180)
    if off.any():
        i = int(np.flatnonzero(off.to_numpy())[0])
        raise SourceError(f"{where}: stop {df['stop_id'].iloc[i]!r} has stop_lat {df['stop_lat'].iloc[i]}, "
                          f"stop_lon {df['stop_lon'].iloc[i]}: outside WGS84 latitude/longitude range")
    return df


def _routes(df: pd.DataFrame, source: str) -> pd.DataFrame:
    where = f"{source}: routes.txt"
    if df.empty:
        raise SourceError(f"{where}: holds no routes")
    _require_values(df, "route_id", where)
    _unique(df, "route_id", where)
    df["route_type"] = _numbers(df, "route_type", where).astype("int64")
    return df


def _trips(df: pd.DataFrame, source: str) -> pd.DataFrame:
    where = f"{source}: trips.txt"
    for col in ("trip_id", "route_id", "service_id"):
        _require_values(df, col, where)
    _unique(df, "trip_id", where)
    return df


def _stop_times(df: pd.DataFrame, source: str) -> pd.DataFrame:
    where = f"{source}: stop_times.txt"
    _require_values(df, "trip_id", where)
    _require_values(df, "stop_id", where)
    df["stop_sequence"] = _numbers(df, "stop_sequence", where).astype("int64")
    df["arrival_s"] = _seconds(df, "arrival_time", where)
    df["departure_s"] = _seconds(df, "departure_time", where)
    return df.sort_values(["trip_id", "stop_sequence"], kind="stable").reset_index(drop=True)


def _shapes(df: pd.DataFrame, source: str) -> pd.DataFrame:
    where = f"{source}: shapes.txt"
    _require_values(df, "shape_id", where)
    for col in ("shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"):
        df[col] = _numbers(df, col, where)
    return df.sort_values(["shape_id", "shape_pt_sequence"], kind="stable").reset_index(drop=True)


def _calendar(df: pd.DataFrame, source: str) -> pd.DataFrame:
    where = f"{source}: calendar.txt"
    for day in WEEKDAYS:
        df[day] = _numbers(df, day, where) == 1
    df["start_date"] = _dates(df, "start_date", where)
    df["end_date"] = _dates(df, "end_date", where)
    return df


def _calendar_dates(df: pd.DataFrame, source: str) -> pd.DataFrame:
    where = f"{source}: calendar_dates.txt"
    df["date"] = _dates(df, "date", where)
    df["exception_type"] = _numbers(df, "exception_type", where).astype("int64")
    return df


def _drop_dangling(feed: GtfsFeed) -> None:
    """Drop trips of unknown routes and stop times of unknown trips, with warnings; refuse a
    stop time at an unknown stop."""
    src = feed.source
    unknown_route = ~feed.trips["route_id"].isin(feed.routes["route_id"])
    if unknown_route.any():
        first = feed.trips.loc[unknown_route, "route_id"].iloc[0]
        feed.warnings.append(f"{src}: trips.txt: {int(unknown_route.sum())} trip(s) name a route_id not in "
                             f"routes.txt (first: {first!r}); they were left out")
        feed.trips = feed.trips[~unknown_route].reset_index(drop=True)
    st = feed.stop_times
    bad_trip = ~st["trip_id"].isin(feed.trips["trip_id"])
    bad_stop = ~st["stop_id"].isin(feed.stops["stop_id"])
    if bad_stop.any():
        first = st[bad_stop].iloc[0]
        raise SourceError(f"{src}: stop_times.txt: {int(bad_stop.sum())} row(s) name a stop_id not in stops.txt "
                          f"(first: stop_id {first['stop_id']!r} in trip {first['trip_id']!r} at stop_sequence "
                          f"{first['stop_sequence']}); add the stop to stops.txt or fix the stop_id")
    if bad_trip.any():
        feed.warnings.append(f"{src}: stop_times.txt: {int(bad_trip.sum())} row(s) name a trip_id not in "
                             f"trips.txt (first: {st.loc[bad_trip, 'trip_id'].iloc[0]!r}); they were left out")
        feed.stop_times = st[~bad_trip].reset_index(drop=True)
