"""CQL2 filters on the embedded GeoPackage store, evaluated over the candidate rows in numpy.

The filter arrives parsed (api.cql2.parse: its cql2-json tree, geometries already in the
storage CRS). Each node becomes a vectorised computation over the rows' columns and, for
spatial predicates, their shapely geometries. Nothing from the filter is ever written into
SQL: the rows come from the provider's own fixed queries. api.cql2.to_sql gives PostGIS the
same meaning in SQL; both follow OGC 21-065.

SQL's three-valued logic is kept: a comparison with a missing value is unknown, NOT of
unknown stays unknown, and only rows where the whole filter is true are returned.

The work a filter may ask for is bounded: its size and depth were checked when it was
parsed, LIKE patterns cannot backtrack (like_pattern.py), and evaluation stops after
EVAL_SECONDS, checked between nodes and between blocks of rows.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from api.cql2 import values as V
from api.cql2.parse import ARITHMETIC, COMPARISON, SPATIAL, TEMPORAL, Filter, FilterError
from api.providers.like_pattern import LikePatternError, like_regex

__all__ = ["EVAL_SECONDS", "FilterError", "FilterTimeout", "RowSet", "evaluate"]

_SPATIAL: dict[str, Callable] = {
    "s_intersects": shapely.intersects, "s_disjoint": shapely.disjoint, "s_contains": shapely.contains,
    "s_within": shapely.within, "s_touches": shapely.touches, "s_crosses": shapely.crosses,
    "s_overlaps": shapely.overlaps, "s_equals": shapely.equals,
}
_COMPARE: dict[str, Callable] = {"=": np.equal, "<>": np.not_equal, "<": np.less, "<=": np.less_equal,
                                 ">": np.greater, ">=": np.greater_equal}
EVAL_SECONDS = 10.0  # evaluation time a filter may take over the candidate rows
LIKE_BLOCK = 10_000  # rows matched between two looks at the clock


class FilterTimeout(RuntimeError):
    """The filter used up EVAL_SECONDS before every row was decided."""


@dataclass
class Truth:
    """Three-valued result per row: ``true`` where the filter holds, ``known`` where it is not
    unknown (so false = known & ~true)."""

    true: np.ndarray
    known: np.ndarray

    def __and__(self, other: Truth) -> Truth:
        false = (self.known & ~self.true) | (other.known & ~other.true)
        true = self.true & other.true
        return Truth(true, true | false)

    def __or__(self, other: Truth) -> Truth:
        true = self.true | other.true
        false = (self.known & ~self.true) & (other.known & ~other.true)
        return Truth(true, true | false)

    def __invert__(self) -> Truth:
        return Truth(self.known & ~self.true, self.known)


@dataclass
class Val:
    """A value per row (``data`` an array) or one for all rows (a scalar); ``known`` is False
    where it is null. Kinds: string, number, boolean, instant, geometry, interval (then
    ``data`` is a (start, end) pair of instants)."""

    kind: str
    data: Any
    known: np.ndarray | bool

    def at(self, mask: np.ndarray) -> Any:
        return self.data[mask] if isinstance(self.data, np.ndarray) else self.data


class RowSet:
    """The candidate rows: their columns (name -> numpy array, nulls as None/NaN/NaT), the
    kind of each column, and the geometries (decoded on first use)."""

    def __init__(self, columns: dict[str, np.ndarray], kinds: dict[str, str], n: int,
                 geometries: Callable[[], np.ndarray], geometry_names: tuple[str, ...] = ("geometry",)):
        self.columns = columns
        self.kinds = kinds
        self.n = n
        self.geometry_names = geometry_names
        self._geometries = geometries
        self._decoded: np.ndarray | None = None

    def geometries(self) -> np.ndarray:
        if self._decoded is None:
            self._decoded = self._geometries()
        return self._decoded

    def column(self, name: str) -> Val:
        if name in self.geometry_names:
            geoms = self.geometries()
            return Val("geometry", geoms, ~shapely.is_missing(geoms))
        if name not in self.columns:
            raise FilterError(f"unknown property {name!r} in the filter; the queryables are "
                              f"{', '.join(sorted([*self.columns, *self.geometry_names[:1]])) or 'none'}")
        data, kind = self.columns[name], self.kinds[name]
        if kind == "string":
            known = np.array([v is not None for v in data], dtype=bool)
        else:
            known = ~np.isnan(data) if kind in ("number", "boolean") else ~np.isnat(data)
        return Val(kind, data, known)


def evaluate(filter_: Filter, rows: RowSet) -> np.ndarray:
    """Boolean mask of the rows the filter keeps."""
    return _Evaluator(rows, time.monotonic() + EVAL_SECONDS).truth(filter_.tree).true


class _Evaluator:
    def __init__(self, rows: RowSet, deadline: float):
        self.rows = rows
        self.n = rows.n
        self.deadline = deadline

    def clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise FilterTimeout(f"the filter took longer than {EVAL_SECONDS:g} s")

    def all(self, value: bool) -> Truth:
        return Truth(np.full(self.n, value), np.ones(self.n, dtype=bool))

    # -- predicates ------------------------------------------------------------------------
    def truth(self, node: Any) -> Truth:
        self.clock()
        if isinstance(node, bool):
            return self.all(node)
        if not isinstance(node, dict) or "op" not in node:
            value = self.value(node)
            if value.kind != "boolean":
                raise FilterError(f"a filter must be true or false; {V.describe(node)} is a {value.kind}")
            return self._boolean(value)
        op, args = node["op"], node.get("args", [])
        if op in ("and", "or"):
            parts = [self.truth(a) for a in args]
            result = parts[0]
            for p in parts[1:]:
                result = result & p if op == "and" else result | p
            return result
        if op == "not":
            return ~self.truth(args[0])
        if op in COMPARISON:
            return self._compare(op, self.value(args[0]), self.value(args[1]), (args[0], args[1]))
        if op == "like":
            return self._like(args)
        if op == "between":
            x = self.value(args[0])
            return (self._compare(">=", x, self.value(args[1]), (args[0], args[1]))
                    & self._compare("<=", x, self.value(args[2]), (args[0], args[2])))
        if op == "in":
            return self._in(args)
        if op == "isNull":
            value = self.value(args[0])
            known = np.broadcast_to(value.known, self.n)
            return Truth(~known, np.ones(self.n, dtype=bool))
        if op in SPATIAL:
            return self._spatial(op, args)
        if op in TEMPORAL:
            return self._temporal(op, args)
        return self._boolean(self.value(node))

    def _boolean(self, value: Val) -> Truth:
        if value.kind != "boolean":
            raise FilterError(f"a filter must be true or false, not a {value.kind}")
        known = np.broadcast_to(value.known, self.n).copy()
        data = np.broadcast_to(np.asarray(value.data, dtype=float), self.n)
        return Truth(known & (data == 1.0), known)

    def _compare(self, op: str, a: Val, b: Val, nodes: tuple[Any, Any]) -> Truth:
        V.check_comparable(op, a.kind, b.kind, nodes)
        known = np.broadcast_to(a.known & b.known, self.n).copy()
        true = np.zeros(self.n, dtype=bool)
        if known.any():
            true[known] = _COMPARE[op](a.at(known), b.at(known))
        return Truth(true, known)

    def _in(self, args: list) -> Truth:
        x = self.value(args[0])
        if not isinstance(args[1], list):
            raise FilterError("IN needs a list of values, e.g. name IN ('Seoul', 'Busan')")
        result = self.all(False)
        for item in args[1]:
            result = result | self._compare("=", x, self.value(item), (args[0], item))
        return result

    def _like(self, args: list) -> Truth:
        x, pattern = self.value(args[0]), self.value(args[1])
        if x.kind != "string" or pattern.kind != "string" or isinstance(pattern.data, np.ndarray):
            raise FilterError(f"LIKE needs a text property and a quoted pattern, e.g. name LIKE 'Seoul%'; got "
                              f"{V.describe(args[0])} LIKE {V.describe(args[1])}")
        if not pattern.known:  # LIKE NULL is unknown everywhere
            return Truth(np.zeros(self.n, dtype=bool), np.zeros(self.n, dtype=bool))
        try:
            regex = like_regex(pattern.data, nocase=False)
        except LikePatternError as exc:
            raise FilterError(f"{exc} (LIKE on {V.describe(args[0])})") from None
        known = np.broadcast_to(x.known, self.n).copy()
        texts = np.broadcast_to(np.asarray(x.data, dtype=object), self.n)
        true = np.zeros(self.n, dtype=bool)
        for start in range(0, self.n, LIKE_BLOCK):
            self.clock()
            stop = min(start + LIKE_BLOCK, self.n)
            true[start:stop] = [k and regex.fullmatch(t) is not None
                                for t, k in zip(texts[start:stop], known[start:stop])]
        return Truth(true, known)

    def _spatial(self, op: str, args: list) -> Truth:
        a, b = self.value(args[0]), self.value(args[1])
        if a.kind != "geometry" or b.kind != "geometry":
            raise FilterError(f"{op.upper()} compares two geometries, e.g. S_INTERSECTS(geometry, "
                              f"POINT(126.97 37.56)); got {V.describe(args[0])} and {V.describe(args[1])}")
        known = np.broadcast_to(a.known & b.known, self.n).copy()
        true = np.zeros(self.n, dtype=bool)
        if known.any():
            true[known] = _SPATIAL[op](a.at(known), b.at(known))
        return Truth(true, known)

    def _temporal(self, op: str, args: list) -> Truth:
        (a0, a1), ka = self._period(args[0])
        (b0, b1), kb = self._period(args[1])
        known = np.broadcast_to(ka & kb, self.n).copy()
        true = np.zeros(self.n, dtype=bool)
        if known.any():
            pick = [v[known] if isinstance(v, np.ndarray) else v for v in (a0, a1, b0, b1)]
            true[known] = np.asarray(V.allen(op, *pick), dtype=bool)
        return Truth(true, known)

    def _period(self, node: Any) -> tuple[tuple[Any, Any], np.ndarray | bool]:
        value = self.value(node)
        if value.kind == "instant":
            return (value.data, value.data), value.known
        if value.kind == "interval":
            return value.data, value.known
        raise FilterError(f"temporal functions compare dates, timestamps and intervals; "
                          f"{V.describe(node)} is a {value.kind}")

    # -- values ----------------------------------------------------------------------------
    def value(self, node: Any) -> Val:
        if isinstance(node, dict):
            if "property" in node:
                return self.rows.column(str(node["property"]))
            if "op" in node:
                return self._operation(node["op"], node.get("args", []))
            if "interval" in node:
                return self._interval(node["interval"])
        literal = V.literal(node)
        return Val(literal.kind, literal.data, literal.data is not None)

    def _operation(self, op: str, args: list) -> Val:
        if op in ("casei", "accenti"):
            x = self.value(args[0])
            if x.kind != "string":
                raise FilterError(f"{op.upper()} takes text, not {V.describe(args[0])}")
            fold = V.FOLD[op]
            if isinstance(x.data, np.ndarray):
                return Val("string", np.array([fold(t) if t is not None else None for t in x.data],
                                              dtype=object), x.known)
            return Val("string", fold(x.data) if x.data is not None else None, x.known)
        if op in ARITHMETIC:
            a, b = self.value(args[0]), self.value(args[1])
            if a.kind != "number" or b.kind != "number":
                raise FilterError(f"arithmetic ({op}) needs numbers; got {V.describe(args[0])} and "
                                  f"{V.describe(args[1])}")
            data, nonzero = V.arithmetic(op, np.asarray(a.data, dtype=float), np.asarray(b.data, dtype=float))
            known = a.known & b.known & nonzero
            if np.ndim(data) == 0:
                return Val("number", float(data), bool(known))
            return Val("number", np.broadcast_to(data, self.n), np.broadcast_to(known, self.n))
        truth = self.truth({"op": op, "args": args})
        return Val("boolean", truth.true.astype(float), truth.known)

    def _interval(self, bounds: list) -> Val:
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise FilterError("INTERVAL takes two bounds, e.g. INTERVAL('2022-01-01', '..')")
        ends, known = [], np.ones(self.n, dtype=bool)
        for bound, open_end in zip(bounds, (V.MIN_INSTANT, V.MAX_INSTANT)):
            if bound == "..":
                ends.append(open_end)
                continue
            value = self.value(bound) if isinstance(bound, dict) else V.literal({"timestamp": bound})
            if isinstance(value, V.Literal):
                value = Val(value.kind, value.data, True)
            if value.kind != "instant":
                raise FilterError(f"an INTERVAL bound must be a date or timestamp, not {V.describe(bound)}")
            ends.append(value.data)
            known = known & value.known
        return Val("interval", tuple(ends), known)
