"""AR view throughput: /ar/view requests/s and p50/p99 latency at 16 concurrent connections.

A synthetic city (deterministic: seed 2015) of >= 100k LOD1 buildings and >= 10k POIs around
Seoul City Hall is published into a GeoPackage project, ``citytwin serve`` runs it (one
uvicorn process, or ``--serve-workers N``), and ``wrk`` (Debian package; installed here when missing) drives
/ar/view with a fixed list of device poses spread over the city. Prints the figures; no
assertions. Target: p99 < 50 ms.

    .venv/bin/python benchmarks/bench_ar.py [--buildings 102400] [--pois 10000] [--duration 20] [--serve-workers 1]

``--in-process`` skips HTTP: it times the view answer itself (query, occlusion, JSON) per pose,
which is what to look at when the server figures move.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import free_port, stop_process  # noqa: E402
from benchmarks.verdict import Evidence, judge  # noqa: E402
CENTRE = (126.9780, 37.5665)
SEED = 2015
CATALOG = """\
name: AR benchmark city
layers:
  buildings:
    kind: buildings
  landmarks:
    kind: pois
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it with apt-get (Debian package 'wrk')")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    return found


def metres_to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = CENTRE[1] + y / 110_996.0
    lon = CENTRE[0] + x / (111_320.0 * np.cos(np.radians(CENTRE[1])))
    return lon, lat


def synthetic_city(n_buildings: int, n_pois: int, rng: np.random.Generator) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """A square grid of lots, 32 m apart, one rectangular footprint per lot; POIs scattered."""
    side = int(np.ceil(np.sqrt(n_buildings)))
    half = side * 32.0 / 2
    gx, gy = np.meshgrid(np.arange(side) * 32.0 - half, np.arange(side) * 32.0 - half)
    cx, cy = gx.ravel()[:n_buildings], gy.ravel()[:n_buildings]
    w, h = rng.uniform(12, 26, n_buildings), rng.uniform(12, 26, n_buildings)
    x0, x1 = metres_to_lonlat(cx - w / 2, cy - h / 2), metres_to_lonlat(cx + w / 2, cy + h / 2)
    geoms = shapely.box(x0[0], x0[1], x1[0], x1[1])
    height = np.round(np.clip(rng.lognormal(np.log(14), 0.6, n_buildings), 3, 200), 1)
    buildings = gpd.GeoDataFrame({"id": [f"b{i}" for i in range(n_buildings)], "height": height},
                                 geometry=geoms, crs="EPSG:4326")
    px, py = rng.uniform(-half, half, n_pois), rng.uniform(-half, half, n_pois)
    plon, plat = metres_to_lonlat(px, py)
    cats = np.array(["palace", "museum", "park", "market", "transit", "safety"])
    pois = gpd.GeoDataFrame({
        "id": [f"p{i}" for i in range(n_pois)],
        "name_ko": [f"장소 {i}" for i in range(n_pois)],
        "name_en": [f"Place {i}" for i in range(n_pois)],
        "name_ja": [f"場所 {i}" if i % 3 else None for i in range(n_pois)],
        "category": cats[rng.integers(0, len(cats), n_pois)],
    }, geometry=gpd.points_from_xy(plon, plat), crs="EPSG:4326")
    return buildings, pois


def poses(n: int, half: float, rng: np.random.Generator) -> list[str]:
    x, y = rng.uniform(-0.8 * half, 0.8 * half, n), rng.uniform(-0.8 * half, 0.8 * half, n)
    lon, lat = metres_to_lonlat(x, y)
    heading = rng.uniform(0, 360, n)
    pitch = rng.uniform(-5, 15, n)
    return [f"/ar/view?lon={lo:.7f}&lat={la:.7f}&alt=1.6&heading={hd:.1f}&pitch={p:.1f}&fov=60&radius=500&lang=ja"
            for lo, la, hd, p in zip(lon, lat, heading, pitch)]


def wait_until_serving(proc: subprocess.Popen, url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"citytwin serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"citytwin serve did not answer within {timeout:.0f} s")


WRK_SCRIPT = """\
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--buildings", type=int, default=102_400)
    ap.add_argument("--pois", type=int, default=10_000)
    ap.add_argument("--duration", type=int, default=20, help="seconds of load")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--serve-workers", type=int, default=1, help="server processes (citytwin serve --workers)")
    ap.add_argument("--in-process", action="store_true", help="time the view answers without a server")
    args = ap.parse_args()

    wrk = None if args.in_process else ensure_wrk()
    from pipelines.catalog import load_catalog
    from pipelines.store import open_store

    rng = np.random.default_rng(SEED)
    work = Path(tempfile.mkdtemp(prefix="citytwin-bench-ar-"))
    proc = None
    try:
        t0 = time.perf_counter()
        buildings, pois = synthetic_city(args.buildings, args.pois, rng)
        (work / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
        catalog = load_catalog(work)
        store = open_store(catalog.build_path)
        store.publish("buildings", buildings)
        store.publish("landmarks", pois)
        print(f"city: {len(buildings)} buildings, {len(pois)} POIs over "
              f"{np.sqrt(args.buildings) * 32 / 1000:.1f} km square, published in {time.perf_counter() - t0:.1f} s")

        if args.in_process:
            in_process(catalog, store, np.sqrt(args.buildings) * 32 / 2, rng)
            return
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "CITYTWIN_DATABASE_URL" and not k.startswith("PYGEOAPI_")}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--project", str(work),
                                 "--port", str(port), "--workers", str(args.serve_workers)], cwd=REPO, env=env,
                                stdout=open(work / "serve.log", "wb"), stderr=subprocess.STDOUT)
        wait_until_serving(proc, f"{base}/conformance?f=json")
        print(f"server answers /conformance in {time.perf_counter() - t0:.1f} s")

        half = np.sqrt(args.buildings) * 32 / 2
        paths = poses(2000, half, rng)
        wait_until_serving(proc, base + paths[0])  # 503 while the AR index is built in the background
        print(f"AR index ready (/ar/view answers 200) in {time.perf_counter() - t0:.1f} s")
        items, hidden = [], 0
        for path in paths[:200]:  # check the answers and what they hold before timing
            with urllib.request.urlopen(base + path, timeout=30) as resp:
                doc = json.loads(resp.read())
            items.append(doc["count"])
            hidden += sum(it["occluded"] for it in doc["items"])
        print(f"answers: {np.mean(items):.1f} POIs in view per request on average "
              f"({hidden / max(sum(items), 1):.0%} of them occluded), {doc['occluders']['count']} occluders")

        (work / "paths.txt").write_text("\n".join(paths) + "\n", encoding="utf-8")
        (work / "paths.lua").write_text(WRK_SCRIPT % (work / "paths.txt"), encoding="utf-8")
        cmd = [wrk, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
               "-s", str(work / "paths.lua"), base]
        print("$", " ".join(cmd))
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        print(out)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, flags=re.M))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        print(f"AR view at {args.connections} connections, {args.serve_workers} server process(es): "
              f"{float(rps.group(1)):.0f} requests/s, "
              f"p50 {lat.get('50')}, p99 {lat.get('99')} (target p99 < 50 ms); "
              f"non-2xx: {errors.group(1) if errors else 0}")
        p99 = _ms(lat["99"]) if "99" in lat else None
        # one timed run, so the harness's verdict says "not measured" whatever the figure
        target = judge(p99, Evidence(reps=1, alternated=False), at_most=50)
        print("RESULT " + json.dumps({"headline": [f"{float(rps.group(1)):,.0f} requests/s, p99 {lat.get('99')} at "
                                                   f"{args.connections} connections, {args.serve_workers} process(es)"],
                                      "targets": {"p99 < 50 ms": target}}))
    finally:
        if proc is not None:
            stop_process(proc, timeout=20)
        shutil.rmtree(work, ignore_errors=True)


def in_process(catalog, store, half: float, rng: np.random.Generator, n: int = 2000) -> None:
    """Per-pose time of the /ar/view answer (parameters, candidates, occlusion, JSON), no HTTP."""
    import gc
    from urllib.parse import urlsplit

    import orjson
    from starlette.datastructures import QueryParams

    from api.ar_routes import ArRoutes

    t0 = time.perf_counter()
    routes = ArRoutes(catalog, store, "http://localhost")
    index = routes.holder.wait()
    print(f"AR index built in {time.perf_counter() - t0:.1f} s")
    queries = [QueryParams(urlsplit(p).query) for p in poses(n, half, rng)]
    gc.collect()
    gc.freeze()  # as citytwin serve does
    for q in queries[:100]:
        routes.view_doc(index, q)
    times, counts = [], []
    for q in queries:
        t = time.perf_counter()
        doc = routes.view_doc(index, q)
        orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        times.append(time.perf_counter() - t)
        counts.append(doc["count"])
    ms = np.array(times) * 1000
    print(f"AR view answer in process over {n} poses ({np.mean(counts):.1f} POIs each on average): "
          f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
          f"mean {ms.mean():.2f} ms (~{1000 / ms.mean():.0f} answers/s on one core)")


def _ms(text: str) -> float:
    """wrk's latency text ('812.00us', '13.76ms', '1.20s') in milliseconds."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


if __name__ == "__main__":
    main()
