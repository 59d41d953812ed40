"""Reading a GTFS-Realtime feed safely: bounded bytes, a cheap count of entities, then the
protobuf decode and the header checks.

The byte bound holds before anything is kept in memory (a file's size is looked at first; an
HTTP body is read by pipelines.bounded_fetch, which drops it at the bound). The entity count walks the message's
top-level fields without decoding them, so a feed of too many entities, or one cut short, is
refused before the protobuf parser builds a single object.
"""
from __future__ import annotations

import os
from pathlib import Path

from google.protobuf.message import DecodeError
from google.transit import gtfs_realtime_pb2 as rt

from geo.errors import SourceError

FEED_TYPES = ("vehicle_positions", "trip_updates", "alerts")
_ENTITY_FIELD = 2  # FeedMessage.entity


class FeedRefused(SourceError):
    """A feed that must not replace the data served: the message names the feed and why."""


def read_file(path: Path, max_bytes: int) -> bytes:
    """The feed file's bytes; refused unread when it is larger than ``max_bytes``."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise FeedRefused(f"{path}: cannot be read ({exc.strerror}); check the path to the feed file") from None
    if size > max_bytes:
        raise FeedRefused(_too_big(str(path), size, max_bytes))
    with open(path, "rb") as fh:  # the file may have grown since: read no more than the bound
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FeedRefused(_too_big(str(path), len(data), max_bytes, at_least=True))
    return data


def _too_big(where: str, size: int, limit: int, at_least: bool = False) -> str:
    return (f"{where}: {'over ' if at_least else ''}{size:,} bytes, over the feed's max_bytes of {limit:,}; "
            "refused unread. Raise realtime.<feed>.max_bytes in citytwin.yaml if the feed is genuine")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise IndexError
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return value, pos
        shift += 7


def count_entities(data: bytes, where: str, max_entities: int) -> int:
    """Entities in a FeedMessage, from its top-level field tags; FeedRefused when the bytes end
    inside a field or there are more than ``max_entities``."""
    pos, count = 0, 0
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            wire = tag & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 2:
                size, pos = _varint(data, pos)
                pos += size
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                raise IndexError
            if pos > len(data):
                raise IndexError
            if tag >> 3 == _ENTITY_FIELD:
                count += 1
                if count > max_entities:
                    raise FeedRefused(f"{where}: more than {max_entities:,} entities, over the feed's max_entities; "
                                      "refused. Raise realtime.<feed>.max_entities if the feed is genuine")
    except IndexError:
        raise FeedRefused(f"{where}: not a complete GTFS-Realtime message (cut short or not protobuf at byte "
                          f"{min(pos, len(data)):,} of {len(data):,}); kept the last good data") from None
    return count


def decode(data: bytes, where: str, max_entities: int) -> rt.FeedMessage:
    """The FeedMessage in ``data``; FeedRefused for anything that is not a complete full-dataset feed."""
    count_entities(data, where, max_entities)
    msg = rt.FeedMessage()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeWarning) as exc:
        raise FeedRefused(f"{where}: not a GTFS-Realtime message ({str(exc)[:120]}); kept the last good data") from None
    if not msg.HasField("header") or not msg.header.gtfs_realtime_version:
        raise FeedRefused(f"{where}: the feed has no header with gtfs_realtime_version; not a GTFS-Realtime feed")
    if msg.header.incrementality != rt.FeedHeader.FULL_DATASET:
        raise FeedRefused(f"{where}: a DIFFERENTIAL feed; only FULL_DATASET feeds are read")
    if not msg.header.timestamp:
        raise FeedRefused(f"{where}: the header has no timestamp, so its age cannot be told; refused")
    return msg


def check_age(msg: rt.FeedMessage, where: str, now: float, max_age_s: float) -> None:
    """Refuse a feed whose header timestamp is more than ``max_age_s`` away from ``now``."""
    age = now - msg.header.timestamp
    if age > max_age_s:
        raise FeedRefused(f"{where}: stale: header timestamp {msg.header.timestamp} is {age:,.0f} s old, over "
                          f"max_age_s {max_age_s:g}; kept the last good data")
    if -age > max_age_s:
        raise FeedRefused(f"{where}: header timestamp {msg.header.timestamp} is {-age:,.0f} s in the future; "
                          "check the feed's clock; kept the last good data")
