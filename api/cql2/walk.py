"""The walk of a parsed CQL2 tree, shared by both stores.

``Walker`` reads the cql2-json tree (api.cql2.parse) and checks what each operator may take,
with the same words on both stores; a subclass says what a predicate or a value is on its
store: numpy arrays over candidate rows (api.providers.cql_filter) or SQLAlchemy expressions
(api.cql2.to_sql). Values of either carry a ``kind`` (api.cql2.values).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from api.cql2 import values as V
from api.cql2.parse import ARITHMETIC, COMPARISON, SPATIAL, TEMPORAL, FilterError
from api.providers.like_pattern import LikePatternError, like_regex

T = TypeVar("T")  # a predicate's result
X = TypeVar("X")  # a value (with .kind)


class Walker(ABC, Generic[T, X]):
    """One walk of a checked CQL2 tree; a store subclass says what each node becomes
    (numpy row masks on the embedded store, SQL expressions on PostGIS)."""

    # -- what a store provides -----------------------------------------------------------
    def tick(self) -> None:
        """Called at every predicate (a time limit, say)."""

    @abstractmethod
    def constant(self, value: bool) -> T: ...
    @abstractmethod
    def combine(self, op: str, parts: list[T]) -> T: ...
    @abstractmethod
    def negate(self, part: T) -> T: ...
    @abstractmethod
    def compare(self, op: str, a: X, b: X) -> T: ...
    @abstractmethod
    def like(self, x: X, pattern: X, regex: re.Pattern[str]) -> T: ...
    @abstractmethod
    def is_null(self, x: X) -> T: ...
    @abstractmethod
    def spatial(self, op: str, a: X, b: X) -> T: ...
    @abstractmethod
    def temporal(self, op: str, a: X, b: X) -> T: ...
    @abstractmethod
    def boolean(self, x: X) -> T: ...
    @abstractmethod
    def as_value(self, truth: T) -> X: ...
    @abstractmethod
    def property(self, name: str) -> X: ...
    @abstractmethod
    def literal(self, lit: V.Literal) -> X: ...
    @abstractmethod
    def fold(self, op: str, x: X) -> X: ...
    @abstractmethod
    def arithmetic(self, op: str, a: X, b: X) -> X: ...
    @abstractmethod
    def interval(self, start: X, end: X) -> X: ...

    # -- the walk ------------------------------------------------------------------------
    def truth(self, node: Any) -> T:
        self.tick()
        if isinstance(node, bool):
            return self.constant(node)
        if not isinstance(node, dict) or "op" not in node:
            return self._boolean(node)
        op, args = node["op"], node.get("args", [])
        if op in ("and", "or"):
            return self.combine(op, [self.truth(a) for a in args])
        if op == "not":
            return self.negate(self.truth(args[0]))
        if op in COMPARISON:
            return self._compare(op, args[0], args[1])
        if op == "like":
            return self._like(args)
        if op == "between":
            return self.combine("and", [self._compare(">=", args[0], args[1]), self._compare("<=", args[0], args[2])])
        if op == "in":
            if not isinstance(args[1], list):
                raise FilterError("IN needs a list of values, e.g. name IN ('Seoul', 'Busan')")
            return self.combine("or", [self.constant(False), *[self._compare("=", args[0], i) for i in args[1]]])
        if op == "isNull":
            return self.is_null(self.value(args[0]))
        if op in SPATIAL:
            a, b = self.value(args[0]), self.value(args[1])
            if a.kind != "geometry" or b.kind != "geometry":
                raise FilterError(f"{op.upper()} compares two geometries, e.g. S_INTERSECTS(geometry, "
                                  f"POINT(126.97 37.56)); got {V.describe(args[0])} and {V.describe(args[1])}")
            return self.spatial(op, a, b)
        if op in TEMPORAL:
            return self.temporal(op, self._period(args[0]), self._period(args[1]))
        return self._boolean(node)

    def value(self, node: Any) -> X:
        if isinstance(node, dict):
            if "property" in node:
                return self.property(str(node["property"]))
            if "op" in node:
                return self._operation(node["op"], node.get("args", []), node)
            if "interval" in node:
                return self._interval(node["interval"])
        return self.literal(V.literal(node))

    def _boolean(self, node: Any) -> T:
        x = self.value(node)
        if x.kind != "boolean":
            raise FilterError(f"a filter must be true or false; {V.describe(node)} is {V.KIND_NAMES[x.kind]}")
        return self.boolean(x)

    def _compare(self, op: str, left: Any, right: Any) -> T:
        a, b = self.value(left), self.value(right)
        V.check_comparable(op, a.kind, b.kind, (left, right))
        return self.compare(op, a, b)

    def _like(self, args: list) -> T:
        x, pattern, text = self.value(args[0]), self.value(args[1]), V.constant_text(args[1])
        if x.kind != "string" or pattern.kind != "string" or text is None:
            raise FilterError(f"LIKE needs a text property and a quoted pattern, e.g. name LIKE 'Seoul%'; got "
                              f"{V.describe(args[0])} LIKE {V.describe(args[1])}")
        try:  # the same checks (length, a dangling escape) on both stores
            regex = like_regex(text, nocase=False)
        except LikePatternError as exc:
            raise FilterError(f"{exc} (LIKE on {V.describe(args[0])})") from None
        return self.like(x, pattern, regex)

    def _period(self, node: Any) -> X:
        x = self.value(node)
        if x.kind not in ("instant", "interval"):
            raise FilterError(f"temporal functions compare dates, timestamps and intervals; "
                              f"{V.describe(node)} is {V.KIND_NAMES[x.kind]}")
        return x

    def _operation(self, op: str, args: list, node: dict) -> X:
        if op in V.FOLD:
            x = self.value(args[0])
            if x.kind != "string":
                raise FilterError(f"{op.upper()} takes text, not {V.describe(args[0])}")
            return self.fold(op, x)
        if op in ARITHMETIC:
            a, b = self.value(args[0]), self.value(args[1])
            if a.kind != "number" or b.kind != "number":
                raise FilterError(f"arithmetic ({op}) needs numbers; got {V.describe(args[0])} and "
                                  f"{V.describe(args[1])}")
            return self.arithmetic(op, a, b)
        return self.as_value(self.truth(node))

    def _interval(self, bounds: Any) -> X:
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise FilterError("INTERVAL takes two bounds, e.g. INTERVAL('2022-01-01', '..')")
        ends = []
        for bound, open_end in zip(bounds, (V.MIN_INSTANT, V.MAX_INSTANT)):
            if bound == "..":
                ends.append(self.literal(V.Literal("instant", open_end)))
                continue
            end = self.value(bound) if isinstance(bound, dict) else self.literal(V.Literal("instant", V.instant(bound)))
            if end.kind != "instant":
                raise FilterError(f"an INTERVAL bound must be a date or timestamp, not {V.describe(bound)}")
            ends.append(end)
        return self.interval(ends[0], ends[1])
