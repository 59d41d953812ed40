"""Run ``citytwin ARGS`` as a real subprocess and measure its peak resident memory.

The command runs under a small Python parent whose only child it is, so the parent's
RUSAGE_CHILDREN maximum is this command's own peak (the test process's earlier children
do not count). The child's data segment is capped, so a regression fails with an error
instead of swapping the test machine.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CITYTWIN = REPO / ".venv" / "bin" / "citytwin"

_PARENT = r"""
import json, resource, subprocess, sys
limit = int(sys.argv[1])
def cap():
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
proc = subprocess.run(sys.argv[2:], capture_output=True, text=True, preexec_fn=cap)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": proc.returncode, "out": proc.stdout, "err": proc.stderr, "peak_kb": peak_kb}))
"""


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_mb: float


def run_measured(*args: str, data_limit_mb: int = 3000, timeout: float = 900) -> Measured:
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    done = subprocess.run([sys.executable, "-c", _PARENT, str(data_limit_mb << 20), *exe, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, check=True)
    res = json.loads(done.stdout)
    return Measured(res["code"], res["out"], res["err"], res["peak_kb"] / 1024)
