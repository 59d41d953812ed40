"""Features items requests checked as OGC API Features Part 1 asks, before either store sees them.

- Unknown query parameters are a 400 naming them (a typo such as ``bbox_crs`` otherwise
  filters nothing and returns a wrong answer with no error); the collection's property names
  are known parameters (equality filters).
- ``datetime``: an instant or interval (RFC 3339, ``..`` or empty for an open end) is checked;
  a collection with no temporal property matches every valid value, so the parameter is then
  dropped; a malformed value is a 400.
- A numeric property filter whose value no store can hold (an integer beyond 64 bits) is a 400.
- ``offset`` beyond 2^53 (SQLite cannot bind 1e30: a 500) and a ``bbox`` of NaN or infinities
  (a box that matches nothing: an empty 200) are 400s too.
- POST .../items without a body is a 400.
- ``sortby``: an empty value means no sorting; an empty entry (``sortby=name,``) is a 400, and so
  are more than MAX_SORT_KEYS entries (each is a sort key the database works through).
- GeoJSON answers are labelled ``application/geo+json``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.bodies import replay
from api.errors import error
from api.params import BadParameter, integer
from pipelines.store import Store
from pipelines.store.gpkg import GeoPackageStore

ITEMS = re.compile(r"^/collections/([^/]+)/items(/[^/]+)?$")
ITEMS_PARAMS = frozenset({
    "f", "lang", "limit", "offset", "bbox", "bbox-crs", "crs", "datetime", "properties", "sortby", "filter",
    "filter-lang", "filter-crs", "skipGeometry", "q", "resulttype"})
ITEM_PARAMS = frozenset({"f", "lang", "crs", "properties", "skipGeometry"})
INT64 = (-(2 ** 63), 2 ** 63 - 1)
MAX_OFFSET = 2 ** 53  # beyond any store's row count, within every store's integers
MAX_SORT_KEYS = 16
_DATE = r"\d{4}-\d{2}-\d{2}"
_INSTANT = re.compile(rf"^{_DATE}(?:[Tt ]\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?(?:[Zz]|[+-]\d{{2}}:\d{{2}}))?$")
_INTEGER = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class CollectionFields:
    fields: dict[str, str]  # property -> 'string' | 'number' | 'integer' | 'boolean'
    temporal: bool  # has a time property that datetime filters on


def datetime_problem(value: str) -> str | None:
    """Why ``value`` is not a valid datetime parameter, or None."""
    parts = value.split("/")
    if len(parts) > 2 or not value:
        return "give one instant or one interval 'start/end'"
    if len(parts) == 2 and all(p in ("", "..") for p in parts):
        return None  # fully open interval
    for part in parts:
        if len(parts) == 2 and part in ("", ".."):
            continue
        if not _INSTANT.match(part):
            return f"{part[:40]!r} is not an RFC 3339 date or date-time (e.g. 2024-05-01 or 2024-05-01T09:00:00Z)"
    if len(parts) == 2 and "" not in parts and ".." not in parts and parts[0][:10] > parts[1][:10]:
        return "the interval ends before it starts"
    return None


def paging_problem(key: str, value: str) -> str | None:
    """Why ``offset`` or ``bbox`` cannot be a page or a box, or None (pygeoapi checks the rest)."""
    if key == "offset":
        try:
            integer({key: value}, key, 0, 0, MAX_OFFSET)
        except BadParameter as exc:
            return str(exc)
    elif key == "bbox" and value:
        try:
            finite = all(math.isfinite(float(v)) for v in value.split(","))
        except ValueError:
            return None  # not numbers at all: pygeoapi's own 400 says so
        if not finite:
            return f"parameter 'bbox' must hold finite numbers, got {value[:80]!r}"
    return None


def query_problem(collection: CollectionFields | None, params: list[tuple[str, str]], one_item: bool) -> str | None:
    """The 400 message for ``params`` on an items request, or None."""
    allowed = ITEM_PARAMS if one_item else ITEMS_PARAMS
    fields = collection.fields if collection else {}
    unknown = sorted({k for k, _ in params if k not in allowed and k not in fields})
    if unknown and collection is not None:
        names = ", ".join(repr(k[:40]) for k in unknown[:5])
        return (f"unknown query parameter{'s' if len(unknown) > 1 else ''} {names}; allowed: "
                f"{', '.join(sorted(allowed))} and the collection's properties ({', '.join(sorted(fields)) or 'none'})")
    for key, value in params:
        if key == "datetime":
            why = datetime_problem(value)
            if why:
                return f"datetime={value[:60]!r}: {why}"
        elif key in ("offset", "bbox"):
            why = paging_problem(key, value)
            if why:
                return why
        elif key == "sortby" and value and any(e.strip() in ("", "+", "-") for e in value.split(",")):
            return f"sortby={value[:60]!r}: every entry is a property name, '+name' or '-name'"
        elif key == "sortby" and value.count(",") >= MAX_SORT_KEYS:
            return f"sortby has {value.count(',') + 1} entries; at most {MAX_SORT_KEYS} sort keys are accepted"
        elif fields.get(key) in ("integer", "number") and _INTEGER.match(value.strip()):
            if not INT64[0] <= int(value) <= INT64[1]:
                return f"property filter {key}={value[:40]}: out of the range of 64-bit integers"
    return None


class ItemsRequests:
    def __init__(self, app: ASGIApp, collections: dict[str, CollectionFields]):
        self.app = app
        self.collections = collections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = ITEMS.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        collection = self.collections.get(match.group(1))
        if scope["method"] == "POST" and not match.group(2):
            first = await receive()
            if first.get("type") == "http.request" and not first.get("body") and not first.get("more_body"):
                await error(400, "InvalidParameterValue", "POST .../items needs a body: a CQL2 JSON filter "
                            "(Content-Type application/query-cql-json)")(scope, receive, send)
                return
            receive = replay(first, receive)
        elif scope["method"] in ("GET", "HEAD"):
            params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            why = query_problem(collection, params, one_item=bool(match.group(2)))
            if why:
                await error(400, "InvalidParameterValue", why)(scope, receive, send)
                return
            dropped = {"sortby"} if ("sortby", "") in params else set()  # empty: no sorting
            if collection is not None and not collection.temporal:
                dropped.add("datetime")  # every feature matches
            if any(k in dropped for k, _ in params):
                rest = [(k, v) for k, v in params if k not in dropped]
                scope = dict(scope, query_string=urlencode(rest).encode("latin-1"))
        await self.app(scope, receive, _geojson_labelled(send))



def _geojson_labelled(send: Send) -> Send:
    async def labelled(message: Message) -> None:
        if message["type"] == "http.response.start" and message.get("status") == 200:
            headers = [(k, b"application/geo+json" if k.lower() == b"content-type"
                        and v.split(b";")[0].strip() == b"application/json" else v)
                       for k, v in message.get("headers", [])]
            message = dict(message, headers=headers)
        await send(message)

    return labelled


def collection_fields(config: dict, store: Store) -> dict[str, CollectionFields]:
    """The properties of every feature collection in pygeoapi's ``config``, read from its store."""
    out = {}
    for name, resource in config.get("resources", {}).items():
        for provider in resource.get("providers", []):
            if provider.get("type") != "feature" or "table" not in provider:
                continue
            # a database provider's data is its connection (a dict), the embedded one's a file
            source = store if isinstance(provider["data"], dict) else GeoPackageStore(Path(provider["data"]))
            out[name] = CollectionFields(source.info(provider["table"]).fields, bool(provider.get("time_field")))
    return out
