"""CQL2 literals and the meaning of operators, shared by the row evaluator and the SQL builder.

Instants (DATE and TIMESTAMP) are numpy datetime64 in microseconds, UTC; a date is the
instant at its midnight. Booleans are 1.0/0.0 so they share the numeric null (NaN).
"""
from __future__ import annotations

import operator
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape

from api.cql2.parse import FilterError

# comparison operators, for numpy arrays and SQLAlchemy expressions alike
COMPARE: dict[str, Callable[[Any, Any], Any]] = {"=": operator.eq, "<>": operator.ne, "<": operator.lt,
                                                 "<=": operator.le, ">": operator.gt, ">=": operator.ge}
MIN_INSTANT = np.datetime64("0001-01-01T00:00:00", "us")
MAX_INSTANT = np.datetime64("9999-12-31T23:59:59", "us")
_ORDERED = {"string", "number", "instant"}


@dataclass(frozen=True)
class Literal:
    kind: str
    data: Any


def describe(node: Any) -> str:
    """A short name for a filter node in messages."""
    if isinstance(node, dict):
        if "property" in node:
            return f"property {str(node['property'])[:60]!r}"
        if "op" in node:
            return f"{str(node['op']).upper()}(...)"
        if "type" in node:
            return f"a {str(node['type'])[:30]} literal"
        return next(iter(node), "an object").upper() + "(...)"
    return repr(node)[:60]


def literal(node: Any) -> Literal:
    """The kind and value of a literal node; FilterError for anything else."""
    if isinstance(node, bool):
        return Literal("boolean", 1.0 if node else 0.0)
    if isinstance(node, (int, float)):
        return Literal("number", float(node))
    if isinstance(node, str):
        return Literal("string", node)
    if node is None:
        return Literal("null", None)
    if isinstance(node, dict):
        if "date" in node or "timestamp" in node:
            return Literal("instant", instant(node.get("date", node.get("timestamp"))))
        if "bbox" in node:
            return Literal("geometry", bbox_geometry(node["bbox"]))
        if "type" in node:
            try:
                return Literal("geometry", shape(node))
            except Exception as exc:  # shapely raises several kinds for malformed GeoJSON
                raise FilterError(f"the geometry literal of type {str(node.get('type'))[:30]!r} is not valid "
                                  f"GeoJSON/WKT: {exc}") from None
    raise FilterError(f"{describe(node)} is not a value this filter can use here")


def instant(text: Any) -> np.datetime64:
    if not isinstance(text, str):
        raise FilterError(f"a DATE or TIMESTAMP takes an ISO 8601 text, not {describe(text)}")
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, OverflowError):
        raise FilterError(f"{text[:40]!r} is not an ISO 8601 date or timestamp, e.g. '2022-04-16' or "
                          "'2022-04-16T10:13:19Z'") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.to_datetime64(), "us")


def instants(values: list) -> np.ndarray:
    """A column of ISO 8601 texts (or None) as UTC instants (NaT where null or unreadable)."""
    stamps = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce", format="ISO8601")
    return stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


def bbox_geometry(coords: Any) -> shapely.Geometry:
    """A CQL2 bbox (minx, miny, maxx, maxy, or with heights minx, miny, minz, maxx, maxy, maxz) as
    a polygon in x/y order; one crossing the antimeridian (minx > maxx) is two boxes."""
    if not isinstance(coords, list) or len(coords) not in (4, 6) or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in coords):
        raise FilterError("a bbox takes 4 numbers (minx, miny, maxx, maxy) or 6 with heights")
    minx, miny, maxx, maxy = (coords[0], coords[1], coords[2], coords[3]) if len(coords) == 4 else \
        (coords[0], coords[1], coords[3], coords[4])
    if miny > maxy:
        raise FilterError(f"the bbox's miny {miny:g} is above its maxy {maxy:g}")
    if minx > maxx:
        return shapely.MultiPolygon([shapely.box(minx, miny, 180.0, maxy), shapely.box(-180.0, miny, maxx, maxy)])
    return shapely.box(minx, miny, maxx, maxy)


KIND_NAMES = {"string": "text", "number": "a number", "boolean": "true/false", "instant": "a date/timestamp",
              "geometry": "a geometry", "interval": "an interval", "null": "NULL"}


def kind_of(schema: dict) -> str:
    """The kind a filter sees a queryable as, from its JSON schema type and format."""
    if schema.get("type") in ("integer", "number"):
        return "number"
    if schema.get("type") == "boolean":
        return "boolean"
    return "instant" if schema.get("format") in ("date", "date-time") else "string"


def check_comparable(op: str, a: str, b: str, nodes: tuple[Any, Any]) -> None:
    if "null" in (a, b):
        return
    if a != b:
        raise FilterError(f"{describe(nodes[0])} is {KIND_NAMES[a]} and {describe(nodes[1])} is {KIND_NAMES[b]} "
                          f"({op}); compare like with like, e.g. a date property with DATE('2022-04-16')")
    if a == "geometry":
        raise FilterError(f"geometries are compared with spatial functions (S_EQUALS, S_INTERSECTS), not {op}")
    if a not in _ORDERED and op not in ("=", "<>"):
        raise FilterError(f"{a} values can only be compared with = and <>, not {op}")


def constant_text(node: Any) -> str | None:
    """The text of a literal, or of CASEI/ACCENTI over one; None for anything else."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and node.get("op") in ("casei", "accenti") and node.get("args"):
        inner = constant_text(node["args"][0])
        return FOLD[node["op"]](inner) if inner is not None else None
    return None


def accent_fold(text: str) -> str:
    """Text without combining accents (U+0300 to U+036F after NFD), as the SQL side strips them."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if not "\u0300" <= c <= "\u036f")


FOLD: dict[str, Callable[[str], str]] = {"casei": str.lower, "accenti": accent_fold}


def arithmetic(op: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a op b`` and where it is defined (division by zero is null, as in SQL's error-free reading)."""
    nonzero = b != 0 if op in ("/", "%", "div") else np.ones(np.shape(b), dtype=bool)
    safe = np.where(nonzero, b, 1.0)
    with np.errstate(all="ignore"):
        if op == "+":
            return a + b, nonzero
        if op == "-":
            return a - b, nonzero
        if op == "*":
            return a * b, nonzero
        if op == "/":
            return a / safe, nonzero
        if op == "%":
            return np.fmod(a, safe), nonzero
        if op == "div":
            return np.trunc(a / safe), nonzero
        return np.power(a, b), np.isfinite(np.power(a, b))


def allen(op: str, a0: Any, a1: Any, b0: Any, b1: Any) -> Any:
    """The temporal relation ``op`` between periods [a0, a1] and [b0, b1] (an instant has a0 = a1),
    over numpy arrays or SQLAlchemy expressions alike."""
    relations: dict[str, Callable[[], Any]] = {
        "t_after": lambda: a0 > b1,
        "t_before": lambda: a1 < b0,
        "t_contains": lambda: (a0 < b0) & (a1 > b1),
        "t_disjoint": lambda: (a1 < b0) | (a0 > b1),
        "t_during": lambda: (a0 > b0) & (a1 < b1),
        "t_equals": lambda: (a0 == b0) & (a1 == b1),
        "t_finishedBy": lambda: (a0 < b0) & (a1 == b1),
        "t_finishes": lambda: (a0 > b0) & (a1 == b1),
        "t_intersects": lambda: (a0 <= b1) & (a1 >= b0),
        "t_meets": lambda: a1 == b0,
        "t_metBy": lambda: a0 == b1,
        "t_overlappedBy": lambda: (a0 > b0) & (a0 < b1) & (a1 > b1),
        "t_overlaps": lambda: (a0 < b0) & (a1 > b0) & (a1 < b1),
        "t_startedBy": lambda: (a0 == b0) & (a1 > b1),
        "t_starts": lambda: (a0 == b0) & (a1 < b1),
    }
    return relations[op]()
