"""One rule for every target in the report: what a "met" needs.

A target is "met" or "missed" only when the figure rests on at least three repetitions,
with the order of the sides (or workloads) swapped between repetitions, every side read
the same data, and, where the claim is about cold work, at least 90 % of the requests
were first requests. Anything less is "not measured", with the reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MIN_REPS = 3
MIN_COLD_SHARE = 0.9


@dataclass(frozen=True)
class Evidence:
    reps: int
    alternated: bool
    same_data: bool = True
    cold_share: float | None = None  # lowest first-request share; None when the claim is not about cold work


def gaps(ev: Evidence) -> list[str]:
    """What keeps ``ev`` from backing a verdict (empty when it is enough)."""
    out = []
    if not ev.same_data:
        out.append("the sides did not read the same data")
    if ev.reps < MIN_REPS:
        out.append(f"{ev.reps} repetition(s), {MIN_REPS} needed")
    if not ev.alternated:
        out.append("order not alternated")
    if ev.cold_share is not None and not ev.cold_share >= MIN_COLD_SHARE:
        out.append(f"cold-request share {ev.cold_share:.2f} (< {MIN_COLD_SHARE:.2f})")
    return out


def judge(value: float | None, ev: Evidence, *, at_least: float | None = None,
          at_most: float | None = None) -> dict:
    """The verdict on ``value`` against one bound, with the evidence that backs it."""
    if (at_least is None) == (at_most is None):
        raise ValueError("give exactly one of at_least / at_most")
    missing = gaps(ev)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        missing.append("no figure")
    if missing:
        verdict = "not measured"
    elif at_least is not None:
        verdict = "met" if value >= at_least else "missed"
    else:
        verdict = "met" if value <= at_most else "missed"
    return {"verdict": verdict, "value": value, "bound": f">= {at_least:g}" if at_least is not None else f"<= {at_most:g}",
            "reps": ev.reps, "alternated": ev.alternated, "same_data": ev.same_data, "cold_share": ev.cold_share,
            "why": "; ".join(missing)}


def alternated(orders: list[list[str]], pair: tuple[str, str] | None = None) -> bool:
    """True when at least two repetitions ran the sides in different orders.

    With ``pair``, when those two sides ran in both orders relative to each other: with three
    sides, two different orders can still keep one pair in the same order ([a, b, c], [a, c, b])."""
    if pair is None:
        return len({tuple(o) for o in orders}) > 1
    a, b = pair
    return len({o.index(a) < o.index(b) for o in orders if a in o and b in o}) > 1
