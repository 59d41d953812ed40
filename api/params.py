"""Query parameters: one parser for numbers and whole numbers, so every route answers a bad
value with the same clear 400 (``str.isdigit`` accepts '²', which ``int`` then refuses)."""
from __future__ import annotations

import math
from collections.abc import Mapping


class BadParameter(ValueError):
    """A query parameter the client can fix; the message names it."""


def _show(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def _in_range(name: str, value: float, lo: float | None, hi: float | None, lo_open: bool = False) -> None:
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise BadParameter(f"parameter '{name}' must be {'above' if lo_open else 'at least'} {_show(lo)}, "
                           f"got {_show(value)}")
    if hi is not None and value > hi:
        raise BadParameter(f"parameter '{name}' must be at most {_show(hi)}, got {_show(value)}")


def number(params: Mapping[str, str], name: str, default: float | None, lo: float | None = None,
           hi: float | None = None, lo_open: bool = False) -> float:
    """A finite number from ``params[name]`` within [lo, hi] (lo excluded when ``lo_open``)."""
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        if default is None:
            raise BadParameter(f"parameter '{name}' is required (a number)")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadParameter(f"parameter '{name}' must be a number, got {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise BadParameter(f"parameter '{name}' must be a finite number, got {raw[:40]!r}")
    _in_range(name, value, lo, hi, lo_open)
    return value


def integer(params: Mapping[str, str], name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number from ``params[name]`` within [lo, hi]; '10', '1e3' and '10.0' are whole numbers."""
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value):
        raise BadParameter(f"parameter '{name}' must be a whole number, got {raw[:40]!r}")
    _in_range(name, value, lo, hi)
    return int(value)
