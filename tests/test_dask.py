"""Builds on a 2-worker Dask LocalCluster equal the in-process build, even when a worker dies."""
from __future__ import annotations

import filecmp
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from pipelines.build import build_project
from pipelines.catalog import load_catalog
from pipelines.export3d import footprints_to_tileset
from pipelines.project import project_store
from pipelines.runner import DaskRunner
from pipelines.sample_city import generate


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
    lines = list(build_project(distributed, progress=False, workers=2))
    assert any("3D Tiles" in line for line in lines)

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


def test_killed_worker_is_retried_and_the_result_is_identical(sample: Path, tmp_path: Path):
    catalog = load_catalog(sample)
    list(build_project(sample, progress=False, layers=["buildings"]))
    gdf = project_store(catalog).read("buildings")
    expected_dir = tmp_path / "expected"
    footprints_to_tileset(gdf, expected_dir, source="buildings", progress=False, max_per_tile=60)

    runner = DaskRunner(workers=2)
    killed: list[int] = []

    def kill_one_worker(done: int, total: int) -> None:
        if done == 1 and not killed:
            pid = runner.worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    original_map = runner.map

    def map_with_kill(fn, items, *, shared=None, progress=None):
        return original_map(fn, items, shared=shared, progress=kill_one_worker)

    runner.map = map_with_kill  # the kill rides on the real progress callback
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
