"""Searching the catalog's records with the OGC API Records core query parameters.

- ``q``: comma-separated terms; a record matches when any term occurs, ignoring case, in its
  title, description or keywords.
- ``bbox``: minlon,minlat,maxlon,maxlat in CRS84 (six numbers: the heights are not compared);
  a record matches when its extent touches the box; records without an extent (styles, live
  layers) do not. A box with minlon > maxlon crosses the antimeridian.
- ``type``: comma-separated; matches the record type (``dataset``, ``style``) or the layer's
  catalog kind (``buildings``, ``raster``, ...).
- ``datetime``: an instant or an interval (RFC 3339, ``..`` or empty for an open end); a record
  matches when its time (when the layer was built) lies in it. A record without a time matches
  only the fully open interval. A date alone stands for that whole UTC day.
- ``ids``: comma-separated record ids; ``externalIds``: records carry none, so none match.
- ``limit`` (1 to 1000, default 10) and ``offset`` page the matches, in catalog order.

Any other parameter is a 400 naming it, so a misspelt filter never returns a wrong answer.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timezone

from api.params import BadParameter, integer

PARAMS = ("f", "q", "bbox", "type", "datetime", "ids", "externalIds", "limit", "offset")
FORMATS = ("json", "geojson")
DEFAULT_LIMIT, MAX_LIMIT = 10, 1000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_OPEN = ("", "..")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Query:
    terms: tuple[str, ...] = ()
    bbox: Box | None = None
    types: frozenset[str] = frozenset()
    start: datetime | None = None
    end: datetime | None = None
    bounded_time: bool = False  # a datetime other than the fully open interval was given
    ids: frozenset[str] | None = None
    external_ids: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_bbox(value: str) -> Box:
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise BadParameter(f"parameter 'bbox' must be 4 numbers minlon,minlat,maxlon,maxlat (or 6 with heights), "
                           f"got {len(parts)}")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise BadParameter(f"parameter 'bbox' must be numbers, got {value[:80]!r}") from None
    if not all(math.isfinite(n) for n in nums):
        raise BadParameter("parameter 'bbox' must be finite numbers")
    w, s, e, n = nums if len(nums) == 4 else (nums[0], nums[1], nums[3], nums[4])
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise BadParameter(f"parameter 'bbox' {value[:80]!r} is not a lon/lat box: longitudes within ±180, "
                           "latitudes within ±90, minlat not above maxlat")
    return w, s, e, n


def _instant(text: str, end: bool) -> datetime:
    if _DATE.fullmatch(text):
        return datetime.combine(date.fromisoformat(text), time.max if end else time.min, tzinfo=timezone.utc)
    if not _DATE_TIME.fullmatch(text):
        raise BadParameter(f"datetime {text[:40]!r} is not an RFC 3339 date or date-time "
                           "(e.g. 2024-05-01 or 2024-05-01T09:00:00Z)")
    try:
        return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(f"datetime {text[:40]!r} is not a date of the calendar") from None


def parse_datetime(value: str) -> tuple[datetime | None, datetime | None, bool]:
    """(start, end, bounded) of a datetime parameter; open ends are None."""
    parts = value.split("/")
    if len(parts) > 2 or not value:
        raise BadParameter("parameter 'datetime' must be one instant or one interval 'start/end'")
    if len(parts) == 1:
        return _instant(value, end=False), _instant(value, end=True), True
    start = None if parts[0] in _OPEN else _instant(parts[0], end=False)
    end = None if parts[1] in _OPEN else _instant(parts[1], end=True)
    if start and end and start > end:
        raise BadParameter(f"datetime {value[:60]!r}: the interval ends before it starts")
    return start, end, start is not None or end is not None


def parse_query(params: list[tuple[str, str]]) -> Query:
    """The search in ``params`` (the query string's pairs); BadParameter names what is wrong."""
    unknown = sorted({k for k, _ in params if k not in PARAMS})
    if unknown:
        raise BadParameter(f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(repr(k[:40]) for k in unknown[:5])}; the catalog takes {', '.join(PARAMS)}")
    given: Mapping[str, str] = {k: v for k, v in params if v != ""}  # an empty value is no filter
    if given.get("f", "json") not in FORMATS:
        raise BadParameter(f"f={given['f'][:20]!r}: the catalog is offered as JSON only (f=json)")
    fields: dict = {"limit": integer(given, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
                    "offset": integer(given, "offset", 0, 0)}
    if "q" in given:
        fields["terms"] = tuple(t.casefold() for t in _list(given["q"]))
    if "bbox" in given:
        fields["bbox"] = parse_bbox(given["bbox"])
    if "type" in given:
        fields["types"] = frozenset(_list(given["type"]))
    if "datetime" in given:
        fields["start"], fields["end"], fields["bounded_time"] = parse_datetime(given["datetime"])
    if "ids" in given:
        fields["ids"] = frozenset(_list(given["ids"]))
    fields["external_ids"] = "externalIds" in given
    return Query(**fields)


def record_box(record: dict) -> Box | None:
    geometry = record.get("geometry")
    if not geometry:
        return None
    if geometry["type"] == "Point":
        x, y = geometry["coordinates"]
        return x, y, x, y
    ring = geometry["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


def _touches(box: Box, query: Box) -> bool:
    w, s, e, n = query
    if s > box[3] or n < box[1]:
        return False
    spans = [(w, e)] if w <= e else [(w, 180.0), (-180.0, e)]
    return any(lo <= box[2] and hi >= box[0] for lo, hi in spans)


def _text(record: dict) -> str:
    props = record["properties"]
    return "\n".join([props.get("title", ""), props.get("description", ""), *props.get("keywords", [])]).casefold()


def matches(record: dict, query: Query) -> bool:
    props = record["properties"]
    if query.external_ids or (query.ids is not None and record["id"] not in query.ids):
        return False
    if query.types and not query.types.intersection({props.get("type"), props.get("kind")}):
        return False
    if query.terms and not any(t in _text(record) for t in query.terms):
        return False
    if query.bbox is not None:
        box = record_box(record)
        if box is None or not _touches(box, query.bbox):
            return False
    if query.bounded_time:
        stamp = (record.get("time") or {}).get("timestamp")
        if stamp is None:
            return False
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        if (query.start and when < query.start) or (query.end and when > query.end):
            return False
    return True


def search(records: list[dict], query: Query) -> tuple[list[dict], int]:
    """The page of matching records and how many match in all."""
    found = [r for r in records if matches(r, query)]
    return found[query.offset:query.offset + query.limit], len(found)
