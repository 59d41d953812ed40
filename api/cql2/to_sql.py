"""A parsed CQL2 filter as a SQLAlchemy clause for pygeoapi's PostgreSQL provider.

Every value from the filter is a bound parameter and every column comes from the table's
own model, so nothing the client wrote is ever pasted into SQL. The meaning follows the row
evaluator (api.providers.cql_filter) and shares its checks and messages (api.cql2.values):
text compares in code-point order (COLLATE "C", as Python compares), CASEI lowers with ICU, instants are UTC
timestamps, arithmetic is in double precision with division by zero as NULL, ACCENTI strips
the combining marks U+0300 to U+036F after NFD, and LIKE patterns have the same length limit.
"""
from __future__ import annotations

import datetime as dt
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from sqlalchemy import DateTime, Float, Numeric, String, and_, bindparam, cast, false, func, literal, literal_column, not_, \
    or_, true
from sqlalchemy.sql.elements import ColumnElement

from api.cql2 import values as V
from api.cql2.parse import ARITHMETIC, COMPARISON, SPATIAL, TEMPORAL, Filter, FilterError
from api.providers.like_pattern import LikePatternError, like_regex

_COMBINING = "[\u0300-\u036f]"
_NFD = literal_column("NFD")  # a keyword of normalize(), fixed here, never from the filter
_UNICODE = "und-x-icu"  # PostgreSQL's ICU root collation (builds with ICU, as Debian's)
_COMPARE = {"=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
            ">=": operator.ge}


@dataclass
class Expr:
    kind: str
    sql: Any  # a ColumnElement, or for intervals a (start, end) pair of them


@dataclass(frozen=True)
class Column:
    sql: ColumnElement
    kind: str  # string, number, boolean, instant (api.cql2.values)
    is_date: bool = False  # a date column: compared as the instant at its midnight


def to_clause(parsed: Filter, columns: dict[str, Column], geometry: ColumnElement, srid: int) -> ColumnElement:
    return _Builder(columns, geometry, srid).truth(parsed.tree)


class _Builder:
    def __init__(self, columns: dict[str, Column], geometry: ColumnElement, srid: int):
        self.columns = columns
        self.geometry = geometry
        self.srid = srid

    def truth(self, node: Any) -> ColumnElement:
        if isinstance(node, bool):
            return true() if node else false()
        if not isinstance(node, dict) or "op" not in node:
            return self._boolean(self.value(node), node)
        op, args = node["op"], node.get("args", [])
        if op in ("and", "or"):
            parts = [self.truth(a) for a in args]
            return and_(*parts) if op == "and" else or_(*parts)
        if op == "not":
            return not_(self.truth(args[0]))
        if op in COMPARISON:
            return self._compare(op, self.value(args[0]), self.value(args[1]), (args[0], args[1]))
        if op == "like":
            return self._like(args)
        if op == "between":
            x = self.value(args[0])
            return and_(self._compare(">=", x, self.value(args[1]), (args[0], args[1])),
                        self._compare("<=", x, self.value(args[2]), (args[0], args[2])))
        if op == "in":
            if not isinstance(args[1], list):
                raise FilterError("IN needs a list of values, e.g. name IN ('Seoul', 'Busan')")
            x = self.value(args[0])
            return or_(false(), *[self._compare("=", x, self.value(i), (args[0], i)) for i in args[1]])
        if op == "isNull":
            return self.value(args[0]).sql.is_(None)
        if op in SPATIAL:
            a, b = self.value(args[0]), self.value(args[1])
            if a.kind != "geometry" or b.kind != "geometry":
                raise FilterError(f"{op.upper()} compares two geometries, e.g. S_INTERSECTS(geometry, "
                                  f"POINT(126.97 37.56)); got {V.describe(args[0])} and {V.describe(args[1])}")
            return getattr(func, "ST_" + op[2:].capitalize())(a.sql, b.sql)
        if op in TEMPORAL:
            (a0, a1), (b0, b1) = self._period(args[0]), self._period(args[1])
            return V.allen(op, a0, a1, b0, b1)
        return self._boolean(self.value(node), node)

    def _boolean(self, value: Expr, node: Any) -> ColumnElement:
        if value.kind != "boolean":
            raise FilterError(f"a filter must be true or false; {V.describe(node)} is a {value.kind}")
        return value.sql.is_(True)

    def _compare(self, op: str, a: Expr, b: Expr, nodes: tuple[Any, Any]) -> ColumnElement:
        V.check_comparable(op, a.kind, b.kind, nodes)
        left, right = (a.sql.collate("C"), b.sql.collate("C")) if a.kind == "string" else (a.sql, b.sql)
        return _COMPARE[op](left, right)

    def _like(self, args: list) -> ColumnElement:
        x, pattern = self.value(args[0]), self.value(args[1])
        text = _constant_text(args[1])
        if x.kind != "string" or pattern.kind != "string" or text is None:
            raise FilterError(f"LIKE needs a text property and a quoted pattern, e.g. name LIKE 'Seoul%'; got "
                              f"{V.describe(args[0])} LIKE {V.describe(args[1])}")
        try:
            like_regex(text, nocase=False)  # the embedded store's checks: length, a dangling escape
        except LikePatternError as exc:
            raise FilterError(f"{exc} (LIKE on {V.describe(args[0])})") from None
        return x.sql.collate("C").like(pattern.sql.collate("C"))  # PostgreSQL's LIKE: % any run, _ one character, \ escapes

    def _period(self, node: Any) -> tuple[Any, Any]:
        value = self.value(node)
        if value.kind == "instant":
            return value.sql, value.sql
        if value.kind == "interval":
            return value.sql
        raise FilterError(f"temporal functions compare dates, timestamps and intervals; "
                          f"{V.describe(node)} is a {value.kind}")

    # -- values ----------------------------------------------------------------------------
    def value(self, node: Any) -> Expr:
        if isinstance(node, dict):
            if "property" in node:
                return self._property(str(node["property"]))
            if "op" in node:
                return self._operation(node["op"], node.get("args", []))
            if "interval" in node:
                return self._interval(node["interval"])
        lit = V.literal(node)
        if lit.kind == "geometry":
            return Expr("geometry", func.ST_GeomFromWKB(literal(shapely.to_wkb(lit.data)), self.srid))
        if lit.kind == "instant":
            return Expr("instant", _instant_param(lit.data))
        if lit.kind == "boolean":
            return Expr("boolean", literal(lit.data == 1.0))
        if lit.kind == "number":
            return Expr("number", literal(lit.data, Float))
        if lit.kind == "string":
            return Expr("string", literal(lit.data, String))
        return Expr("null", literal(None))

    def _property(self, name: str) -> Expr:
        if name == "geometry":
            return Expr("geometry", self.geometry)
        column = self.columns.get(name)
        if column is None:
            raise FilterError(f"unknown property {name!r} in the filter; the queryables are "
                              f"{', '.join(sorted([*self.columns, 'geometry']))}")
        if column.kind == "instant":
            # timestamptz as UTC wall time; a date as its midnight
            return Expr("instant", cast(column.sql, DateTime) if column.is_date else func.timezone("UTC", column.sql))
        if column.kind == "number":
            return Expr("number", cast(column.sql, Float))
        return Expr(column.kind, column.sql)

    def _operation(self, op: str, args: list) -> Expr:
        if op in ("casei", "accenti"):
            x = self.value(args[0])
            if x.kind != "string":
                raise FilterError(f"{op.upper()} takes text, not {V.describe(args[0])}")
            if op == "casei":  # lower() of the ICU root locale: every script, whatever the database's locale
                return Expr("string", func.lower(x.sql.collate(_UNICODE)))
            return Expr("string", func.regexp_replace(func.normalize(x.sql, _NFD), _COMBINING, "", "g"))
        if op in ARITHMETIC:
            a, b = self.value(args[0]), self.value(args[1])
            if a.kind != "number" or b.kind != "number":
                raise FilterError(f"arithmetic ({op}) needs numbers; got {V.describe(args[0])} and "
                                  f"{V.describe(args[1])}")
            return Expr("number", _arithmetic(op, a.sql, b.sql))
        return Expr("boolean", self.truth({"op": op, "args": args}))

    def _interval(self, bounds: list) -> Expr:
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise FilterError("INTERVAL takes two bounds, e.g. INTERVAL('2022-01-01', '..')")
        ends = []
        for bound, open_end in zip(bounds, (V.MIN_INSTANT, V.MAX_INSTANT)):
            if bound == "..":
                ends.append(_instant_param(open_end))
                continue
            value = self.value(bound) if isinstance(bound, dict) else Expr("instant", _instant_param(V.instant(bound)))
            if value.kind != "instant":
                raise FilterError(f"an INTERVAL bound must be a date or timestamp, not {V.describe(bound)}")
            ends.append(value.sql)
        return Expr("interval", tuple(ends))


def _constant_text(node: Any) -> str | None:
    """The text of a pattern made of a literal and CASEI/ACCENTI, or None."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and node.get("op") in V.FOLD and node.get("args"):
        inner = _constant_text(node["args"][0])
        return V.FOLD[node["op"]](inner) if inner is not None else None
    return None


def _instant_param(value: np.datetime64) -> ColumnElement:
    moment = value.astype("datetime64[us]").astype(dt.datetime)
    return bindparam(None, moment, type_=DateTime(), unique=True)


def _arithmetic(op: str, a: ColumnElement, b: ColumnElement) -> ColumnElement:
    if op in ("+", "-", "*"):
        return a.op(op)(b)
    if op == "^":
        return func.power(a, b)
    divisor = func.nullif(b, 0.0)
    if op == "/":
        return a / divisor
    if op == "div":
        return func.trunc(a / divisor)
    return cast(func.mod(cast(a, Numeric), cast(divisor, Numeric)), Float)
