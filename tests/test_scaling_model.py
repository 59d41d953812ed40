"""The scaling model's arithmetic, and the PMTiles cost log a real build writes for it."""
from __future__ import annotations

import sys
from pathlib import Path

import morecantile
import pyogrio
import pytest
from click.testing import CliRunner
from pmtiles.reader import MmapSource, all_tiles

import tiles.pmtiles_partitions as partitions
from pipelines.readers.vector import CHUNK
from tiles.pmtiles_partitions import Partition
from pipelines.cli import main
from pipelines.costs import CostLog, PartitionCost, cost_log_path, read_cost_log, write_cost_log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is run from the repo, not installed
from benchmarks.citygen import generate  # noqa: E402
from benchmarks.scaling_model import (  # noqa: E402
    ingest_tasks, makespan, one_heavy_block, pmtiles_tasks, predict, predict_job, rates, uniform_share)


def ingest_log() -> CostLog:
    """200 features in two windows of 100 rows: 1 s reading and 3 s repairing each; 2 s of driver."""
    return CostLog("ingest", "b", 200, 1, wall_s=10.0, driver_s=2.0, write_s=1.0,
                   partitions=[PartitionCost(read_s=1.0, work_s=3.0, rows=100, bytes=10)] * 2)


def pmtiles_log() -> CostLog:
    """100 features: a whole-layer partition (z10-12) and two blocks (z13-14) reading 75 rows each."""
    whole = PartitionCost(read_s=1.0, work_s=6.0, rows=100, bytes=1, whole_layer=True,
                          zooms=((10, 100, 1.0), (11, 100, 2.0), (12, 100, 3.0)))
    block = PartitionCost(read_s=0.75, work_s=4.0, rows=75, bytes=1, zooms=((13, 70, 1.5), (14, 60, 2.5)))
    return CostLog("pmtiles", "b", 100, 1, wall_s=20.0, driver_s=3.0, write_s=1.0, partitions=[whole, block, block])


def test_rates_per_row_and_per_feature():
    r = rates(ingest_log())
    assert (r.read_per_row, r.work_per_row, r.driver_per_feature) == (0.01, 0.03, 0.01)
    r = rates(pmtiles_log())
    assert r.read_per_row == pytest.approx(2.5 / 250)
    assert r.encode_per_feature == pytest.approx({10: 0.01, 11: 0.02, 12: 0.03, 13: 0.03, 14: 0.05})
    assert r.context == 1.5  # 150 rows read by blocks for 100 features


def test_ingest_windows_are_chunk_rows_each():
    tasks = ingest_tasks(ingest_log(), 2 * CHUNK + 10)
    assert [round(t, 6) for t, _ in tasks] == [round(0.04 * CHUNK, 6)] * 2 + [0.4]
    assert [round(r, 6) for _, r in tasks] == [round(0.01 * CHUNK, 6)] * 2 + [0.1]


def test_a_small_target_is_one_whole_layer_task():
    # under SPLIT_FEATURES the plan is one partition: every zoom of every feature, read once
    tasks = pmtiles_tasks(pmtiles_log(), 1000, (126.9, 37.5, 127.0, 37.6), 10, 14)
    assert tasks == [pytest.approx((0.01 * 1000 + (0.01 + 0.02 + 0.03 + 0.03 + 0.05) * 1000, 0.01 * 1000))]


def test_block_shares_follow_the_area():
    tms = morecantile.tms.get("WebMercatorQuad")
    b = tms.bounds(morecantile.Tile(873, 396, 10))
    share = uniform_share((b.left, b.bottom, b.right, b.top))
    assert share(Partition(10, 873, 396, (13, 16))) == pytest.approx(1.0)
    assert share(Partition(10, 874, 396, (13, 16))) == pytest.approx(0.0)
    assert share(Partition(11, 1746, 792, (14, 16))) == pytest.approx(0.25)
    heavy = one_heavy_block((b.left, b.bottom, b.right, b.top), (11, 1746, 792), 0.7)
    assert heavy(Partition(11, 1746, 792, (14, 16))) == 0.7
    assert heavy(Partition(11, 1747, 793, (14, 16))) == pytest.approx(0.1)


def test_makespan_hands_tasks_out_in_order_to_the_first_free_worker():
    assert makespan([20.0] + [2.0] * 8, 1) == 36.0
    # worker 1 takes the 20 s task; the other three share eight 2 s tasks: 3, 3 and 2 of them
    assert makespan([20.0] + [2.0] * 8, 4) == 20.0
    assert makespan([2.0] * 8 + [20.0], 4) == 24.0  # the long task last: it starts at 4 s
    assert makespan([], 8) == 0.0


def test_the_bound_is_the_largest_part():
    log = ingest_log()  # driver 0.01 s per feature
    tasks = [(20.0, 1.0)] + [(2.0, 1.0)] * 8
    one = predict_job(log, tasks, 100, 1)
    assert (one.makespan_s, one.driver_s, one.wall_s, one.bound) == (36.0, 1.0, 37.0, "workers")
    four = predict_job(log, tasks, 100, 4)
    assert (four.wall_s, four.bound) == (21.0, "critical path")
    one_stream = predict_job(log, [(4.5, 4.0)] * 20, 100, 8, store_streams=2)
    assert (one_stream.reads_s, one_stream.makespan_s, one_stream.bound) == (80.0, 40.0, "store reads")
    assert predict_job(log, [(4.5, 4.0)] * 20, 100, 8).makespan_s == 13.5
    assert predict_job(log, [(1.0, 0.0)], 10_000, 8).bound == "driver"


def test_jobs_add_up_and_logs_round_trip(tmp_path: Path):
    for log in (ingest_log(), pmtiles_log()):
        assert read_cost_log(write_cost_log(tmp_path, log)) == log
    p = predict(ingest_log(), pmtiles_log(), 1000, 4, bounds=(126.9, 37.5, 127.0, 37.6), maxzoom=14)
    ingest_s = 0.01 * 1000 + 0.04 * 1000  # driver, then one window of 1,000 rows
    pmtiles_s = 0.03 * 1000 + (0.01 + 0.14) * 1000
    assert p.wall_s == pytest.approx(ingest_s + pmtiles_s)


def test_the_model_refuses_a_log_whose_zooms_overlap():
    from dataclasses import replace

    with pytest.raises(ValueError, match="--threads 1"):
        rates(replace(pmtiles_log(), threads=2))


def test_a_build_logs_what_each_partition_cost(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(partitions, "SPLIT_FEATURES", 100)  # blocks for a small layer
    monkeypatch.setattr(partitions, "WHOLE_LAYER_FEATURES", 100)  # ... in process too
    monkeypatch.setattr(partitions, "MIN_BLOCKS", 2)
    project = tmp_path / "proj"
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(project)]).exit_code == 0
    src = tmp_path / "city.fgb"
    pyogrio.write_dataframe(generate(20_000, seed=5).buildings, src)
    result = runner.invoke(main, ["ingest", str(src), "--layer", "b", "--kind", "generic", "--minzoom", "12",
                                  "--maxzoom", "16", "--project", str(project)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # one thread: each zoom's seconds are then part of its partition's work
    result = runner.invoke(main, ["build", "--skip-ingest", "--threads", "1", "--project", str(project)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    log = read_cost_log(cost_log_path(project / "build", "b", "pmtiles"))
    features = pyogrio.read_info(src)["features"]
    assert (log.job, log.layer, log.features, log.workers, log.threads) == ("pmtiles", "b", features, 1, 1)
    count = int(result.output.split(" partition(s)")[0].rsplit("; ", 1)[1])
    assert len(log.partitions) == count >= 3
    whole = [p for p in log.partitions if p.whole_layer]  # logged in the order run: longest first
    assert len(whole) == 1 and whole[0].rows == features  # the low zooms read the whole layer
    with open(project / "build" / "tiles" / "b.pmtiles", "rb") as f:  # every tile's bytes, read back
        tile_bytes = sum(len(data) for _, data in all_tiles(MmapSource(f)))
    assert sum(p.bytes for p in log.partitions) == tile_bytes
    assert all(p.read_s > 0 and p.work_s > 0 for p in log.partitions)
    for p in log.partitions:  # every zoom of the plan, in order, its seconds part of the partition's work
        assert [z for z, _, _ in p.zooms] == list(range(p.zooms[0][0], p.zooms[-1][0] + 1))
        assert 0 < sum(s for _, _, s in p.zooms) <= p.work_s and all(rows > 0 for _, rows, _ in p.zooms)
    assert [z for p in log.partitions for z, _, _ in p.zooms if p.whole_layer][0] == 12
    assert sorted({z for p in log.partitions for z, _, _ in p.zooms}) == list(range(12, 17))
    assert 0 < log.write_s <= log.driver_s < log.wall_s


def test_the_model_plans_for_its_worker_count():
    # the build cuts finer blocks when it has more workers; the model must schedule the same plan
    korea, n = (124.6, 33.1, 131.9, 38.6), 7_000_000
    for workers in (1, 8, 32):
        tasks = pmtiles_tasks(pmtiles_log(), n, korea, 10, 16, workers=workers)
        assert len(tasks) == len(partitions.plan(korea, n, 10, 16, workers))
        seconds = [t for t, _ in tasks]
        assert seconds == sorted(seconds, reverse=True)  # longest first, as the build hands them out
    assert len(partitions.plan(korea, n, 10, 16, 8)) > len(partitions.plan(korea, n, 10, 16, 1))
