"""A parsed CQL2 filter as a SQLAlchemy clause for pygeoapi's PostgreSQL provider.

Every value from the filter is a bound parameter and every column comes from the table's
own model, so nothing the client wrote is ever pasted into SQL. The meaning follows the row
evaluator (api.providers.cql_filter), whose walk and checks it shares (api.cql2.walk): text
compares in code-point order (COLLATE "C", as Python compares), CASEI lowers with ICU,
instants are UTC timestamps, arithmetic is in double precision with division by zero as NULL,
and ACCENTI strips the combining marks U+0300 to U+036F after NFD.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import shapely
from sqlalchemy import DateTime, Float, Numeric, String, and_, bindparam, cast, false, func, literal, literal_column, not_, \
    or_, true
from sqlalchemy.sql.elements import ColumnElement

from api.cql2 import values as V
from api.cql2.parse import Filter, FilterError
from api.cql2.walk import Walker

_COMBINING = "[\u0300-\u036f]"
_NFD = literal_column("NFD")  # a keyword of normalize(), fixed here, never from the filter
_UNICODE = "und-x-icu"  # PostgreSQL's ICU root collation (builds with ICU, as Debian's)


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
    return _Sql(columns, geometry, srid).truth(parsed.tree)


class _Sql(Walker[ColumnElement, Expr]):
    def __init__(self, columns: dict[str, Column], geometry: ColumnElement, srid: int):
        self.columns = columns
        self.geometry = geometry
        self.srid = srid

    # -- predicates ------------------------------------------------------------------------
    def constant(self, value: bool) -> ColumnElement:
        return true() if value else false()

    def combine(self, op: str, parts: list[ColumnElement]) -> ColumnElement:
        return and_(*parts) if op == "and" else or_(*parts)

    def negate(self, part: ColumnElement) -> ColumnElement:
        return not_(part)

    def compare(self, op: str, a: Expr, b: Expr) -> ColumnElement:
        left, right = (a.sql.collate("C"), b.sql.collate("C")) if a.kind == "string" else (a.sql, b.sql)
        return V.COMPARE[op](left, right)

    def like(self, x: Expr, pattern: Expr, regex: re.Pattern[str]) -> ColumnElement:
        del regex  # PostgreSQL's LIKE: % any run, _ one character, \ escapes
        return x.sql.collate("C").like(pattern.sql.collate("C"))

    def is_null(self, x: Expr) -> ColumnElement:
        return x.sql.is_(None)

    def spatial(self, op: str, a: Expr, b: Expr) -> ColumnElement:
        return getattr(func, "ST_" + op[2:].capitalize())(a.sql, b.sql)

    def temporal(self, op: str, a: Expr, b: Expr) -> ColumnElement:
        (a0, a1), (b0, b1) = _ends(a), _ends(b)
        return V.allen(op, a0, a1, b0, b1)

    def boolean(self, x: Expr) -> ColumnElement:
        return x.sql.is_(True)

    # -- values ----------------------------------------------------------------------------
    def as_value(self, truth: ColumnElement) -> Expr:
        return Expr("boolean", truth)

    def property(self, name: str) -> Expr:
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

    def literal(self, lit: V.Literal) -> Expr:
        if lit.kind == "geometry":
            return Expr("geometry", func.ST_GeomFromWKB(literal(shapely.to_wkb(lit.data)), self.srid))
        if lit.kind == "instant":
            moment = lit.data.astype("datetime64[us]").astype(dt.datetime)
            return Expr("instant", bindparam(None, moment, type_=DateTime(), unique=True))
        if lit.kind == "boolean":
            return Expr("boolean", literal(lit.data == 1.0))
        if lit.kind == "number":
            return Expr("number", literal(lit.data, Float))
        if lit.kind == "string":
            return Expr("string", literal(lit.data, String))
        return Expr("null", literal(None))

    def fold(self, op: str, x: Expr) -> Expr:
        if op == "casei":  # lower() of the ICU root locale: every script, whatever the database's locale
            return Expr("string", func.lower(x.sql.collate(_UNICODE)))
        return Expr("string", func.regexp_replace(func.normalize(x.sql, _NFD), _COMBINING, "", "g"))

    def arithmetic(self, op: str, a: Expr, b: Expr) -> Expr:
        if op in ("+", "-", "*"):
            return Expr("number", a.sql.op(op)(b.sql))
        if op == "^":
            return Expr("number", func.power(a.sql, b.sql))
        divisor = func.nullif(b.sql, 0.0)
        if op == "/":
            return Expr("number", a.sql / divisor)
        if op == "div":
            return Expr("number", func.trunc(a.sql / divisor))
        return Expr("number", cast(func.mod(cast(a.sql, Numeric), cast(divisor, Numeric)), Float))

    def interval(self, start: Expr, end: Expr) -> Expr:
        return Expr("interval", (start.sql, end.sql))


def _ends(x: Expr) -> tuple[Any, Any]:
    return (x.sql, x.sql) if x.kind == "instant" else x.sql
