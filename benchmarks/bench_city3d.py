"""The whole generated city (600k footprints) as LOD1 3D Tiles: its size, py3dtiles on the same
table, and the 3D viewer at street level in headless Chromium (issue 15, item 4).

1. The city: ``benchmarks.citygen`` 600k, ``citytwin build`` (timed), or a project built before
   (``CITYTWIN_CITY3D_PROJECT``, build time then not measured): tiles, total and largest size.
2. Street level: ``citytwin serve`` on that project; Chromium (Debian's, software WebGL, a fresh
   profile per repetition) opens /viewer/3d/ with the camera 5 m above a street of the densest
   z16 cell, looking along it. Recorded until the viewer says the first view is loaded
   (``__viewer3dState.loaded``): seconds to the first tile and to the loaded view, bytes and
   requests (3D Tiles: tileset, subtrees, contents; and the whole page), console errors, and
   whether a building can be picked on screen.
3. py3dtiles on the same table: the city ingested into a throw-away PostGIS, extruded for the
   peer (not timed, as in P3), then ``citytwin export-3dtiles`` and ``py3dtiles export``, each
   once, the peer under a time limit (DNF when it does not finish).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
import yaml

from benchmarks.common import CITYTWIN, DATA, WORK, Server, env_with, median, run_timed, tune_cluster, write_project
from benchmarks.verdict import Evidence, judge

N = 600_000  # the city's footprints; a smaller count as the first argument for a smoke run
REPS = 3
EYE_M = 1.7 + 3.3  # eye height plus a few metres: the camera of a phone held up in the street
VIEW_TIMEOUT_S = 420
PEER_LIMIT_S = int(os.environ.get("CITYTWIN_CITY3D_PEER_LIMIT_S", 1200))
VIEWPORT = (960, 600)  # as the viewer test: fewer pixels for SwiftShader to fill

# Sets the camera on the viewer object as soon as the page creates it, in the same task, so the
# tileset is first asked for from the street and the default view loads nothing.
CAMERA_INIT = """(cam => {
  let holder;
  Object.defineProperty(window, "citytwinViewer3d", { configurable: true, get: () => holder, set(obj) {
    holder = obj;
    let viewer = obj.viewer;
    Object.defineProperty(obj, "viewer", { enumerable: true, get: () => viewer, set(v) {
      viewer = v;
      if (v) queueMicrotask(() => v.camera.setView({
        destination: Cesium.Cartesian3.fromDegrees(cam.lon, cam.lat, cam.height),
        orientation: { heading: Cesium.Math.toRadians(cam.heading), pitch: Cesium.Math.toRadians(cam.pitch),
                       roll: 0 } }));
    } });
  } });
})(%s)"""

# A building under some pixel of the lower half of the screen (the tests' probe, wider).
PICK = """(() => {
  const v = window.citytwinViewer3d.viewer, c = v.scene.canvas, w = c.clientWidth, h = c.clientHeight;
  for (let y = h / 2; y < h; y += 40)
    for (let x = 20; x < w; x += 40)
      if (v.scene.pick(new Cesium.Cartesian2(x, y)) instanceof Cesium.Cesium3DTileFeature) return [x, y];
  return null;
})()"""


@dataclass(frozen=True)
class Street:
    lon: float
    lat: float
    heading: float  # degrees clockwise from north
    free_m: float  # how far the view runs along the street before a building
    cell: tuple[int, int, int]
    cell_buildings: int


def embedded_env() -> dict[str, str]:
    """The environment for the built project's own GeoPackage store (never a PostGIS left set)."""
    return {k: v for k, v in env_with().items() if k != "CITYTWIN_DATABASE_URL"}


def tileset_figures(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()]
    glbs = [p.stat().st_size for p in files if p.suffix == ".glb"]
    doc = json.loads((folder / "tileset.json").read_text(encoding="utf-8"))
    return {"bytes": sum(p.stat().st_size for p in files), "content_tiles": len(glbs), "largest_tile": max(glbs),
            "subtrees": sum(1 for p in files if p.suffix == ".subtree"),
            "implicit": "implicitTiling" in doc["root"]}


def densest_z16(lon: np.ndarray, lat: np.ndarray) -> tuple[tuple[int, int, int], int]:
    """The z16 web-mercator tile holding the most building points, and that count."""
    n = 1 << 16
    x = np.floor((lon + 180.0) / 360.0 * n).astype(np.int64)
    rad = np.radians(lat)
    y = np.floor((1.0 - np.log(np.tan(rad) + 1.0 / np.cos(rad)) / np.pi) / 2.0 * n).astype(np.int64)
    keys, counts = np.unique(x * n + y, return_counts=True)
    best = int(np.argmax(counts))
    return (16, int(keys[best] // n), int(keys[best] % n)), int(counts[best])


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    n = 1 << z

    def lat(yy: int) -> float:
        return float(np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * yy / n)))))
    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def street_view(gpkg: Path) -> Street:
    """A point in a street of the densest z16 cell, 5 m or more from any building, and the heading
    along which the view runs furthest before meeting a building (the street's direction)."""
    import geopandas as gpd
    from pyproj import Transformer

    gdf = gpd.read_file(gpkg, layer="buildings", columns=["id"], engine="pyogrio")
    pts = gdf.geometry.representative_point()
    cell, count = densest_z16(pts.x.to_numpy(), pts.y.to_numpy())
    w, s, e, n = tile_bounds(*cell)
    near = gdf.cx[w - 0.004:e + 0.004, s - 0.004:n + 0.004].to_crs(5186).geometry.to_numpy()
    tree = shapely.STRtree(near)
    to_m = Transformer.from_crs(4326, 5186, always_xy=True)
    (x0, x1), (y0, y1) = to_m.transform([w, e], [s, n])
    gx, gy = np.meshgrid(np.arange(x0, x1, 4.0), np.arange(y0, y1, 4.0))
    cand = shapely.points(gx.ravel(), gy.ravel())
    _, dist = tree.query_nearest(cand, return_distance=True, all_matches=False)
    cand = cand[dist >= 5.0]
    if not len(cand):
        raise RuntimeError(f"no street point in the densest z16 cell {cell}")
    cand = cand[np.random.default_rng(7).permutation(len(cand))[:150]]
    best = (-1.0, None, 0.0)
    reach = 600.0
    for p in cand:
        for heading in range(0, 360, 5):
            h = np.radians(heading)
            ray = shapely.LineString([(p.x, p.y), (p.x + reach * np.sin(h), p.y + reach * np.cos(h))])
            hit = tree.query(ray, predicate="intersects")
            free = reach if not len(hit) else float(shapely.distance(p, shapely.intersection(ray, near[hit])).min())
            if free > best[0]:
                best = (free, p, float(heading))
    free, p, heading = best
    lon, lat = Transformer.from_crs(5186, 4326, always_xy=True).transform(p.x, p.y)
    return Street(lon=float(lon), lat=float(lat), heading=heading, free_m=round(free, 1), cell=cell,
                  cell_buildings=count)


def load_street_view(base: str, street: Street) -> dict:
    """One fresh Chromium profile: open the viewer at ``street``; what the first view cost."""
    from browser import chromium_page, save_screenshot

    cam = {"lon": street.lon, "lat": street.lat, "height": EYE_M, "heading": street.heading, "pitch": 0.0}
    finished: list = []
    with chromium_page(VIEWPORT) as (page, record):
        page.on("requestfinished", lambda req: finished.append((time.perf_counter(), req)))
        page.add_init_script(CAMERA_INIT % json.dumps(cam))
        t0 = time.perf_counter()
        page.goto(f"{base}/viewer/3d/")
        page.wait_for_function("window.__viewer3dState && (window.__viewer3dState.tilesLoaded > 0"
                               " || window.__viewer3dState.error !== null)", timeout=VIEW_TIMEOUT_S * 1000,
                               polling=100)
        t_first = time.perf_counter() - t0
        page.wait_for_function("window.__viewer3dState.loaded || window.__viewer3dState.error !== null",
                               timeout=VIEW_TIMEOUT_S * 1000, polling=100)
        t_view = time.perf_counter() - t0
        first = [req for _, req in finished]  # the requests of the first view, and nothing after it
        state = page.evaluate("({...window.__viewer3dState, selected: null})")
        camera = page.evaluate("(() => { const c = window.citytwinViewer3d.viewer.camera.positionCartographic;"
                               " return [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude),"
                               " c.height]; })()")
        picked = page.evaluate(PICK)
        save_screenshot(page, "city3d_street.png")
        sizes = [(req.url, req.sizes()["responseBodySize"]) for req in first]
    tiles = [(u, b) for u, b in sizes if "/3dtiles/" in u]
    return {"seconds_first_tile": round(t_first, 2), "seconds_view_loaded": round(t_view, 2),
            "tiles_loaded": state["tilesLoaded"], "viewer_error": state["error"],
            "bytes_3dtiles": sum(b for _, b in tiles), "requests_3dtiles": len(tiles),
            "contents": sum(1 for u, _ in tiles if u.endswith(".glb")),
            "subtrees": sum(1 for u, _ in tiles if u.endswith(".subtree")),
            "bytes_page": sum(b for _, b in sizes), "requests_page": len(sizes),
            "building_on_screen": picked, "camera_read_back": camera,
            "console_errors": record.console_errors + record.page_errors, "problems": record.problems}


def street_level(project: Path, street: Street) -> dict:
    env = embedded_env()
    server = Server("ours-city3d", lambda port: [str(CITYTWIN), "serve", "--project", str(project),
                                                 "--port", str(port)], env, "/conformance?f=json")
    with server:
        runs = [load_street_view(server.base, street) for _ in range(REPS)]
    errors = max(len(r["problems"]) for r in runs)
    drawn = all(r["building_on_screen"] and r["tiles_loaded"] > 0 and not r["viewer_error"] for r in runs)
    out = {"runs": runs, "reps": REPS,
           "seconds_view_loaded_median": median([r["seconds_view_loaded"] for r in runs]),
           "seconds_first_tile_median": median([r["seconds_first_tile"] for r in runs]),
           "bytes_3dtiles_max": max(r["bytes_3dtiles"] for r in runs), "buildings_drawn_every_run": drawn}
    # one side, nothing to alternate: each repetition starts from an empty profile instead
    ev = Evidence(reps=REPS, alternated=True)
    out["targets"] = {
        "first street-level view: 3D Tiles bytes <= 10 MB": judge(out["bytes_3dtiles_max"] / 1e6, ev, at_most=10),
        "console errors and failed requests (most in a run) = 0": judge(float(errors), ev, at_most=0),
        "buildings drawn and pickable in every run (1 = yes)": judge(float(drawn), ev, at_least=1),
    }
    return out


def same_table(fgb: Path, ours_out: Path, peer_out: Path) -> dict:
    """Ours and py3dtiles from one PostGIS table of the city (the peer's copy extruded from it)."""
    from types import SimpleNamespace

    from benchmarks import p3_3dtiles
    from benchmarks.common import ThrowawayCluster
    from pipelines.store.postgis import PostGISStore

    cluster = ThrowawayCluster()
    db_url = cluster.start()
    try:
        db_settings = tune_cluster(cluster, db_url)
        project = write_project(WORK / "city3d-pg", {"buildings": {"kind": "buildings", "minzoom": 14, "maxzoom": 16}})
        env = env_with(CITYTWIN_DATABASE_URL=db_url)
        ing = run_timed([str(CITYTWIN), "ingest", str(fgb), "--layer", "buildings", "--kind", "buildings",
                         "--project", str(project)], env=env, timeout=3600)
        if ing.returncode != 0:
            raise RuntimeError(f"ingest into PostGIS failed:\n{ing.stderr[-3000:]}")
        store = PostGISStore(db_url)
        try:
            rows = p3_3dtiles.extrude_table(SimpleNamespace(store=store, db_url=db_url), "buildings")
        finally:
            store.close()
        sides = {"ours": ([str(CITYTWIN), "export-3dtiles", "layer:buildings", "--out", str(ours_out), "--project",
                           str(project)], ours_out),
                 "py3dtiles": (["timeout", "-k", "15", str(PEER_LIMIT_S),
                                *p3_3dtiles._peer(SimpleNamespace(db_url=db_url), "buildings", peer_out)], peer_out)}
        res: dict = {"ingest_s": round(ing.seconds, 1), "rows_extruded_for_peer": rows, "db_settings": db_settings,
                     "peer_limit_s": PEER_LIMIT_S, "loadavg": {}}
        for name, (argv, out) in sides.items():
            shutil.rmtree(out, ignore_errors=True)
            res["loadavg"][name] = [round(x, 2) for x in os.getloadavg()]
            t = run_timed(argv, env=env, timeout=PEER_LIMIT_S + 60)
            dnf = name == "py3dtiles" and t.returncode in (124, 137, -9)
            if t.returncode != 0 and not dnf:
                raise RuntimeError(f"{name} failed ({t.returncode}):\n{t.stderr[-3000:]}")
            files = [p for p in out.rglob("*") if p.is_file()]
            res[name] = {"seconds": round(t.seconds, 1), "max_rss_mb": round(t.max_rss_mb), "finished": not dnf,
                         "output_bytes": sum(p.stat().st_size for p in files), "files": len(files),
                         "command": " ".join(argv).replace(str(db_url), "DB")}
        p = res["py3dtiles"]
        res["ratio_py3dtiles_over_ours"] = round(p["seconds"] / res["ours"]["seconds"], 2) if p["finished"] else None
        return res
    finally:
        cluster.stop()


def build_city(n: int) -> tuple[Path, dict]:
    """Generate the city of ``n`` footprints and ``citytwin build`` it (timed); the project folder."""
    from benchmarks.citygen import generate, write

    paths = write(generate(n, seed=42), DATA, f"city{n}")
    project = write_project(WORK / "city3d", {"buildings": {"kind": "buildings", "source": str(paths["buildings"]),
                                                            "minzoom": 14, "maxzoom": 16}})
    env = embedded_env()
    t = run_timed([str(CITYTWIN), "build", "--project", str(project)], env=env, timeout=7200)
    if t.returncode != 0:
        raise RuntimeError(f"citytwin build failed ({t.returncode}):\n{t.stderr[-3000:]}")
    return project, {"seconds": round(t.seconds, 1), "max_rss_mb": round(t.max_rss_mb)}


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    given = os.environ.get("CITYTWIN_CITY3D_PROJECT")
    project, build = (Path(given), None) if given else build_city(int(sys.argv[1]) if len(sys.argv) > 1 else N)
    catalog = yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))
    fgb = (project / catalog["layers"]["buildings"]["source"]).resolve()
    res: dict = {"project": str(project), "build": build or "built before this run (CITYTWIN_CITY3D_PROJECT): "
                 "build time not measured here",
                 "tileset": tileset_figures(project / "build" / "3dtiles" / "buildings"),
                 "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    street = street_view(project / "build" / "citytwin.gpkg")
    res["street"] = street.__dict__
    res["street_level"] = street_level(project, street)
    res["loadavg_after_browser"] = [round(x, 2) for x in os.getloadavg()]
    res["same_table"] = same_table(fgb, WORK / "city3d-ours", WORK / "city3d-peer")
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    res["targets"] = res["street_level"]["targets"]
    ts, sl, st = res["tileset"], res["street_level"], res["same_table"]
    peer = st["py3dtiles"]
    res["headline"] = [
        f"tileset: {ts['content_tiles']:,} content tiles, {ts['subtrees']} subtrees, {ts['bytes'] / 1e6:.1f} MB, "
        f"largest tile {ts['largest_tile'] / 1e3:.0f} kB, implicit {ts['implicit']}",
        f"street view: z16 cell {street.cell} ({street.cell_buildings} buildings), camera at {street.lon:.5f}, "
        f"{street.lat:.5f}, {EYE_M} m, heading {street.heading:.0f} ({street.free_m} m of open street ahead)",
        f"first view (median of {REPS}): first tile {sl['seconds_first_tile_median']:.1f} s, loaded "
        f"{sl['seconds_view_loaded_median']:.1f} s; 3D Tiles bytes (max) {sl['bytes_3dtiles_max'] / 1e6:.2f} MB",
        f"same PostGIS table: ours {st['ours']['seconds']} s; py3dtiles "
        + (f"{peer['seconds']} s ({st['ratio_py3dtiles_over_ours']}x ours)" if peer["finished"]
           else f"did not finish within {PEER_LIMIT_S} s (DNF)"),
        f"load average {res['loadavg_start']} at start, {res['loadavg_end']} at end (shared machine)",
    ]
    for line in res["headline"]:
        print(line)
    for r in sl["runs"]:
        print(f"  run: first tile {r['seconds_first_tile']} s, loaded {r['seconds_view_loaded']} s, "
              f"{r['requests_3dtiles']} 3D Tiles requests ({r['contents']} contents, {r['subtrees']} subtrees) "
              f"{r['bytes_3dtiles']:,} B; page {r['requests_page']} requests {r['bytes_page']:,} B; "
              f"problems {len(r['problems'])}; building on screen at {r['building_on_screen']}")
    print("RESULT " + json.dumps(res, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
