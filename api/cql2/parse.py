"""cql2-text and cql2-json into one checked tree (the cql2-json form, as plain Python values).

The ``cql2`` package parses both encodings; its cql2-json output is the tree both stores
walk. Its parser recurses natively per nesting level (brackets, NOT, unary minus, operator
chains) and overflows an ordinary 8 MB thread stack at a few thousand levels, which kills the
whole server. So it runs on a thread of its own with PARSE_STACK_BYTES of stack, enough for
the deepest nesting MAX_FILTER_CHARS of text can spell. After parsing, the tree is checked for
size, depth and known operators, so both stores refuse the same filters with the same words.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cql2

MAX_FILTER_CHARS = 64_000  # a polygon literal of ~1,500 vertices fits
PARSE_STACK_BYTES = 256 * 1024 * 1024  # holds 64,000 nesting levels; only the pages used are committed
MAX_NODES = 500  # properties, operators, literals and predicates in one filter
MAX_DEPTH = 64  # nesting of operators and brackets

LOGICAL = {"and", "or", "not"}
COMPARISON = {"=", "<>", "<", "<=", ">", ">="}
ADVANCED = {"like", "between", "in", "isNull"}
ARITHMETIC = {"+", "-", "*", "/", "%", "div", "^"}
FUNCTIONS = {"casei", "accenti"}
SPATIAL = {"s_intersects", "s_disjoint", "s_contains", "s_within", "s_touches", "s_crosses",
           "s_overlaps", "s_equals"}
TEMPORAL = {"t_after", "t_before", "t_contains", "t_disjoint", "t_during", "t_equals", "t_finishedBy",
            "t_finishes", "t_intersects", "t_meets", "t_metBy", "t_overlappedBy", "t_overlaps",
            "t_startedBy", "t_starts"}
KNOWN = LOGICAL | COMPARISON | ADVANCED | ARITHMETIC | FUNCTIONS | SPATIAL | TEMPORAL
# how many arguments each operator takes (and/or: one or more)
ARITY = {**{op: 2 for op in COMPARISON | ARITHMETIC | SPATIAL | TEMPORAL | {"like", "in"}},
         **{op: 1 for op in FUNCTIONS | {"not", "isNull"}}, "between": 3}
_STACK_LOCK = threading.Lock()


class FilterError(ValueError):
    """A filter that cannot be parsed, is too large, or does not fit the collection."""


@dataclass(frozen=True)
class Filter:
    """A parsed CQL2 filter: ``tree`` is its cql2-json form (dicts, lists, str, float, bool)."""

    tree: Any

    def to_json(self) -> str:
        return json.dumps(self.tree, ensure_ascii=False)


def parse_text(text: str) -> Filter:
    _check_length(text)
    return _checked(_on_big_stack(_parse, text, "cql2-text"))


def parse_json(text: str | bytes) -> Filter:
    _check_length(text)
    try:
        value = json.loads(text)
    except RecursionError:
        raise FilterError(f"the filter nests more than {MAX_DEPTH} levels deep; flatten it") from None
    except ValueError as exc:
        raise FilterError(f"the cql2-json filter is not JSON ({exc})") from None
    _check_tree(value)  # before the native parser sees a deep tree
    return _checked(_on_big_stack(_parse, value, "cql2-json"))


def as_text(parsed: Filter) -> str:
    """The filter in cql2-text (the query-string form that paging links carry); FilterError when
    the cql2 package cannot write it."""
    return _on_big_stack(lambda tree: cql2.Expr(tree).to_text(), parsed.tree)


def _check_length(text: str | bytes) -> None:
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"the filter has {len(text):,} characters; at most {MAX_FILTER_CHARS:,} are accepted: "
                          "split it into simpler requests or narrow them with a bbox")


def _on_big_stack(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a new thread with PARSE_STACK_BYTES of stack (the size is process-wide
    while a thread starts, hence the lock)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # a native panic arrives as a BaseException
            outcome["error"] = exc

    with _STACK_LOCK:
        previous = threading.stack_size(PARSE_STACK_BYTES)
        try:
            worker = threading.Thread(target=run, name="cql2-parse", daemon=True)
            worker.start()
        finally:
            threading.stack_size(previous)
    worker.join()
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, FilterError):
            raise error
        raise FilterError(f"the filter could not be parsed ({type(error).__name__}); check its syntax") from None
    return outcome["value"]


def _parse(value: Any, lang: str) -> Any:
    try:
        return cql2.Expr(value).to_json()
    except Exception as exc:  # cql2 raises plain Exception, ParseError or ValidationError
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        where = next((ln for ln in lines if ln.startswith("-->")), "").lstrip("-> ")
        why = next((ln.lstrip("= ") for ln in lines if ln.startswith("=")), lines[-1] if lines else "")
        at = f" at line:column {where}" if where else ""
        raise FilterError(f"the {lang} filter does not parse{at}: {why}; see OGC 21-065 (CQL2) for the "
                          "grammar") from None


def _checked(tree: Any) -> Filter:
    _check_tree(tree)
    return Filter(tree)


def _check_arity(op: str, args: Any) -> None:
    count = len(args) if isinstance(args, list) else 1
    want = ARITY.get(op)
    if (count < 1) if want is None else (count != want):
        raise FilterError(f"{op.upper()} takes {want or 'one or more'} argument{'s' if want != 1 else ''}, "
                          f"got {count}")


def _check_tree(tree: Any) -> None:
    """Size, depth and operator names, walked without recursion."""
    count, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise FilterError(f"the filter has more than {MAX_NODES} terms; split it into simpler requests "
                              "or use IN (...) for lists of values")
        if depth > MAX_DEPTH:
            raise FilterError(f"the filter nests more than {MAX_DEPTH} levels deep; flatten it, e.g. "
                              "use IN (...) instead of a long chain of OR")
        if isinstance(node, dict):
            if "op" in node:
                op = node["op"]
                if op not in KNOWN:
                    raise FilterError(f"unknown CQL2 operator or function {str(op)[:40]!r}; the supported ones "
                                      "are listed under /conformance")
                args = node.get("args", [])
                _check_arity(op, args)
                stack.extend((a, depth + 1) for a in (args if isinstance(args, list) else [args]))
            elif "interval" in node and isinstance(node["interval"], list):
                stack.extend((a, depth + 1) for a in node["interval"])
        elif isinstance(node, list):
            stack.extend((a, depth + 1) for a in node)
