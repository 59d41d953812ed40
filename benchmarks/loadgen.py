"""wrk (C, event loop) driven by a Lua script that walks a list of request paths in order.

One wrk thread holds all connections: at the few hundred requests/s our servers reach,
a single wrk thread uses a few % of a core, so the load generator takes little CPU
from the servers on this 2-core machine. The Lua ``done`` hook prints requests, errors
and latency percentiles as one JSON line.
"""
from __future__ import annotations

import json
import shutil
import subprocess

from benchmarks.common import WORK

LUA = r"""
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i], {["Accept-Encoding"] = "gzip", ["Host"] = "127.0.0.1"})
end
done = function(summary, latency, requests)
  local s = summary
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.1f, "max_us": %d, "paths": %d}\n',
    s.requests, s.duration, s.bytes, s.errors.connect, s.errors.read, s.errors.write, s.errors.status,
    s.errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max, #paths))
end
"""


def wrk_path() -> str:
    exe = shutil.which("wrk")
    if not exe:
        raise RuntimeError("wrk is not installed; run 'apt-get install -y wrk' (make bench does it)")
    return exe


def run_wrk(base: str, paths: list[str], seconds: float, connections: int = 16, tag: str = "run") -> dict:
    """Requests/s and latency (ms) of ``connections`` keep-alive connections cycling through ``paths``."""
    script = WORK / "walk.lua"
    script.write_text(LUA)
    plist = WORK / f"paths-{tag}.txt"
    plist.write_text("\n".join(paths) + "\n")
    cmd = [wrk_path(), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script), base]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                         env={"BENCH_PATHS": str(plist), "PATH": "/usr/bin:/bin"})
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary (exit {res.returncode}):\n{res.stdout}\n{res.stderr}")
    d = json.loads(line[6:])
    secs = d["duration_us"] / 1e6
    errors = sum(v for k, v in d.items() if k.startswith("errors_"))
    return {
        "rps": d["requests"] / secs, "requests": d["requests"], "seconds": secs, "errors": errors,
        "p50_ms": d["p50_us"] / 1000, "p90_ms": d["p90_us"] / 1000, "p99_ms": d["p99_us"] / 1000,
        "mean_ms": d["mean_us"] / 1000, "bytes": d["bytes"], "unique_paths": d["paths"],
        # share of requests that were a first request for their path (no wrap-around)
        "first_request_share": min(1.0, d["paths"] / max(1, d["requests"])),
        "command": " ".join(cmd[:-1] + ["BASE"]),
    }


def wrk_version() -> str:
    try:
        res = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True, timeout=10)
        return (res.stdout + res.stderr).strip().splitlines()[0]
    except (RuntimeError, IndexError, OSError):
        return "not installed"
