"""The real test data in ``<repo>/../shared/data``: absent on a laptop it skips, absent in CI it fails.

Tests that read it carry ``@pytest.mark.realdata`` (optionally with the path they need below the
folder, e.g. ``realdata("gtfs", "caltrain-2017-07-24.zip")``); the hook below checks it before any
fixture runs. Code that needs a path at run time calls ``shared_data(...)``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_NOT_CI = {"", "0", "false", "no", "off"}


def in_ci() -> bool:
    """CI is set to a true-ish value (CI services set CI=true; .ci/run does too)."""
    return os.environ.get("CI", "").strip().lower() not in _NOT_CI


def shared_data(*parts: str) -> Path:
    """``SHARED_DATA/parts``; a missing one skips the test, or fails it when CI is set."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if in_ci():
            pytest.fail(f"real data {path} is absent and CI={os.environ['CI']}: a CI run must have "
                        f"../shared/data beside the clone (run from a checkout next to shared/)", pytrace=False)
        pytest.skip(f"real data {path} is absent (fresh clone without shared data)")
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # before fixtures, so module-scoped fixtures that read the data never see it missing
    marker = item.get_closest_marker("realdata")
    if marker is not None:
        shared_data(*marker.args)
