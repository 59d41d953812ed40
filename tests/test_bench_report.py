"""The benchmark report's rules: verdicts, per-part provenance, partial re-runs merged by the harness.

Fast and without peers: these check benchmarks/verdict.py, benchmarks/report.py and the
provenance helper on small hand-made results, plus the committed results files themselves.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is not an installed package: `make bench` runs it from the repo

from benchmarks.common import provenance  # noqa: E402
from benchmarks.report import RETIRED, _zoom_mix, merge, render, target_lines, write_partials  # noqa: E402
from benchmarks.verdict import Evidence, alternated, judge  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
AB, BA = ["ours", "peer"], ["peer", "ours"]


# --- the verdict ------------------------------------------------------------------------------

def test_met_and_missed_need_three_alternated_repetitions_on_the_same_data():
    ok = Evidence(reps=3, alternated=True)
    assert judge(2.5, ok, at_least=2)["verdict"] == "met"
    assert judge(2.0, ok, at_least=2)["verdict"] == "met"  # the bound itself meets it
    assert judge(1.99, ok, at_least=2)["verdict"] == "missed"
    assert judge(0.15, ok, at_most=0.15)["verdict"] == "met"
    assert judge(0.16, ok, at_most=0.15)["verdict"] == "missed"


@pytest.mark.parametrize("ev, why", [
    (Evidence(reps=2, alternated=True), "2 repetition(s), 3 needed"),
    (Evidence(reps=3, alternated=False), "order not alternated"),
    (Evidence(reps=3, alternated=True, same_data=False), "the sides did not read the same data"),
    (Evidence(reps=3, alternated=True, cold_share=0.01), "cold-request share 0.01 (< 0.90)"),
    (Evidence(reps=3, alternated=True, cold_share=0.89), "cold-request share 0.89 (< 0.90)"),
])
def test_weaker_evidence_is_not_measured_whatever_the_figure(ev, why):
    for value in (100.0, 0.0):
        t = judge(value, ev, at_least=2)
        assert t["verdict"] == "not measured"
        assert t["why"] == why


def test_a_cold_share_of_ninety_percent_is_enough_and_a_missing_figure_is_not_measured():
    assert judge(3.0, Evidence(3, True, cold_share=0.9), at_least=2)["verdict"] == "met"
    t = judge(float("nan"), Evidence(3, True), at_least=2)
    assert (t["verdict"], t["why"]) == ("not measured", "no figure")


def test_alternation_means_two_repetitions_in_different_orders():
    assert alternated([AB, BA, AB])
    assert not alternated([AB, AB, AB])
    assert not alternated([AB])
    with pytest.raises(ValueError):
        judge(1.0, Evidence(3, True))


# --- provenance: the commit and whether the tree was dirty ------------------------------------

def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_provenance_records_the_commit_and_a_dirty_tree(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "b@example.org")
    _git(tmp_path, "config", "user.name", "b")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / "benchmarks" / "results" / "latest.json").write_text("{}")  # the harness's own output
    clean = provenance(tmp_path)
    assert (clean["commit"], clean["dirty"], clean["changed"]) == (head, False, [])
    (tmp_path / "code.py").write_text("x = 2\n")
    (tmp_path / "new.py").write_text("")
    dirty = provenance(tmp_path)
    assert dirty["dirty"] is True
    assert sorted(dirty["changed"]) == ["code.py", "new.py"] and dirty["changed_total"] == 2


# --- partial re-runs, merged by the harness ---------------------------------------------------

def _prov(commit: str, started: str, dirty: bool = False) -> dict:
    return {"commit": commit, "dirty": dirty, "changed": ["x.py"] if dirty else [], "started": started,
            "loadavg": [1.0, 1.0, 1.0, 2.0, 2.0, 2.0], "db_settings": {"jit": "off"}}


def _latest() -> dict:
    """A full run in the format written before per-part provenance (as the committed latest.json)."""
    return {"started": "2026-11-25 22:37:24 +0000", "versions": {"git_commit": "693eb9d"}, "errors": {},
            "p5": {"ratio": 0.99}, "extra": {"bench_geotag.py": {"stdout": "old", "returncode": 0, "seconds": 1.0}}}


def _run_only(part: str, commit: str, started: str, dirty: bool = False) -> dict:
    """What run.py holds after ``BENCH_ONLY=part``."""
    res = {"scale": "full", "config": {}, "started": started, "machine": {}, "versions": {}, "setup": {},
           "errors": {}, "parts": {part: _prov(commit, started, dirty)}, "peers": {"x": ["o", "r"]}, "extra": {}}
    if part.startswith("p"):
        res[part] = {"ratio": 9.0}
    else:
        res["extra"][f"bench_{part}.py"] = {"stdout": "new", "returncode": 0, "seconds": 1.0}
    return res


def test_partials_are_merged_with_their_commit_and_dirty_state(tmp_path):
    paths = write_partials(_run_only("p5", "abc1234567", "2026-12-02T05:00:00Z", dirty=True), tmp_path)
    paths += write_partials(_run_only("geotag", "def7654321", "2026-12-02T05:10:00Z"), tmp_path)
    assert sorted(p.name for p in paths) == ["partial-geotag.json", "partial-p5.json"]
    latest = _latest()
    for p in paths:
        assert merge(latest, json.loads(p.read_text()))
    assert latest["p5"] == {"ratio": 9.0}
    assert latest["extra"]["bench_geotag.py"]["stdout"] == "new"
    assert latest["parts"]["p5"]["commit"] == "abc1234567" and latest["parts"]["p5"]["dirty"] is True
    assert latest["parts"]["geotag"]["commit"] == "def7654321" and latest["parts"]["geotag"]["dirty"] is False
    text = render_min(latest)
    assert "Measured at commit abc1234567 (DIRTY tree, 1 file(s) differ: x.py)" in text
    assert "Measured at commit def7654321 (clean tree)" in text


def test_the_peer_table_comes_from_the_newest_partial_whatever_the_merge_order(tmp_path):
    old = _run_only("p2", "aaa", "2026-12-02T04:00:00Z")
    new = _run_only("p3", "bbb", "2026-12-02T05:00:00Z")
    old["peers"], new["peers"] = {"exactextract": ["feature-sequential", "old"]}, {"exactextract": ["raster", "new"]}
    latest = _latest()
    for res in (new, old):  # file order: partial-p2 would be read after partial-p3 if names sorted so
        assert merge(latest, json.loads(write_partials(res, tmp_path)[0].read_text()))
    assert latest["peers"] == {"exactextract": ["raster", "new"]}


def test_an_older_partial_does_not_replace_a_newer_figure(tmp_path):
    latest = _latest()
    newer = json.loads(write_partials(_run_only("p5", "bbb", "2026-12-02T06:00:00Z"), tmp_path)[0].read_text())
    older = copy.deepcopy(newer)
    older["provenance"]["started"], older["provenance"]["commit"], older["p5"] = "2026-12-01T06:00:00Z", "aaa", {}
    assert merge(latest, newer)
    assert not merge(latest, older)
    assert not merge(latest, newer)  # merging twice changes nothing
    assert latest["parts"]["p5"]["commit"] == "bbb"
    # a partial older than the full run it would go into is not merged either
    stale = copy.deepcopy(older)
    stale["provenance"]["started"] = "2026-11-25T22:00:00Z"
    assert not merge(_latest(), stale)


def render_min(res: dict) -> str:
    base = {"scale": "full", "machine": {"cpu": "", "cores": 2, "memory": "", "os": "", "loadavg_at_start": []},
            "versions": {"python": "", "git_commit": "693eb9d", "ours": {}, "peers_venv": "", "tippecanoe": "",
                         "postgres": "", "wrk": ""}, "setup": {}}
    return render({**base, **res, "versions": {**base["versions"], **res.get("versions", {})}})


# --- the committed results ------------------------------------------------------------------

def test_latest_md_is_exactly_the_rendering_of_latest_json():
    res = json.loads((RESULTS / "latest.json").read_text(encoding="utf-8"))
    assert render(res) == (RESULTS / "latest.md").read_text(encoding="utf-8")


def test_the_committed_report_claims_no_target_its_evidence_cannot_back():
    res = json.loads((RESULTS / "latest.json").read_text(encoding="utf-8"))
    text = render(res)
    assert not set(RETIRED) & set(res)
    assert "3,072" not in text  # the pygeoapi tile ratio (a bug measured on cache hits) is gone
    met = [ln for ln in text.splitlines() if ln.startswith("- ") and ": **met**" in ln]
    for line in met:
        reps = re.search(r"; (\d+) repetition\(s\), alternated", line)
        assert reps and int(reps.group(1)) >= 3, line


def test_targets_recorded_as_bare_booleans_render_as_not_measured():
    lines = target_lines({"ours >= 10x py3dtiles (buildings/s)": True, "ours >= 2x tipg": False})
    assert [ln.split(" (recorded as")[0] for ln in lines] == ["- ours >= 10x py3dtiles (buildings/s): **not measured**",
                                                   "- ours >= 2x tipg: **not measured**"]
    assert all("without the evidence benchmarks/verdict.py needs" in ln for ln in lines)


def test_the_citygml_part_is_written_and_merged_under_its_own_script_name(tmp_path):
    # P4's script is benchmarks/p4_citygml.py, not bench_p4.py: the partial is keyed by the real file
    res = _run_only("city3d", "c0ffee1234", "2026-12-02T06:00:00Z")
    res["parts"]["p4"] = _prov("c0ffee1234", "2026-12-02T06:00:00Z")
    res["extra"]["p4_citygml.py"] = {"stdout": "p4 figures", "returncode": 0, "seconds": 2.0}
    paths = write_partials(res, tmp_path)
    assert sorted(p.name for p in paths) == ["partial-city3d.json", "partial-p4.json"]
    latest = _latest()
    for p in paths:
        assert merge(latest, json.loads(p.read_text()))
    assert latest["extra"]["p4_citygml.py"]["stdout"] == "p4 figures"
    assert latest["parts"]["p4"]["commit"] == "c0ffee1234"


def test_the_zoom_mix_reads_the_same_after_a_json_round_trip():
    # latest.md is rendered from the results dict in the run and from latest.json later, whose keys are strings
    assert _zoom_mix({14: 195, 16: 2230, 15: 643}) == _zoom_mix({"16": 2230, "14": 195, "15": 643}) \
        == "z14: 195, z15: 643, z16: 2,230"


# --- P1 with the Dask side ------------------------------------------------------------------

def _p1_side(seconds: float, rss: float, tree: float, ours: bool = True) -> dict:
    side = {"seconds_median": seconds, "max_rss_mb_median": rss, "tree_rss_mb_median": tree, "runs": [],
            "tiles": 81, "largest_tile_bytes": 500_000, "archive_bytes": 2_200_000,
            "dropped_per_zoom": {"10": 5, "16": 0}}
    if ours:
        side.update(build_seconds_median=seconds - 1, driver_seconds_median=0.25, driver_share_of_wall_median=0.025,
                    driver_share_of_build_median=0.04, outside_build_seconds_median=1.0, partitions=9, workers=2)
    return side


def _p1_with_dask() -> dict:
    from benchmarks.p1_tiles import figures, order_for

    orders = [order_for(rep) for rep in range(3)]
    runs = {n: [{"seconds": s, "max_rss_mb": 100.0, "tree_rss_mb": 150.0, "driver_share_of_wall": 0.025}] * 3
            for n, s in (("ours", 10.0), ("ours_t1", 16.0), ("ours_w2", 7.0), ("tippecanoe", 20.0))}
    return {"layer": "buildings", "features": 600_000, "zooms": "10-16", "reps": 3, "orders": orders,
            "commands": {"ours": "OURS", "ours_t1": "OURS T1", "ours_w2": "OURS 2", "tippecanoe": "TIP"},
            "ours": {**_p1_side(10.0, 900.0, 880.0), "complete_from_zoom": 14, "threads": 2},
            "ours_t1": {**_p1_side(16.0, 800.0, 790.0), "same_archive_as_ours": True},
            "ours_w2": {**_p1_side(7.0, 700.0, 1_600.0), "same_archive_as_ours": True},
            "tippecanoe": _p1_side(20.0, 300.0, 310.0, ours=False), **figures(runs, orders, 3)}


def test_p1_renders_one_thread_and_the_dask_side_as_columns_with_their_ratios_and_targets():
    text = render_min({"p1": [_p1_with_dask()], "started": "2026-12-02 17:00:00 +0000"})
    head = next(ln for ln in text.splitlines() if ln.startswith("| | ours in process"))
    assert head.count("|") == 6 and "ours --workers 2" in head and "tippecanoe" in head
    assert "zooms on 2 threads" in head and "ours in process on one thread (--threads 1)" in head
    assert "| peak RSS, largest single process (GNU time %M) | 900 MB | 800 MB | 700 MB | 300 MB |" in text
    assert "| peak RSS, whole process tree summed (sampled every 0.2 s) | 880 MB | 790 MB | 1,600 MB | 310 MB |" in text
    assert "| driver share of the child's wall time (imports, cluster start and stop included) | 2.5 % | 2.5 % | " \
        "2.5 % | n/a |" in text
    assert "| driver share of the build (driver_seconds / BuildReport.seconds) | 4.0 % | 4.0 % | 4.0 % | n/a |" in text
    assert "| outside the build: imports, the store, the cluster's start and stop (wall - BuildReport.seconds) " \
        "| 1.0 s | 1.0 s | 1.0 s | n/a |" in text
    assert "- time ours --workers 2 / ours in process on one thread: **0.44**" in text
    assert "- ours --workers 2 faster than in process on one thread (--threads 1): **met** (figure 0.44" in text
    assert "one thread wrote byte for byte the same archive as in process" in text
    assert "- time ours --workers 2 / ours in process: **0.70**" in text
    assert "- time ours --workers 2 / tippecanoe: **0.35**" in text
    assert "- ours --workers 2 faster than in process: **met** (figure 0.70, target <= 1; 3 repetition(s), alternated)" \
        in text
    assert "- ours --workers 2 time <= 0.5 x tippecanoe: **met** (figure 0.35" in text
    assert "- ours --workers 2 driver share < 5% (driver_seconds / the child's wall time, in %): **met** (figure 2.50" \
        in text
    assert "byte for byte the same archive as in process" in text
    assert "could not render" not in text


def test_p1_results_without_the_one_thread_side_render_three_columns():
    old = _p1_with_dask()
    for key in ("ours_t1", "time_ratio_ours_t1_over_tippecanoe", "time_ratio_ours_w2_over_ours_t1",
                "time_ratio_ours_over_ours_t1"):
        old.pop(key)
    old["commands"].pop("ours_t1")
    text = render_min({"p1": [old], "started": "2026-12-02 17:00:00 +0000"})
    head = next(ln for ln in text.splitlines() if ln.startswith("| | ours in process"))
    assert head.count("|") == 5 and "one thread" not in head
    assert "| peak RSS, largest single process (GNU time %M) | 900 MB | 700 MB | 300 MB |" in text
    assert "could not render" not in text


def test_p1_results_without_the_dask_side_render_as_before():
    old = _p1_with_dask()
    old.pop("ours_t1")
    old["commands"].pop("ours_t1")
    for key in ("ours_w2", "time_ratio_ours_w2_over_ours", "time_ratio_ours_w2_over_tippecanoe",
                "tree_rss_ratio_ours_w2_over_tippecanoe"):
        old.pop(key)
    old["commands"].pop("ours_w2")
    text = render_min({"p1": [old], "started": "2026-12-02 17:00:00 +0000"})
    assert "| | ours (build_pmtiles on the PostGIS store) | tippecanoe |" in text
    assert "--workers" not in text.split("## P1", 1)[1].split("- ours time", 1)[0]
    assert "could not render" not in text
