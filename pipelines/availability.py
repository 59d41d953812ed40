"""Places with live availability (parking, EV chargers): a live layer with an ``availability`` block.

A place is a Point whose properties carry ``capacity`` and ``free`` (whole numbers, free at most
capacity), ``status`` (one of STATUSES; without one it follows free: 0 is full) and ``updated``
(ISO 8601 with an offset, or POSIX seconds). It is kept as a live item (pipelines.live) with
``timestamp`` = updated and ``expires`` = updated + stale_after_s, so a place nobody updates
drops out instead of showing old numbers. Places are posted to /live/<layer>/items like other
live items, or read from a polled JSON/CSV document whose columns the catalog maps.

Polled documents are untrusted: bounded in bytes by the poller, in records by
pipelines.live.MAX_ITEMS_PER_WRITE, and every value is checked; a bad record refuses the
whole document with a message naming the record and the field.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from datetime import datetime, timezone
from typing import Any, get_args

from pipelines.catalog import AvailabilityConfig, AvailabilityPoll, PlaceStatus
from pipelines.live import MAX_ID_LENGTH, MAX_ITEMS_PER_WRITE, LiveItem, LiveItemError, parse_items

STATUSES: tuple[str, ...] = get_args(PlaceStatus)
MAX_CAPACITY = 1_000_000
FUTURE_SLACK_S = 300  # clocks differ; an 'updated' further ahead than this is a wrong time
_TS_SANE = (946_684_800, 4_102_444_800)  # POSIX seconds of 2000-01-01 and 2100-01-01


def _whole(value: Any, key: str, where: str) -> int:
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAPACITY:
        raise LiveItemError(f"{where}: {key} must be a whole number from 0 to {MAX_CAPACITY:,}, "
                            f"got {str(value)[:40]!r}")
    return value


def _updated(value: Any, where: str, now: float) -> datetime:
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdecimal():
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (math.isfinite(value) and _TS_SANE[0] <= value <= _TS_SANE[1]):
            raise LiveItemError(f"{where}: updated {str(value)[:40]!r} is not POSIX seconds between 2000 and 2100")
        t = datetime.fromtimestamp(value, timezone.utc)
    else:
        try:
            t = datetime.fromisoformat(value.strip()) if isinstance(value, str) else None
        except ValueError:
            t = None
        if t is None or t.tzinfo is None:
            raise LiveItemError(f"{where}: updated must be an ISO 8601 time with an offset (e.g. "
                                f"2024-07-01T09:30:00+09:00) or POSIX seconds, got {str(value)[:40]!r}")
    if t.timestamp() > now + FUTURE_SLACK_S:
        raise LiveItemError(f"{where}: updated {t.isoformat()} is in the future; send the time the counts "
                            "were taken (check the sender's clock and offset)")
    return t.astimezone(timezone.utc)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def place_feature(feature: Any, n: int, spec: AvailabilityConfig, now: float, noun: str = "item") -> Any:
    """``feature`` with checked availability and the live timestamp/expires derived from updated.
    Anything that is not a Feature with properties is passed on for parse_items to refuse.
    ``noun`` is what messages call it: a posted item, or a record of a polled document."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature" or \
            not isinstance(feature.get("properties"), dict):
        return feature
    fid = feature.get("id")
    where = f"{noun} {n}" + (f" (id {str(fid)[:MAX_ID_LENGTH]!r})" if fid is not None else "")
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        raise LiveItemError(f"{where}: a place needs a Point geometry (its entrance or centre), "
                            f"got {str(geometry.get('type') if isinstance(geometry, dict) else geometry)[:40]!r}")
    props = feature["properties"]
    capacity = _whole(props.get("capacity"), "capacity", where)
    free = _whole(props.get("free"), "free", where)
    if free > capacity:
        raise LiveItemError(f"{where}: free {free} is more than capacity {capacity}")
    status = props.get("status")
    if status is None:
        status = "full" if free == 0 else "available"
    elif status not in STATUSES:
        hint = "; map the source's values to these under availability.poll.statuses" if noun == "record" else ""
        raise LiveItemError(f"{where}: status {str(status)[:40]!r} is not one of {', '.join(STATUSES)}{hint}")
    updated = _updated(props.get("updated"), where, now)
    expires = datetime.fromtimestamp(updated.timestamp() + spec.stale_after_s, timezone.utc)
    return {**feature, "properties": {
        **props, "capacity": capacity, "free": free, "status": status, "category": spec.category,
        "updated": _iso(updated), "timestamp": _iso(updated), "expires": _iso(expires)}}


def place_payload(payload: Any, spec: AvailabilityConfig, now: float | None = None, noun: str = "item") -> Any:
    """A posted Feature or FeatureCollection of places, ready for pipelines.live.parse_items."""
    now = time.time() if now is None else now
    if isinstance(payload, dict) and payload.get("type") == "Feature":
        return place_feature(payload, 1, spec, now, noun)
    features = payload.get("features") if isinstance(payload, dict) else None
    if isinstance(features, list) and len(features) <= MAX_ITEMS_PER_WRITE:
        return {**payload, "features": [place_feature(f, n, spec, now, noun)
                                        for n, f in enumerate(features, start=1)]}
    return payload  # parse_items says what is wrong with it


# -- polled documents --------------------------------------------------------------------------
def _records(data: bytes, poll: AvailabilityPoll, source: str) -> list[Any]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LiveItemError(f"{source}: not UTF-8 text (byte {exc.start}); the source must send UTF-8") from None
    if poll.format == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        if rows and None in rows[0]:
            raise LiveItemError(f"{source}: CSV row 1 has more values than the header has columns")
        return rows
    try:
        doc: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise LiveItemError(f"{source}: not JSON ({str(exc)[:80]})") from None
    for key in (poll.records or "").split(".") if poll.records else ():
        if not isinstance(doc, dict) or key not in doc:
            raise LiveItemError(f"{source}: no key {key!r} on the path {poll.records!r} to the list of places; "
                                "fix availability.poll.records in citytwin.yaml")
        doc = doc[key]
    if not isinstance(doc, list):
        raise LiveItemError(f"{source}: the places must be a JSON list (found {type(doc).__name__}); name the "
                            "path to it with availability.poll.records")
    return doc


def _coordinate(record: dict, key: str, where: str) -> float:
    value = record.get(key)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise LiveItemError(f"{where}: {key!r} must be a number (WGS84 degrees), got {str(value)[:40]!r}")
    return number


def _record_feature(record: Any, n: int, poll: AvailabilityPoll, source: str) -> dict:
    where = f"{source}: record {n}"
    if not isinstance(record, dict):
        raise LiveItemError(f"{where}: a place must be an object (JSON) or a row (CSV)")
    f = poll.fields
    missing = [k for k in (f.id, f.lon, f.lat, f.capacity, f.free, f.updated) if record.get(k) in (None, "")]
    if missing:
        raise LiveItemError(f"{where}: {', '.join(repr(k) for k in missing)} missing or empty; map the source's "
                            "names under availability.poll.fields in citytwin.yaml")
    props: dict[str, Any] = {"capacity": record[f.capacity], "free": record[f.free], "updated": record[f.updated]}
    if f.status is not None and record.get(f.status) not in (None, ""):
        raw = record[f.status]
        props["status"] = poll.statuses.get(str(raw), raw)
    if f.name is not None and isinstance(record.get(f.name), str):
        props["name"] = record[f.name]
    fid = record[f.id]
    return {"type": "Feature", "id": fid if isinstance(fid, (str, int)) else str(fid)[:MAX_ID_LENGTH + 1],
            "geometry": {"type": "Point", "coordinates": [_coordinate(record, f.lon, where),
                                                          _coordinate(record, f.lat, where)]},
            "properties": props}


def read_places(data: bytes, spec: AvailabilityConfig, source: str, now: float | None = None) -> list[LiveItem]:
    """The places of a polled document (bytes already bounded); LiveItemError names the first bad record."""
    assert spec.poll is not None
    records = _records(data, spec.poll, source)
    if len(records) > MAX_ITEMS_PER_WRITE:
        raise LiveItemError(f"{source}: {len(records):,} places; at most {MAX_ITEMS_PER_WRITE:,} per layer")
    features = [_record_feature(r, n, spec.poll, source) for n, r in enumerate(records, start=1)]
    if not features:
        return []
    try:
        return parse_items(place_payload({"type": "FeatureCollection", "features": features}, spec, now, "record"))
    except LiveItemError as exc:
        raise LiveItemError(f"{source}: {exc}") from None
