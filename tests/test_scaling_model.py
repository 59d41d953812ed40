"""The scaling model's arithmetic, and the PMTiles cost log a real build writes for it."""
from __future__ import annotations

import sys
from pathlib import Path

import pyogrio
import pytest
from click.testing import CliRunner
from pmtiles.reader import MmapSource, all_tiles

import tiles.pmtiles_partitions as partitions
from pipelines.cli import main
from pipelines.costs import CostLog, PartitionCost, cost_log_path, read_cost_log, write_cost_log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is run from the repo, not installed
from benchmarks.citygen import generate  # noqa: E402
from benchmarks.scaling_model import makespan, predict, scaled_tasks  # noqa: E402


def logged_run() -> CostLog:
    """100 features: one whole-layer partition of 10 s (1 s reading), four blocks of 2 s (1 s reading),
    5 s of driver."""
    whole = PartitionCost(read_s=1.0, work_s=9.0, rows=100, bytes=1000, whole_layer=True)
    block = PartitionCost(read_s=1.0, work_s=1.0, rows=30, bytes=300)
    return CostLog("pmtiles", "b", 100, 1, wall_s=23.0, driver_s=5.0, write_s=1.0, partitions=[whole] + [block] * 4)


def test_tasks_scale_whole_layer_partitions_in_cost_and_blocks_in_number():
    tasks, reads = scaled_tasks(logged_run(), 200)
    assert tasks == [20.0] + [2.0] * 8
    assert reads == [2.0] + [1.0] * 8


def test_makespan_hands_tasks_out_in_order_to_the_first_free_worker():
    assert makespan([20.0] + [2.0] * 8, 1) == 36.0
    # worker 1 takes the 20 s task; the other three share eight 2 s tasks: 3, 3 and 2 of them
    assert makespan([20.0] + [2.0] * 8, 4) == 20.0
    assert makespan([2.0] * 8 + [20.0], 4) == 24.0  # the long task last: it starts at 4 s
    assert makespan([], 8) == 0.0


@pytest.mark.parametrize("workers, wall, bound", [(1, 10 + 36, "workers"), (4, 10 + 20, "critical path"),
                                                  (32, 10 + 20, "critical path")])
def test_prediction_at_twice_the_features(workers: int, wall: float, bound: str):
    job = predict([logged_run()], 200, workers).jobs[0]
    assert (job.partitions, job.critical_path_s, job.work_s, job.driver_s) == (9, 20.0, 36.0, 10.0)
    assert (job.wall_s, job.bound) == (wall, bound)


def test_the_store_bounds_the_reads():
    # at 4x: 20 s of reads on one stream, under the 40 s critical path
    job = predict([logged_run()], 400, 32, store_streams=1).jobs[0]
    assert (job.reads_s, job.makespan_s, job.bound) == (20.0, 40.0, "critical path")
    # twenty 4.5 s windows (4 s reading) on 8 workers take 13.5 s, but two streams read 80 s in 40
    slow_reads = CostLog("ingest", "b", 100, 1, 10.0, 1.0, 0.5,
                         [PartitionCost(read_s=4.0, work_s=0.5, rows=50, bytes=10)] * 2)
    job = predict([slow_reads], 1000, 8, store_streams=2).jobs[0]
    assert (job.reads_s, job.makespan_s, job.wall_s, job.bound) == (80.0, 40.0, 50.0, "store reads")
    assert predict([slow_reads], 1000, 8).jobs[0].makespan_s == 13.5


def test_jobs_add_up_and_logs_round_trip(tmp_path: Path):
    log = logged_run()
    back = read_cost_log(write_cost_log(tmp_path, log))
    assert back == log
    ingest = CostLog("ingest", "b", 100, 1, 3.0, 1.0, 0.5, [PartitionCost(0.5, 1.5, 100, 500)])
    p = predict([ingest, log], 200, 4)
    assert p.wall_s == pytest.approx((2.0 + 2.0) + 30.0)  # ingest: 2 s driver, two 2 s windows side by side


def test_a_build_logs_what_each_partition_cost(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(partitions, "SPLIT_FEATURES", 100)  # blocks for a small layer
    monkeypatch.setattr(partitions, "MIN_BLOCKS", 2)
    project = tmp_path / "proj"
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(project)]).exit_code == 0
    src = tmp_path / "city.fgb"
    pyogrio.write_dataframe(generate(20_000, seed=5).buildings, src)
    result = runner.invoke(main, ["ingest", str(src), "--layer", "b", "--kind", "generic", "--minzoom", "12",
                                  "--maxzoom", "16", "--project", str(project)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["build", "--skip-ingest", "--project", str(project)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    log = read_cost_log(cost_log_path(project / "build", "b", "pmtiles"))
    features = pyogrio.read_info(src)["features"]
    assert (log.job, log.layer, log.features, log.workers) == ("pmtiles", "b", features, 1)
    count = int(result.output.split(" partition(s)")[0].rsplit("; ", 1)[1])
    assert len(log.partitions) == count >= 3
    assert [p.whole_layer for p in log.partitions] == [True] + [False] * (count - 1)
    assert log.partitions[0].rows == features  # the low zooms read the whole layer
    with open(project / "build" / "tiles" / "b.pmtiles", "rb") as f:  # every tile's bytes, read back
        tile_bytes = sum(len(data) for _, data in all_tiles(MmapSource(f)))
    assert sum(p.bytes for p in log.partitions) == tile_bytes
    assert all(p.read_s > 0 and p.work_s > 0 for p in log.partitions)
    assert 0 < log.write_s <= log.driver_s < log.wall_s
