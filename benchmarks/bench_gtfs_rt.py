"""GTFS-Realtime under load: 2,000 vehicles updated every 10 s while tiles and /ar/view are served.

The Caltrain feed (../shared/data/gtfs) is ingested into a throw-away project with a live
``vehicles`` layer polled from a local HTTP server. A publisher thread makes a new
VehiclePositions protobuf (the bindings library) every ``--interval`` seconds: 2,000 vehicles
moving along the Caltrain shapes, plus a sentinel vehicle at a fixed place whose label is the
feed's generation. A probe asks /live/vehicles/items for the sentinel every 50 ms; the time
from a feed's publication to its label showing is one update-to-visible latency.

A first phase runs the feed without request load. Then two ``wrk`` runs load the server at
once: /ar/view over poses along the line, and tiles (live vehicle tiles and the routes'
PMTiles). Phases without and with the feed publishing alternate (off, on, off, on), so the AR p99 of the two conditions is compared
side by side on the same (shared, noisy) machine. Prints the figures and a RESULT line.

    .venv/bin/python benchmarks/bench_gtfs_rt.py [--phase-s 60] [--vehicles 2000] [--interval 10]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import WORK, free_port, stop_process, wait_http  # noqa: E402
from benchmarks.loadgen import run_wrk  # noqa: E402

CALTRAIN = REPO.parent / "shared" / "data" / "gtfs" / "caltrain-2017-07-24.zip"
SENTINEL = (-122.394992, 37.77639)  # San Francisco station: the probe's fixed point
CATALOG = """\
name: GTFS-Realtime benchmark
layers:
  vehicles: {{kind: live, title: Vehicles}}
realtime:
  caltrain:
    vehicle_positions: {url}/vehicles.pb
    vehicles_layer: vehicles
    interval_s: {interval}
    max_age_s: 600
"""


class Feed:
    """The current protobuf, served over HTTP, and a publisher making a new one every ``interval``."""

    def __init__(self, n: int, interval: float) -> None:
        from google.transit import gtfs_realtime_pb2 as rt

        from pipelines.readers.gtfs import read_gtfs

        self.rt, self.n, self.interval = rt, n, interval
        gtfs = read_gtfs(CALTRAIN)
        shapes = {sid: g[["shape_pt_lon", "shape_pt_lat"]].to_numpy() for sid, g in gtfs.shapes.groupby("shape_id")}
        trips = gtfs.trips[gtfs.trips["shape_id"].isin(shapes)]
        self.trips = list(zip(trips["trip_id"], trips["route_id"], trips["shape_id"]))
        self.shapes = shapes
        self.body = b""
        self.published: dict[int, float] = {}  # generation -> wall time it was served
        self.generation = 0
        self.publishing = threading.Event()
        self._lock = threading.Lock()
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with feed._lock:
                    body = feed.body
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        threading.Thread(target=self._publish_loop, daemon=True).start()

    def make(self, generation: int) -> bytes:
        rt = self.rt
        msg = rt.FeedMessage()
        msg.header.gtfs_realtime_version = "2.0"
        msg.header.timestamp = int(time.time())
        for i in range(self.n):
            trip, route, shape = self.trips[i % len(self.trips)]
            pts = self.shapes[shape]
            k = (i * 13 + generation) % (len(pts) - 1)
            e = msg.entity.add()
            e.id = f"veh-{i}"
            v = e.vehicle
            v.trip.trip_id, v.trip.route_id, v.vehicle.id = trip, route, f"car-{i}"
            v.position.longitude, v.position.latitude = float(pts[k][0]), float(pts[k][1])
            v.position.bearing = float(generation % 360)
            v.timestamp = msg.header.timestamp
        e = msg.entity.add()
        e.id = "sentinel"
        e.vehicle.vehicle.label = f"g{generation}"
        e.vehicle.position.longitude, e.vehicle.position.latitude = SENTINEL
        return msg.SerializeToString()

    def _publish_loop(self) -> None:
        while True:
            self.publishing.wait()
            started = time.monotonic()
            body = self.make(self.generation + 1)
            with self._lock:
                self.generation += 1
                self.body = body
                self.published[self.generation] = time.time()
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))


def probe(base: str, feed: Feed, stop: threading.Event, latencies: list[float]) -> None:
    """Ask for the sentinel every 50 ms; note how long each new generation took to show."""
    w, s, e, n = SENTINEL[0] - 1e-4, SENTINEL[1] - 1e-4, SENTINEL[0] + 1e-4, SENTINEL[1] + 1e-4
    url = f"{base}/live/vehicles/items?bbox={w},{s},{e},{n}&limit=5"
    seen = 0
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                doc = json.loads(resp.read())
            label = next((f["properties"]["label"] for f in doc["features"] if f["id"] == "sentinel"), None)
            g = int(label[1:]) if label else 0
            if g > seen:
                if seen and g in feed.published:  # the first one seen may predate the probe
                    latencies.append(time.time() - feed.published[g])
                seen = g
        except (OSError, ValueError):
            pass
        stop.wait(0.05)


def ar_paths(n: int, rng: np.random.Generator) -> list[str]:
    """Poses near the Caltrain stops, looking every way."""
    from pipelines.readers.gtfs import read_gtfs

    stops = read_gtfs(CALTRAIN).stops
    stops = stops[stops["location_type"] == 0]
    idx = rng.integers(0, len(stops), n)
    lon = stops["stop_lon"].to_numpy()[idx] + rng.normal(0, 0.001, n)
    lat = stops["stop_lat"].to_numpy()[idx] + rng.normal(0, 0.001, n)
    return [f"/ar/view?lon={x:.6f}&lat={y:.6f}&heading={h:.0f}&radius=500&terrain=none&departures=2"
            for x, y, h in zip(lon, lat, rng.uniform(0, 360, n))]


def tile_paths(feed: Feed) -> list[str]:
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    pts = np.vstack(list(feed.shapes.values()))
    paths = set()
    for z in (10, 11, 12, 13, 14):
        for lon, lat in pts[:: max(1, len(pts) // 60)]:
            t = tms.tile(lon, lat, z)
            paths.add(f"/live/vehicles/tiles/{z}/{t.x}/{t.y}")
            paths.add(f"/collections/caltrain_routes/tiles/WebMercatorQuad/{z}/{t.y}/{t.x}")
    return sorted(paths)


def load_tiles(out: dict, base: str, paths: list[str], seconds: float, connections: int, n: int) -> None:
    try:
        out["tiles"] = run_wrk(base, paths, seconds, connections, tag=f"rt-tiles-{n}")
    except Exception as exc:  # noqa: BLE001 - reported with the phase
        out["tiles"] = {"p99_ms": None, "rps": None, "errors": 0, "failed": str(exc)[:2000]}


def pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vehicles", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between feeds")
    ap.add_argument("--phase-s", type=float, default=60.0, help="seconds per phase (off, on, off, on)")
    ap.add_argument("--connections", type=int, default=4, help="per wrk run (AR and tiles)")
    args = ap.parse_args()
    if not CALTRAIN.is_file():
        sys.exit(f"{CALTRAIN} is absent: this benchmark needs the shared Caltrain feed")
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed; 'make bench' installs it (Debian package wrk)")
    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="citytwin-bench-rt-"))
    feed = Feed(args.vehicles, args.interval)
    proc = None
    try:
        (work / "citytwin.yaml").write_text(CATALOG.format(url=feed.url, interval=args.interval), encoding="utf-8")
        cli = [sys.executable, "-m", "pipelines.cli"]
        subprocess.run([*cli, "ingest", str(CALTRAIN), "--layer", "caltrain", "--project", str(work)], cwd=REPO,
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*cli, "build", "--project", str(work)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "CITYTWIN_DATABASE_URL" and not k.startswith("PYGEOAPI_")}
        proc = subprocess.Popen([*cli, "serve", "--project", str(work), "--port", str(port)], cwd=REPO, env=env,
                                stdout=open(work / "serve.log", "wb"), stderr=subprocess.STDOUT)
        wait_http(f"{base}/conformance?f=json", proc, timeout=300, log=work / "serve.log")
        rng = np.random.default_rng(17)
        ar, tiles = ar_paths(2000, rng), tile_paths(feed)
        for path in ar[:20]:  # warm up: the AR index, the departures' timetable, the static feed
            urllib.request.urlopen(base + path, timeout=120).read()
        feed.publishing.set()
        while feed.generation < 2:
            time.sleep(0.1)
        feed.publishing.clear()
        time.sleep(3)
        latencies: list[float] = []
        stop = threading.Event()
        threading.Thread(target=probe, args=(base, feed, stop, latencies), daemon=True).start()
        # the feed alone first (no request load): what the machine gives the update path by itself
        feed.publishing.set()
        time.sleep(args.phase_s)
        feed.publishing.clear()
        idle, latencies[:] = list(latencies), []
        print(f"without request load: {len(idle)} feeds, latencies {[round(x, 2) for x in idle]} s")
        phases = []
        for n, on in enumerate((False, True, False, True)):
            (feed.publishing.set if on else feed.publishing.clear)()
            before = len(latencies)
            out: dict[str, dict] = {}
            t = threading.Thread(target=load_tiles, args=(out, base, tiles, args.phase_s, args.connections, n))
            t.start()
            out["ar"] = run_wrk(base, ar, args.phase_s, args.connections, tag=f"rt-ar-{n}")
            t.join()
            phases.append({"feed": on, "ar_p99_ms": out["ar"]["p99_ms"], "ar_p50_ms": out["ar"]["p50_ms"],
                           "ar_rps": out["ar"]["rps"], "tiles_p99_ms": out["tiles"]["p99_ms"],
                           "tiles_rps": out["tiles"]["rps"], "tiles_failed": out["tiles"].get("failed"), "errors": out["ar"]["errors"] + out["tiles"]["errors"],
                           "updates_seen": len(latencies) - before, "loadavg": [round(x, 2) for x in os.getloadavg()]})
            print(json.dumps(phases[-1]))
        stop.set()
        off = [p["ar_p99_ms"] for p in phases if not p["feed"]]
        on = [p["ar_p99_ms"] for p in phases if p["feed"]]
        result = {"vehicles": args.vehicles, "interval_s": args.interval, "phase_s": args.phase_s,
                  "latency_without_load_p99_s": pct(idle, 99), "latencies_without_load_s": [round(x, 2) for x in idle],
                  "latency_samples": len(latencies), "latency_p50_s": pct(latencies, 50),
                  "latency_p99_s": pct(latencies, 99), "latency_max_s": max(latencies) if latencies else None,
                  "latencies_s": [round(x, 2) for x in latencies],
                  "ar_p99_ms_without_feed": float(np.mean(off)), "ar_p99_ms_with_feed": float(np.mean(on)),
                  "ar_p99_ratio": float(np.mean(on) / np.mean(off)), "phases": phases}
        print(f"update-to-visible latency over {len(latencies)} feeds of {args.vehicles} vehicles: "
              f"p50 {result['latency_p50_s']:.2f} s, p99 {result['latency_p99_s']:.2f} s (target < 2 s)")
        print(f"AR view p99: {result['ar_p99_ms_without_feed']:.1f} ms without the feed, "
              f"{result['ar_p99_ms_with_feed']:.1f} ms with it (ratio {result['ar_p99_ratio']:.2f}, target <= 1.20); "
              f"load average {os.getloadavg()[0]:.2f}")
        print("RESULT " + json.dumps(result))
    finally:
        if proc is not None:
            stop_process(proc, timeout=20)
        feed.httpd.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
