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

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from api.cql2 import values as V
from api.cql2.parse import Filter, FilterError
from api.cql2.walk import Walker

__all__ = ["EVAL_SECONDS", "FilterError", "FilterTimeout", "RowSet", "evaluate"]

_SPATIAL: dict[str, Callable] = {
    "s_intersects": shapely.intersects, "s_disjoint": shapely.disjoint, "s_contains": shapely.contains,
    "s_within": shapely.within, "s_touches": shapely.touches, "s_crosses": shapely.crosses,
    "s_overlaps": shapely.overlaps, "s_equals": shapely.equals,
}
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
    return _Rows(rows, time.monotonic() + EVAL_SECONDS).truth(filter_.tree).true


class _Rows(Walker[Truth, Val]):
    def __init__(self, rows: RowSet, deadline: float):
        self.rows = rows
        self.n = rows.n
        self.deadline = deadline

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise FilterTimeout(f"the filter took longer than {EVAL_SECONDS:g} s")

    def _rows(self, mask: np.ndarray | bool) -> np.ndarray:
        return np.broadcast_to(mask, self.n).copy()

    # -- predicates ------------------------------------------------------------------------
    def constant(self, value: bool) -> Truth:
        return Truth(np.full(self.n, value), np.ones(self.n, dtype=bool))

    def combine(self, op: str, parts: list[Truth]) -> Truth:
        result = parts[0]
        for p in parts[1:]:
            result = result & p if op == "and" else result | p
        return result

    def negate(self, part: Truth) -> Truth:
        return ~part

    def compare(self, op: str, a: Val, b: Val) -> Truth:
        return self._where(a, b, V.COMPARE[op])

    def spatial(self, op: str, a: Val, b: Val) -> Truth:
        return self._where(a, b, _SPATIAL[op])

    def _where(self, a: Val, b: Val, test: Callable) -> Truth:
        """``test`` over the rows where both sides are known."""
        known = self._rows(a.known & b.known)
        true = np.zeros(self.n, dtype=bool)
        if known.any():
            true[known] = test(a.at(known), b.at(known))
        return Truth(true, known)

    def like(self, x: Val, pattern: Val, regex: re.Pattern[str]) -> Truth:
        known = self._rows(x.known)
        texts = np.broadcast_to(np.asarray(x.data, dtype=object), self.n)
        true = np.zeros(self.n, dtype=bool)
        for start in range(0, self.n, LIKE_BLOCK):
            self.tick()
            stop = min(start + LIKE_BLOCK, self.n)
            true[start:stop] = [k and regex.fullmatch(t) is not None
                                for t, k in zip(texts[start:stop], known[start:stop])]
        return Truth(true, known)

    def is_null(self, x: Val) -> Truth:
        return Truth(~self._rows(x.known), np.ones(self.n, dtype=bool))

    def temporal(self, op: str, a: Val, b: Val) -> Truth:
        (a0, a1), (b0, b1) = _ends(a), _ends(b)
        known = self._rows(a.known & b.known)
        true = np.zeros(self.n, dtype=bool)
        if known.any():
            pick = [v[known] if isinstance(v, np.ndarray) else v for v in (a0, a1, b0, b1)]
            true[known] = np.asarray(V.allen(op, *pick), dtype=bool)
        return Truth(true, known)

    def boolean(self, x: Val) -> Truth:
        known = self._rows(x.known)
        return Truth(known & (np.broadcast_to(np.asarray(x.data, dtype=float), self.n) == 1.0), known)

    # -- values ----------------------------------------------------------------------------
    def as_value(self, truth: Truth) -> Val:
        return Val("boolean", truth.true.astype(float), truth.known)

    def property(self, name: str) -> Val:
        return self.rows.column(name)

    def literal(self, lit: V.Literal) -> Val:
        return Val(lit.kind, lit.data, lit.data is not None)

    def fold(self, op: str, x: Val) -> Val:
        fold = V.FOLD[op]
        if isinstance(x.data, np.ndarray):
            return Val("string", np.array([fold(t) if t is not None else None for t in x.data], dtype=object), x.known)
        return Val("string", fold(x.data) if x.data is not None else None, x.known)

    def arithmetic(self, op: str, a: Val, b: Val) -> Val:
        data, defined = V.arithmetic(op, np.asarray(a.data, dtype=float), np.asarray(b.data, dtype=float))
        known = a.known & b.known & defined
        if np.ndim(data) == 0:
            return Val("number", float(data), bool(known))
        return Val("number", np.broadcast_to(data, self.n), np.broadcast_to(known, self.n))

    def interval(self, start: Val, end: Val) -> Val:
        return Val("interval", (start.data, end.data), start.known & end.known)


def _ends(x: Val) -> tuple[Any, Any]:
    return (x.data, x.data) if x.kind == "instant" else x.data
