"""CQL2 filters on the embedded GeoPackage store, evaluated over the candidate rows in numpy.

pygeoapi hands the provider a parsed pygeofilter tree (from cql2-text or cql2-json, its
geometries already in the storage CRS). Here each node becomes a vectorised test over the
rows' columns and, for spatial predicates, their shapely geometries. Nothing from the filter
is ever written into SQL: the rows come from the provider's own fixed queries.

SQL's three-valued logic is kept: a comparison with a missing value is unknown, NOT of
unknown stays unknown, and only rows where the whole filter is true are returned.
Supported: AND, OR, NOT; =, <>, <, <=, >, >=; LIKE (and case-insensitive); BETWEEN; IN;
IS NULL; the spatial predicates (S_INTERSECTS, S_DISJOINT, S_CONTAINS, S_WITHIN, S_TOUCHES,
S_CROSSES, S_OVERLAPS, S_EQUALS) and BBOX against a geometry literal. Anything else
(temporal operators, arithmetic, functions) is refused with a message naming PostGIS.

The work a filter may ask for is bounded: at most MAX_NODES nodes nested at most MAX_DEPTH
deep (checked before evaluating), LIKE patterns that cannot backtrack (like_pattern.py), and
EVAL_SECONDS of evaluation, checked between nodes and between blocks of rows.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from pygeofilter import ast, values
from shapely.geometry import shape

from api.providers.like_pattern import LikePatternError, like_regex

GEOMETRY_NAMES = ("geometry",)
_SPATIAL: dict[type, Callable] = {
    ast.GeometryIntersects: shapely.intersects, ast.GeometryDisjoint: shapely.disjoint,
    ast.GeometryContains: shapely.contains, ast.GeometryWithin: shapely.within,
    ast.GeometryTouches: shapely.touches, ast.GeometryCrosses: shapely.crosses,
    ast.GeometryOverlaps: shapely.overlaps, ast.GeometryEquals: shapely.equals,
}
# the same predicate with its two sides swapped
_MIRROR = {ast.GeometryContains: ast.GeometryWithin, ast.GeometryWithin: ast.GeometryContains}
_COMPARE = {ast.Equal: "eq", ast.NotEqual: "ne", ast.LessThan: "lt", ast.LessEqual: "le",
            ast.GreaterThan: "gt", ast.GreaterEqual: "ge"}
_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}
MAX_NODES = 500  # properties, operators and predicates in one filter
MAX_DEPTH = 64  # nesting of operators (an AND chain of n terms nests n - 1 deep)
EVAL_SECONDS = 10.0  # evaluation time a filter may take over the candidate rows
LIKE_BLOCK = 10_000  # rows matched between two looks at the clock


class FilterError(ValueError):
    """A filter this store cannot evaluate, or one that does not fit the collection."""


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


class RowSet:
    """The candidate rows: their columns (name -> Series), field types, and geometries
    (decoded on first use)."""

    def __init__(self, columns: dict[str, pd.Series], types: dict[str, str], geometries: Callable[[], np.ndarray]):
        self.columns = columns
        self.types = types
        self._geometries = geometries
        self._decoded: np.ndarray | None = None
        self.n = len(next(iter(columns.values()))) if columns else 0

    def geometries(self) -> np.ndarray:
        if self._decoded is None:
            self._decoded = self._geometries()
        return self._decoded

    def column(self, name: str) -> pd.Series:
        if name not in self.columns:
            raise FilterError(f"unknown property {name!r} in the filter; the queryables are "
                              f"{', '.join(sorted(self.columns)) or 'none'}")
        return self.columns[name]


def evaluate(node, rows: RowSet) -> np.ndarray:
    """Boolean mask of the rows the filter keeps."""
    check_size(node)
    return _truth(node, rows, time.monotonic() + EVAL_SECONDS).true


def check_size(node) -> None:
    """Refuse a filter with more than MAX_NODES nodes or nested deeper than MAX_DEPTH
    (walked without recursion, so a huge tree cannot exhaust the stack here)."""
    count, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise FilterError(f"the filter has more than {MAX_NODES} terms; split it into simpler requests "
                              "or use IN (...) for lists of values")
        if depth > MAX_DEPTH:
            raise FilterError(f"the filter nests more than {MAX_DEPTH} levels deep; flatten it, e.g. "
                              "use IN (...) instead of a long chain of OR")
        if isinstance(current, ast.Node):
            stack.extend((child, depth + 1) for child in current.get_sub_nodes() if isinstance(child, ast.Node))


def _check_clock(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise FilterTimeout(f"the filter took longer than {EVAL_SECONDS:g} s")


def _truth(node, rows: RowSet, deadline: float) -> Truth:
    _check_clock(deadline)
    if isinstance(node, ast.And):
        return _truth(node.lhs, rows, deadline) & _truth(node.rhs, rows, deadline)
    if isinstance(node, ast.Or):
        return _truth(node.lhs, rows, deadline) | _truth(node.rhs, rows, deadline)
    if isinstance(node, ast.Not):
        return ~_truth(node.sub_node, rows, deadline)
    if type(node) in _COMPARE:
        return _compare(node, rows)
    if isinstance(node, ast.Like):
        return _negate(_like(node, rows, deadline), node.not_)
    if isinstance(node, ast.Between):
        col, kind = _attribute(node.lhs, rows)
        low, high = _literal(node.low, kind, node.lhs.name), _literal(node.high, kind, node.lhs.name)
        known = col.notna().to_numpy()
        true = known & (col >= low).fillna(False).to_numpy(bool) & (col <= high).fillna(False).to_numpy(bool)
        return _negate(Truth(true, known), node.not_)
    if isinstance(node, ast.In):
        col, kind = _attribute(node.lhs, rows)
        options = [_literal(v, kind, node.lhs.name) for v in node.sub_nodes]
        known = col.notna().to_numpy()
        return _negate(Truth(known & col.isin(options).to_numpy(bool), known), node.not_)
    if isinstance(node, ast.IsNull):
        col, _ = _attribute(node.lhs, rows)
        null = col.isna().to_numpy()
        return Truth(~null if node.not_ else null, np.ones(rows.n, dtype=bool))
    if type(node) in _SPATIAL:
        return _spatial(node, rows)
    if isinstance(node, ast.BBox):
        if not _is_geometry(node.lhs):
            raise FilterError("BBOX applies to the geometry: BBOX(geometry, minx, miny, maxx, maxy)")
        box = shapely.box(float(node.minx), float(node.miny), float(node.maxx), float(node.maxy))
        return Truth(np.asarray(shapely.intersects(rows.geometries(), box), dtype=bool), np.ones(rows.n, dtype=bool))
    if isinstance(node, bool):
        return Truth(np.full(rows.n, node), np.ones(rows.n, dtype=bool))
    raise FilterError(f"{type(node).__name__} filters are not supported on the embedded GeoPackage store; "
                      "use comparisons, LIKE, BETWEEN, IN, IS NULL and spatial predicates, or serve from "
                      "PostGIS (set CITYTWIN_DATABASE_URL) for the full CQL2")


def _negate(t: Truth, not_: bool) -> Truth:
    return ~t if not_ else t


def _is_geometry(node) -> bool:
    return isinstance(node, ast.Attribute) and node.name in GEOMETRY_NAMES


def _attribute(node, rows: RowSet) -> tuple[pd.Series, str]:
    if not isinstance(node, ast.Attribute):
        raise FilterError("the left side of LIKE, BETWEEN, IN and IS NULL must be a property name")
    if _is_geometry(node):
        raise FilterError("compare the geometry with a spatial predicate (e.g. S_INTERSECTS), not a value")
    return rows.column(node.name), rows.types.get(node.name, "string")


def _literal(value, kind: str, name: str):
    if isinstance(value, (ast.Node, values.Geometry, values.Envelope)) and not isinstance(value, bool):
        raise FilterError(f"property {name!r} can only be compared with a literal value here")
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FilterError(f"property {name!r} is a number; compare it with a number, not {value!r}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise FilterError(f"property {name!r} is true/false; compare it with true or false, not {value!r}")
        return value
    if not isinstance(value, str):
        raise FilterError(f"property {name!r} is text; compare it with a quoted string, not {value!r}")
    return value


def _compare(node, rows: RowSet) -> Truth:
    op = _COMPARE[type(node)]
    lhs, rhs = node.lhs, node.rhs
    if not isinstance(lhs, ast.Attribute) and isinstance(rhs, ast.Attribute):
        lhs, rhs, op = rhs, lhs, _FLIP[op]
    if not isinstance(lhs, ast.Attribute):
        raise FilterError("a comparison needs a property name on one side")
    col, kind = _attribute(lhs, rows)
    value = _literal(rhs, kind, lhs.name)
    known = col.notna().to_numpy()
    result = getattr(col, op)(value)
    return Truth(known & result.fillna(False).to_numpy(bool), known)


def _like(node, rows: RowSet, deadline: float) -> Truth:
    col, kind = _attribute(node.lhs, rows)
    if kind != "string":
        raise FilterError(f"LIKE needs a text property; {node.lhs.name!r} is a {kind}")
    if not isinstance(node.pattern, str):
        raise FilterError(f"LIKE on {node.lhs.name!r} needs a quoted pattern, e.g. 'Seoul%'")
    try:
        regex = like_regex(node.pattern, node.nocase)
    except LikePatternError as exc:
        raise FilterError(f"{exc} (LIKE on {node.lhs.name!r})") from None
    values = col.tolist()
    true = np.zeros(len(values), dtype=bool)
    for start in range(0, len(values), LIKE_BLOCK):
        _check_clock(deadline)
        block = values[start:start + LIKE_BLOCK]
        true[start:start + len(block)] = [isinstance(v, str) and regex.fullmatch(v) is not None for v in block]
    known = col.notna().to_numpy()
    return Truth(known & true, known)


def _spatial(node, rows: RowSet) -> Truth:
    kind, lhs, rhs = type(node), node.lhs, node.rhs
    if not _is_geometry(lhs) and _is_geometry(rhs):
        lhs, rhs, kind = rhs, lhs, _MIRROR.get(kind, kind)
    if not _is_geometry(lhs):
        raise FilterError("a spatial predicate needs the geometry property on one side, e.g. "
                          "S_INTERSECTS(geometry, POINT(126.97 37.56))")
    if isinstance(rhs, values.Geometry):
        literal = shape(rhs.geometry)
    elif isinstance(rhs, values.Envelope):
        literal = shapely.box(min(rhs.x1, rhs.x2), min(rhs.y1, rhs.y2), max(rhs.x1, rhs.x2), max(rhs.y1, rhs.y2))
    else:
        raise FilterError("a spatial predicate compares the geometry with a geometry literal (WKT or GeoJSON)")
    geoms = rows.geometries()
    present = ~shapely.is_missing(geoms)
    true = np.zeros(rows.n, dtype=bool)
    true[present] = _SPATIAL[kind](geoms[present], literal)
    return Truth(true, present)
