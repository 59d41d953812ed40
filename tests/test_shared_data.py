"""The realdata check (tests/shared_data.py): a missing path skips on a laptop and fails in CI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_data import SHARED_DATA, in_ci

TESTS = Path(__file__).resolve().parent
MISSING = ("no-such-dataset", "nothing.zip")
PROBE = f'''
import pytest
from shared_data import shared_data

@pytest.mark.realdata{MISSING!r}
def test_marked():
    raise AssertionError("ran although its data is missing")

def test_called():
    shared_data{MISSING!r}
    raise AssertionError("went on although its data is missing")
'''


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """A separate pytest run of PROBE with the realdata hook loaded as a plugin and CI as given."""
    (tmp_path / "test_probe.py").write_text(PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsfE", "-p", "no:cacheprovider", "-p", "shared_data",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("ci, expected", [(None, False), ("", False), ("0", False), ("false", False), ("No", False),
                                          ("true", True), ("1", True), ("yes", True), ("TRUE", True)])
def test_ci_is_any_true_ish_value(monkeypatch: pytest.MonkeyPatch, ci: str | None, expected: bool):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert in_ci() is expected


def test_missing_data_skips_outside_ci(tmp_path: Path):
    res = run_probe(tmp_path, None)
    assert res.returncode == 0, res.stdout + res.stderr
    missing = SHARED_DATA.joinpath(*MISSING)
    skipped = [line for line in res.stdout.splitlines() if line.startswith("SKIPPED [2] ")]
    assert len(skipped) == 1 and skipped[0].endswith(f": real data {missing} is absent (fresh clone without shared data)")
    summary = res.stdout.splitlines()[-1]
    assert summary.startswith("2 skipped") and "passed" not in summary and "failed" not in summary


def test_missing_data_fails_in_ci(tmp_path: Path):
    res = run_probe(tmp_path, "true")
    assert res.returncode == 1, res.stdout + res.stderr
    missing = SHARED_DATA.joinpath(*MISSING)
    message = (f"Failed: real data {missing} is absent and CI=true: a CI run must have ../shared/data beside the "
               "clone (run from a checkout next to shared/)")
    # the marked test fails in setup (an error), the called one in its body; neither reaches its own assert
    assert f"ERROR test_probe.py::test_marked - {message}" in res.stdout
    assert f"FAILED test_probe.py::test_called - {message}" in res.stdout
    assert "although its data is missing" not in res.stdout
    summary = res.stdout.splitlines()[-1]
    assert "1 failed" in summary and "1 error" in summary and "passed" not in summary and "skipped" not in summary
