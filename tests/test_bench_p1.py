"""P1's Dask side: the rotated order, the worker's line, the verdicts, and the summed RSS of a process tree.

Fast and without PostGIS or peers: hand-made runs, and one small child process that starts two
memory-holding grandchildren.
"""
from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is not an installed package

from benchmarks import common  # noqa: E402
from benchmarks.common import Timed, run_timed  # noqa: E402
from benchmarks.p1_tiles import SIDES, figures, order_for, parse_worker, run_record  # noqa: E402
from benchmarks.verdict import alternated  # noqa: E402


def test_two_repetitions_already_run_every_pair_of_sides_in_both_orders():
    orders = [order_for(rep) for rep in range(4)]
    assert all(sorted(o) == sorted(SIDES) for o in orders)
    assert len({tuple(o) for o in orders}) == 4  # no repetition repeats another's order
    for pair in itertools.permutations(SIDES, 2):
        assert alternated(orders[:2], pair), pair
    assert not alternated(orders[:1], ("ours", "ours_w2"))


def test_a_pair_kept_in_one_order_is_not_alternated_even_when_the_orders_differ():
    orders = [["a", "b", "c"], ["a", "c", "b"], ["a", "b", "c"]]
    assert alternated(orders)  # the orders differ...
    assert not alternated(orders, ("a", "b"))  # ...but a always ran before b
    assert alternated(orders, ("b", "c"))


def _timed(seconds: float, stdout: str = "", rss: float = 100.0, tree: float = 100.0) -> Timed:
    return Timed(seconds, rss, 0, stdout, "", tree)


def test_the_worker_line_gives_both_driver_shares():
    out = "some log line\n" + '{"seconds": 8.0, "driver_seconds": 0.4, "partitions": 9, "workers": 2}\n'
    assert parse_worker(out)["partitions"] == 9
    rec = run_record("ours_w2", _timed(10.0, out, 300.0, 700.0))
    assert rec["driver_share_of_wall"] == 0.4 / 10.0  # imports and the cluster's start and stop included
    assert rec["driver_share_of_build"] == 0.4 / 8.0
    assert rec["outside_build_seconds"] == 2.0
    assert (rec["max_rss_mb"], rec["tree_rss_mb"], rec["workers"]) == (300.0, 700.0, 2)
    assert "driver_seconds" not in run_record("tippecanoe", _timed(5.0))


def _runs(ours: list[float], w2: list[float], tip: list[float], share: float = 0.02,
          t1: list[float] = (16, 16, 16)) -> dict:
    def side(ts, extra=True):
        return [{"seconds": t, "max_rss_mb": 100.0, "tree_rss_mb": 150.0,
                 **({"driver_share_of_wall": share} if extra else {})} for t in ts]
    return {"ours": side(ours), "ours_t1": side(t1), "ours_w2": side(w2), "tippecanoe": side(tip, False)}


def test_the_dask_targets_are_judged_on_per_repetition_ratios():
    orders = [order_for(rep) for rep in range(3)]
    f = figures(_runs([10, 10, 10], [6, 6, 20], [20, 20, 20]), orders, 3)
    assert f["time_ratio_ours_w2_over_ours"] == 0.6  # the median of 0.6, 0.6, 2.0
    assert f["time_ratio_ours_w2_over_tippecanoe"] == 0.3
    t = f["targets"]
    assert t["ours --workers 2 faster than in process"]["verdict"] == "met"
    assert t["ours --workers 2 time <= 0.5 x tippecanoe"]["verdict"] == "met"
    share = t["ours --workers 2 driver share < 5% (driver_seconds / the child's wall time, in %)"]
    assert (share["verdict"], share["value"]) == ("met", 2.0)
    assert t["ours time <= 0.5 x tippecanoe time"]["verdict"] == "met"
    one_thread = "ours --workers 2 faster than in process on one thread (--threads 1)"
    assert (t[one_thread]["verdict"], t[one_thread]["value"]) == ("met", 6 / 16)
    assert f["time_ratio_ours_over_ours_t1"] == 10 / 16
    slow = figures(_runs([10, 10, 10], [12, 12, 12], [20, 20, 20], share=0.08), orders, 3)["targets"]
    assert slow["ours --workers 2 faster than in process"]["verdict"] == "missed"
    assert slow["ours --workers 2 driver share < 5% (driver_seconds / the child's wall time, in %)"]["verdict"] \
        == "missed"
    # ours and w2 never swapped: no verdict on that pair, whatever the figure
    same = [["ours", "ours_t1", "ours_w2", "tippecanoe"], ["ours", "tippecanoe", "ours_w2", "ours_t1"],
            ["tippecanoe", "ours_t1", "ours", "ours_w2"]]
    kept = figures(_runs([10, 10, 10], [6, 6, 6], [20, 20, 20]), same, 3)["targets"]
    assert kept["ours --workers 2 faster than in process"]["verdict"] == "not measured"
    assert kept["ours --workers 2 faster than in process"]["why"] == "order not alternated"


def test_the_summed_rss_of_a_process_tree_counts_every_process(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "WORK", tmp_path)
    # two grandchildren of 120 MB each, written to so the pages are resident; GNU time's %M sees one
    hold = "import sys, time; b = b'x' * (120 * 2**20); print('ok', flush=True); time.sleep(1.5)"
    parent = textwrap.dedent(f"""
        import subprocess, sys
        kids = [subprocess.Popen([sys.executable, "-c", {hold!r}]) for _ in range(2)]
        sys.exit(max(k.wait() for k in kids))
    """)
    t = run_timed([sys.executable, "-c", parent], tree_rss=True)
    assert t.returncode == 0, t.stderr
    assert t.max_rss_mb < 200  # the largest single process
    assert t.tree_rss_mb > 230  # both grandchildren at once
    assert run_timed([sys.executable, "-c", "pass"]).tree_rss_mb is None  # not asked for
