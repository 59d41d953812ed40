"""GTFS-Realtime under load: 2,000 vehicles updated every 10 s while tiles and /ar/view are served.

The Caltrain feed (../shared/data/gtfs) is ingested into a throw-away project with a live
``vehicles`` layer polled from a local HTTP server. A publisher thread makes a new
VehiclePositions protobuf (the bindings library) every ``--interval`` seconds: 2,000 vehicles
moving along the Caltrain shapes, plus a sentinel vehicle at a fixed place whose label is the
feed's generation. Two probes ask every 50 ms for the sentinel, one through
/collections/vehicles/items, one through its live tile; the time from the moment the feed
server's body changed to the moment a probe's answer holds the new label is one
update-to-visible latency. The feed server also notes when the poller first fetched each
body, which splits a latency into the wait for the poll and the rest (decode, match, write,
read back).

A first phase runs the feed without request load. Then two ``wrk`` runs load the server at
once: /ar/view over poses along the line, and tiles (live vehicle tiles and the routes'
PMTiles). Phases without and with the feed publishing alternate (off, on, on, off, off, on:
three repetitions, the order swapped), so the AR p99 of the two conditions is compared side by
side on the same (shared, noisy) machine. The first feed of an "on" phase follows a pause
(the poller then checks four times an interval), so it is reported apart from the steady
stream the target is about. Prints the figures, the verdicts (benchmarks/verdict.py) and a
RESULT line.

    .venv/bin/python benchmarks/bench_gtfs_rt.py [--phase-s 110] [--vehicles 2000] [--interval 10]
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

import mapbox_vector_tile
import morecantile
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import WORK, free_port, stop_process, wait_http  # noqa: E402
from benchmarks.loadgen import run_wrk  # noqa: E402
from benchmarks.verdict import Evidence, alternated, judge  # noqa: E402

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
        self.published: dict[int, float] = {}  # generation -> wall time its body replaced the last
        self.fetched: dict[int, float] = {}  # generation -> wall time the poller first got it
        self.generation = 0
        self.publishing = threading.Event()
        self._lock = threading.Lock()
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with feed._lock:
                    body = feed.body
                    feed.fetched.setdefault(feed.generation, time.time())
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


def items_label(body: bytes) -> str | None:
    doc = json.loads(body)
    return next((f["properties"].get("label") for f in doc["features"] if f["id"] == "sentinel"), None)


def tile_label(body: bytes) -> str | None:
    layer = mapbox_vector_tile.decode(body).get("vehicles", {"features": []}) if body else {"features": []}
    return next((f["properties"].get("label") for f in layer["features"] if f["properties"].get("id") == "sentinel"),
                None)


def probe_urls(base: str) -> dict[str, tuple[str, object]]:
    w, s, e, n = SENTINEL[0] - 1e-4, SENTINEL[1] - 1e-4, SENTINEL[0] + 1e-4, SENTINEL[1] + 1e-4
    t = morecantile.tms.get("WebMercatorQuad").tile(*SENTINEL, 14)
    return {"items": (f"{base}/collections/vehicles/items?bbox={w},{s},{e},{n}&limit=5&f=json", items_label),
            "tile": (f"{base}/live/vehicles/tiles/14/{t.x}/{t.y}", tile_label)}


def probe(url: str, label_of, stop: threading.Event, seen_at: dict[int, float]) -> None:
    """Ask ``url`` for the sentinel every 50 ms; note when each generation was first seen."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                label = label_of(resp.read())
            if label:
                seen_at.setdefault(int(label[1:]), time.time())
        except (OSError, ValueError):
            pass
        stop.wait(0.05)


def samples(feed: Feed, seen_at: dict[int, float], gens: range) -> list[dict]:
    """One record per generation in ``gens`` seen by the probe: its latency, the wait for the poll,
    and whether it followed a pause in the feed."""
    out = []
    for g in gens:
        if g in seen_at and g in feed.published:
            pub = feed.published[g]
            out.append({"generation": g, "latency_s": round(seen_at[g] - pub, 3),
                        "poll_wait_s": round(feed.fetched[g] - pub, 3) if g in feed.fetched else None,
                        "after_pause": pub - feed.published.get(g - 1, float("-inf")) > 1.5 * feed.interval})
    return out


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


ORDER = (False, True, True, False, False, True)  # feed off/on: three repetitions, the order swapped


def _stats(rows: list[dict]) -> dict:
    lat = [r["latency_s"] for r in rows]
    wait = [r["poll_wait_s"] for r in rows if r["poll_wait_s"] is not None]
    rest = [r["latency_s"] - r["poll_wait_s"] for r in rows if r["poll_wait_s"] is not None]
    return {"samples": len(lat), "p50_s": pct(lat, 50), "p99_s": pct(lat, 99), "max_s": max(lat) if lat else None,
            "poll_wait_p50_s": pct(wait, 50), "poll_wait_max_s": max(wait) if wait else None,
            "after_fetch_p50_s": pct(rest, 50), "after_fetch_p99_s": pct(rest, 99),
            "after_fetch_max_s": max(rest) if rest else None}


def summary(args: argparse.Namespace, idle: dict[str, list[dict]], phases: list[dict]) -> dict:
    """Latency figures per probe (steady stream, and first feeds after a pause apart), the AR
    ratio, and their verdicts."""
    on = [p for p in phases if p["feed"]]
    under_load = {name: [r for p in on for r in p["samples"][name]] for name in ("items", "tile")}
    orders = [["on" if p["feed"] else "off" for p in phases[i:i + 2]] for i in range(0, len(phases), 2)]
    ev = Evidence(reps=len(orders), alternated=alternated(orders))
    steady = {name: _stats([r for r in rows if not r["after_pause"]]) for name, rows in under_load.items()}
    worst = max((s["p99_s"] for s in steady.values() if s["p99_s"] is not None), default=None)
    ar_off = float(np.mean([p["ar_p99_ms"] for p in phases if not p["feed"]]))
    ar_on = float(np.mean([p["ar_p99_ms"] for p in on]))
    return {"vehicles": args.vehicles, "interval_s": args.interval, "phase_s": args.phase_s, "orders": orders,
            "without_load": {name: _stats(rows) for name, rows in idle.items()},
            "under_load": steady,
            "under_load_after_pause": {name: _stats([r for r in rows if r["after_pause"]])
                                       for name, rows in under_load.items()},
            "ar_p99_ms_without_feed": ar_off, "ar_p99_ms_with_feed": ar_on, "ar_p99_ratio": ar_on / ar_off,
            "verdicts": {"update-to-visible p99 s (items and tile, steady)": judge(worst, ev, at_most=2.0),
                         "AR view p99 with/without feed": judge(ar_on / ar_off, ev, at_most=1.2)},
            "phases": phases, "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vehicles", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between feeds")
    ap.add_argument("--phase-s", type=float, default=110.0, help="seconds per phase (off, on, on, off, off, on)")
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
        wait_http(f"{base}/ar/view", proc, timeout=300, log=work / "serve.log")  # 400 once the AR index is built
        rng = np.random.default_rng(17)
        ar, tiles = ar_paths(2000, rng), tile_paths(feed)
        for path in ar[:20]:  # warm up: the AR index, the departures' timetable, the static feed
            urllib.request.urlopen(base + path, timeout=120).read()
        feed.publishing.set()
        while feed.generation < 2:
            time.sleep(0.1)
        feed.publishing.clear()
        time.sleep(3)
        stop = threading.Event()
        seen: dict[str, dict[int, float]] = {name: {} for name in ("items", "tile")}
        for name, (url, label_of) in probe_urls(base).items():
            threading.Thread(target=probe, args=(url, label_of, stop, seen[name]), daemon=True).start()
        # the feed alone first (no request load): what the machine gives the update path by itself
        first = feed.generation + 1
        feed.publishing.set()
        time.sleep(args.phase_s)
        feed.publishing.clear()
        time.sleep(2 * args.interval)  # the last feed of the phase shows before the next phase
        idle = {name: samples(feed, seen[name], range(first, feed.generation + 1)) for name in seen}
        print(f"without request load: {len(idle['items'])} feeds, latencies "
              f"{[x['latency_s'] for x in idle['items']]} s")
        phases = []
        for n, on in enumerate(ORDER):
            (feed.publishing.set if on else feed.publishing.clear)()
            first = feed.generation + 1
            out: dict[str, dict] = {}
            t = threading.Thread(target=load_tiles, args=(out, base, tiles, args.phase_s, args.connections, n))
            t.start()
            out["ar"] = run_wrk(base, ar, args.phase_s, args.connections, tag=f"rt-ar-{n}")
            t.join()
            feed.publishing.clear()
            if on:  # a feed published late in the phase is still followed to its showing
                time.sleep(2 * args.interval)
            got = {name: samples(feed, seen[name], range(first, feed.generation + 1)) if on else [] for name in seen}
            phases.append({"feed": on, "ar_p99_ms": out["ar"]["p99_ms"], "ar_p50_ms": out["ar"]["p50_ms"],
                           "ar_rps": out["ar"]["rps"], "tiles_p99_ms": out["tiles"]["p99_ms"],
                           "tiles_rps": out["tiles"]["rps"], "tiles_failed": out["tiles"].get("failed"),
                           "errors": out["ar"]["errors"] + out["tiles"]["errors"],
                           "feeds_published": feed.generation + 1 - first if on else 0, "samples": got,
                           "loadavg": [round(x, 2) for x in os.getloadavg()]})
            print(json.dumps({k: v for k, v in phases[-1].items() if k != "samples"}))
        stop.set()
        result = summary(args, idle, phases)
        for name, v in result["verdicts"].items():
            print(f"{name}: {v['verdict']} ({v['value']} vs {v['bound']}{'; ' + v['why'] if v['why'] else ''})")
        print("RESULT " + json.dumps(result))
    finally:
        if proc is not None:
            stop_process(proc, timeout=20)
        feed.httpd.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
