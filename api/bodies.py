"""Request bodies: read at most a limit, and parse JSON only when it is not nested deeper than
any real payload (the JSON parser recurses, and 5,000 nested lists end in a RecursionError)."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import Message, Receive

import numpy as np

MAX_JSON_DEPTH = 64  # a GeoJSON FeatureCollection of MultiPolygons is 8 deep
_STEP = np.zeros(256, dtype=np.int8)  # +1 for a byte that opens an array or object, -1 for one that closes it
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1


class BodyError(ValueError):
    """A body the server refuses: ``status`` is 400 or 413, the message says what to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_limited(chunks: AsyncIterator[bytes], limit: int, advice: str,
                       content_length: str | None = None) -> bytes:
    """The whole body, or BodyError 413 once it is over ``limit`` bytes: at once when the declared
    Content-Length says so, else as soon as the chunks read pass the limit (the rest is never read)."""
    declared = (content_length or "").strip()
    if declared.isascii() and declared.isdecimal() and int(declared) > limit:
        raise BodyError(413, f"the body is over {limit:,} bytes; {advice}")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BodyError(413, f"the body is over {limit:,} bytes; {advice}")
    return bytes(body)


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in ``body`` (brackets inside strings skipped), in numpy."""
    data = np.frombuffer(body, dtype=np.uint8)
    if data.size == 0:
        return 0
    at = np.arange(data.size, dtype=np.int64 if data.size >= 2**31 else np.int32)
    # A quote is escaped when an odd number of backslashes runs right before it.
    last_other = np.maximum.accumulate(np.where(data != ord("\\"), at, -1))
    run = at - 1 - np.concatenate(([-1], last_other[:-1]))
    quotes = (data == ord('"')) & (run % 2 == 0)
    outside = np.cumsum(quotes, dtype=at.dtype) % 2 == 0
    return int(np.cumsum(np.where(outside, _STEP[data], 0), dtype=at.dtype).max(initial=0))


def parse_json(body: bytes, expected: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in ``body``; BodyError 400 naming ``expected`` when it is not JSON or too deep."""
    if json_depth(body) > max_depth:
        raise BodyError(400, f"the body nests arrays or objects more than {max_depth} levels deep; send {expected}")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(400, f"the body is not JSON ({exc}); send {expected}") from None


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's own words (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}[type(value)]


def replay(first: Message, original: Receive) -> Receive:
    """A receive channel that gives ``first`` (a message already read), then the real channel's."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await original()

    return receive


def body_once(payload: bytes, original: Receive) -> Receive:
    """Deliver ``payload`` as the whole request body, then defer to the real channel (disconnects)."""
    return replay({"type": "http.request", "body": payload, "more_body": False}, original)
