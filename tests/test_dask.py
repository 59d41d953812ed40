"""Builds on a 2-worker Dask LocalCluster equal the in-process build, even when a worker dies."""
from __future__ import annotations

import filecmp
import os
import shutil
import signal
from pathlib import Path

import morecantile
import numpy as np
import pytest
from click.testing import CliRunner

from pipelines.build import build_project
from pipelines.catalog import load_catalog
from pipelines.cli import main
from pipelines.export3d import footprints_to_tileset
from pipelines.project import project_store
from pipelines.runner import DaskRunner
from pipelines.sample_city import generate
from tiles.pmtiles_build import BuildReport, build_pmtiles
from tiles.pmtiles_partitions import Partition


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("dask") / "city"
    list(generate(project, seed=20151))
    return project


def test_two_worker_build_equals_in_process_build(sample: Path, tmp_path: Path):
    serial = tmp_path / "serial"
    shutil.copytree(sample, serial)
    list(build_project(serial, progress=False))
    distributed = tmp_path / "dask"
    shutil.copytree(sample, distributed)
    # through the command line: its cluster starts while the build's modules load
    result = CliRunner().invoke(main, ["build", "--workers", "2", "--project", str(distributed)])
    assert result.exit_code == 0, result.output
    assert "3D Tiles" in result.output

    for product in ("tiles", "3dtiles"):
        a, b = tree_files(serial / "build" / product), tree_files(distributed / "build" / product)
        assert a.keys() == b.keys() and len(a) > 5
        different = [name for name in a if a[name] != b[name]]
        assert not different, different[:5]
    # the same features in the store
    s_store = project_store(load_catalog(serial))
    d_store = project_store(load_catalog(distributed))
    for layer in s_store.layers():
        left, right = s_store.read(layer), d_store.read(layer)
        assert left["id"].tolist() == right["id"].tolist()
        assert left.geometry.equals(right.geometry)


def _kill_first_worker_after_one(runner: DaskRunner, killed: list[int]) -> None:
    """From now on, the first finished partition kills a worker, through the real progress callback."""
    original_map = runner.map

    def kill_one_worker(done: int, total: int) -> None:
        if done == 1 and not killed:
            pid = runner.worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    def map_with_kill(fn, items, *, shared=None, progress=None):
        return original_map(fn, items, shared=shared, progress=kill_one_worker)

    original_map_after = runner.map_after

    def map_after_with_kill(first, first_items, fn, items, *, name, shared=None, progress=None):
        return original_map_after(first, first_items, fn, items, name=name, shared=shared, progress=kill_one_worker)

    runner.map, runner.map_after = map_with_kill, map_after_with_kill


def _dask_build_with_a_kill_equals_in_process(sample: Path, tmp_path: Path, plan_for) -> BuildReport:
    """Build the sample's buildings on 2 workers with ``plan_for(store, layer config)``'s partitions,
    one worker killed after the first, and check it writes the in-process build's archive."""
    catalog = load_catalog(sample)
    list(build_project(sample, progress=False, layers=["buildings"]))
    store = project_store(catalog)
    cfg = catalog.layers["buildings"]
    parts = plan_for(store, cfg)
    expected = build_pmtiles(store, "buildings", tmp_path / "whole.pmtiles", cfg.minzoom, cfg.maxzoom, cfg.fields,
                             progress=False, partitions=[Partition(0, 0, 0, (cfg.minzoom, cfg.maxzoom))])
    runner = DaskRunner(workers=2)
    killed: list[int] = []
    _kill_first_worker_after_one(runner, killed)
    try:
        got = build_pmtiles(store, "buildings", tmp_path / "dask.pmtiles", cfg.minzoom, cfg.maxzoom, cfg.fields,
                            progress=False, runner=runner, partitions=parts)
    finally:
        runner.close()
    assert killed, "no worker was killed: the test did not exercise a retry"
    assert got.path.read_bytes() == expected.path.read_bytes()
    assert got.zooms == expected.zooms and got.features == expected.features == len(store.read("buildings"))
    assert got.partitions == len(parts)
    return got


def test_pmtiles_blocks_on_dask_with_a_killed_worker_equal_the_in_process_build(sample: Path, tmp_path: Path):
    def blocks(store, cfg) -> list[Partition]:
        # blocks read their own rows from the store; partitions outnumber workers, so one dies mid-run
        tms = morecantile.tms.get("WebMercatorQuad")
        parts = [Partition(0, 0, 0, (cfg.minzoom, cfg.minzoom))] + [
            Partition(cfg.minzoom, t.x, t.y, (cfg.minzoom + 1, cfg.maxzoom))
            for t in tms.tiles(*store.info("buildings").bounds, zooms=[cfg.minzoom])]
        assert len(parts) >= 3
        return parts

    _dask_build_with_a_kill_equals_in_process(sample, tmp_path, blocks)


def test_pmtiles_zoom_ranges_on_dask_with_a_killed_worker_equal_the_in_process_build(sample: Path, tmp_path: Path):
    def ranges(store, cfg) -> list[Partition]:
        # three whole-layer ranges share two slices read on the workers: a worker dies after the
        # first range, losing a slice that the ranges still to run need, so Dask reads it again
        assert cfg.maxzoom - cfg.minzoom >= 2
        mid = (cfg.minzoom + cfg.maxzoom) // 2
        return [Partition(0, 0, 0, r) for r in ((mid + 1, cfg.maxzoom), (mid, mid), (cfg.minzoom, mid - 1))]

    got = _dask_build_with_a_kill_equals_in_process(sample, tmp_path, ranges)
    assert sum(c.rows for c in got.partition_costs if not c.zooms) == got.features  # the slices, once each


def test_killed_worker_is_retried_and_the_result_is_identical(sample: Path, tmp_path: Path):
    catalog = load_catalog(sample)
    list(build_project(sample, progress=False, layers=["buildings"]))
    gdf = project_store(catalog).read("buildings")
    expected_dir = tmp_path / "expected"
    footprints_to_tileset(gdf, expected_dir, source="buildings", progress=False, max_per_tile=60)

    runner = DaskRunner(workers=2)
    killed: list[int] = []
    _kill_first_worker_after_one(runner, killed)
    try:
        got_dir = tmp_path / "got"
        report = footprints_to_tileset(gdf, got_dir, source="buildings", progress=False, max_per_tile=60,
                                       runner=runner)
    finally:
        runner.close()
    assert killed, "no worker was killed: the test did not exercise a retry"
    assert report.buildings == int(np.isfinite(gdf["height"].to_numpy(dtype=float, na_value=np.nan)).sum())
    cmp = filecmp.dircmp(expected_dir, got_dir)
    assert tree_files(expected_dir) == tree_files(got_dir), (cmp.diff_files, cmp.left_only, cmp.right_only)


def _environment_of_worker(name: str) -> str | None:
    return os.environ.get(name)


def test_local_workers_keep_glibcs_own_malloc_thresholds():
    # Dask sets MALLOC_TRIM_THRESHOLD_ for its workers; any value freezes glibc's mmap threshold
    # and made the PMTiles partitions a third slower, so our local cluster unsets it
    runner = DaskRunner(workers=2)
    try:
        seen = runner.client.run(_environment_of_worker, "MALLOC_TRIM_THRESHOLD_")
        threads = runner.client.run(_environment_of_worker, "OMP_NUM_THREADS")
    finally:
        runner.close()
    assert len(seen) == 2 and set(seen.values()) == {None}
    assert set(threads.values()) == {"1"}  # the rest of Dask's worker environment stays


def test_a_cluster_that_cannot_start_fails_the_first_call_and_closes():
    """The cluster starts on a thread of its own: what stopped it is raised where the runner is used."""
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        runner = DaskRunner(address="tcp://127.0.0.1:9")  # nothing listens on the discard port
        with pytest.raises(OSError, match="127.0.0.1:9"):
            runner.map(_environment_of_worker, ["HOME"])
        runner.close()


def test_a_command_line_build_on_dask_prints_our_report_not_dasks_log(sample: Path, tmp_path: Path):
    """distributed sets its loggers' levels when imported, now on the cluster's own thread: ours win."""
    import subprocess
    import sys

    from api_server import CITYTWIN

    project = tmp_path / "city"
    shutil.copytree(sample, project)
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    done = subprocess.run([*exe, "build", "--workers", "2", "--layer", "buildings",
                           "--project", str(project)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "layer 'buildings'" in done.stdout
    assert "INFO distributed" not in done.stdout + done.stderr
