"""Benchmark inputs and parsing: the geotag mixed workload holds what a records file holds; wrk latency text.

Fast, no data needed: the workload is built from hand-made gazetteer rows and checked by kind.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is not an installed package

from benchmarks.bench_geotag import BUILDING_NAMES, mixed_workload  # noqa: E402
from geo.address import LOT, ROAD, parse_address  # noqa: E402

ROW = {"address": "서울특별시 중구 세종대로 110", "jibeon": "서울특별시 중구 태평로1가 31-2", "gu": "중구",
       "road": "세종대로", "number": 110, "dong": "태평로1가"}


def test_the_mixed_workload_has_every_kind_in_its_share():
    n = 20_000
    records = mixed_workload([ROW] * n, random.Random(7))
    texts = [t for t, _ in records]
    kinds = {
        "exact": sum(t == ROW["address"] for t in texts),
        "lot": sum(t == ROW["jibeon"] for t in texts),
        "typo": sum(t.startswith("서울특별시 중구 ") and t.endswith("층") and t.split()[2] != ROW["road"]
                    and t.split()[3] == "110" for t in texts),
        "name in parentheses": sum(t.startswith(ROW["address"] + " (태평로1가, ") for t in texts),
        "name only": sum(t in {f"중구 {b}" for b in BUILDING_NAMES} for t in texts),
        "unknown street": sum(" 가상" in t for t in texts),
        "unknown number": sum(t.endswith("(태평로1가)") and "세종대로 9" in t for t in texts),
        "variant": sum(t == "서울시  중구 세종대로 110" for t in texts),
        "noise": sum(t.startswith("서울시 어딘가 ") for t in texts),
    }
    expected = {"exact": 0.30, "lot": 0.15, "typo": 0.15, "name in parentheses": 0.10, "name only": 0.05,
                "unknown street": 0.10, "unknown number": 0.05, "variant": 0.05, "noise": 0.05}
    assert sum(kinds.values()) == n  # every record is one of the kinds, none counted twice
    for kind, share in expected.items():
        assert abs(kinds[kind] / n - share) < 0.015, (kind, kinds[kind] / n)
    # the records that name a gazetteer address point at it; the others point nowhere
    named = {t for t, i in records if i is not None}
    assert ROW["jibeon"] in named and ROW["address"] in named
    assert not any(i is not None for t, i in records if " 가상" in t or "어딘가" in t)
    assert parse_address(ROW["jibeon"]).kind == LOT and parse_address(ROW["address"]).kind == ROAD


def test_wrk_latency_text_is_read_in_milliseconds():
    from benchmarks.bench_ar import _ms

    assert [_ms(t) for t in ("812.00us", "13.76ms", "1.20s", "1.50m")] == [0.812, 13.76, 1200.0, 90_000.0]
