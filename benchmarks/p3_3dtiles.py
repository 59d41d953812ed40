"""P3: LOD1 3D Tiles from the PostGIS store: ours (``citytwin export-3dtiles layer:NAME``) vs ``py3dtiles export``.

py3dtiles cannot extrude footprints: it reads ready 3D geometry (MultiPolygon Z /
PolyhedralSurface Z) from a table. So the same store layer is extruded beforehand
(not timed, which favours the peer) into ``<layer>_lod1``: floor, roof and one quad
per ring edge, as a MultiPolygon Z in EPSG:5186 metres, with the same ids. Both tools
are timed as whole CLI processes reading PostGIS and writing a tileset.
"""
from __future__ import annotations

import shutil

import numpy as np
import shapely

from benchmarks.common import CITYTWIN, PEER_BIN, WORK, env_with, libpq_conninfo, median, run_timed
from benchmarks.verdict import Evidence, alternated, judge


def extrude_table(ctx, layer: str) -> int:
    """Write ``<layer>_lod1`` (id, geom MultiPolygonZ 5186) from the store layer; returns rows."""
    import psycopg
    from psycopg import sql

    gdf = ctx.store.read(layer)
    gdf = gdf[np.isfinite(gdf["height"].to_numpy(dtype=float, na_value=np.nan)) & (gdf["height"] > 0)]
    gdf = gdf.to_crs(5186)
    geoms = gdf.geometry.to_numpy()
    h = gdf["height"].to_numpy(dtype=float)
    n = len(geoms)
    parts = shapely.get_parts(geoms, return_index=True)
    polys, pidx = parts
    floor = shapely.force_3d(polys, 0.0)
    roof = shapely.force_3d(polys, h[pidx])
    rings, ridx = shapely.get_rings(polys, return_index=True)
    xy, cidx = shapely.get_coordinates(rings, return_index=True)
    same = cidx[1:] == cidx[:-1]  # consecutive points of one ring make one wall edge
    a, b = xy[:-1][same], xy[1:][same]
    owner = pidx[ridx[cidx[:-1][same]]]
    z = h[owner]
    quad = np.stack([np.c_[a, np.zeros(len(a))], np.c_[b, np.zeros(len(a))], np.c_[b, z], np.c_[a, z],
                     np.c_[a, np.zeros(len(a))]], axis=1)
    walls = shapely.polygons(quad)
    faces = np.concatenate([floor, roof, walls])
    fidx = np.concatenate([pidx, pidx, owner])
    order = np.argsort(fidx, kind="stable")
    solids = shapely.multipolygons(faces[order], indices=fidx[order])
    wkb = shapely.to_wkb(shapely.set_srid(solids, 5186), include_srid=True)
    table = f"{layer}_lod1"
    with psycopg.connect(ctx.db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, geom geometry(MultiPolygonZ, 5186))").format(
            sql.Identifier(table)))
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} (id, geom) FROM STDIN (FORMAT BINARY)").format(
                sql.Identifier(table))) as copy:
            copy.set_types(["text", "bytea"])
            for row in zip(gdf["id"].astype(str).tolist(), wkb):
                copy.write_row(row)
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return n


def _ours(ctx, layer: str, out) -> list[str]:
    return [str(CITYTWIN), "export-3dtiles", f"layer:{layer}", "--out", str(out), "--project", str(ctx.project)]


def _peer(ctx, layer: str, out) -> list[str]:
    return [str(PEER_BIN / "py3dtiles"), "export", "-D", libpq_conninfo(ctx.db_url), "-t", f"{layer}_lod1",
            "-c", "geom", "-i", "id", "-s", str(out)]


def _timed(cmd, env, out, what: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t = run_timed(cmd, env=env)
    if t.returncode != 0:
        raise RuntimeError(f"P3 {what} failed ({t.returncode}):\n{t.stderr[-3000:]}")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    files = sum(1 for p in out.rglob("*") if p.is_file())
    return {"seconds": t.seconds, "max_rss_mb": t.max_rss_mb, "output_bytes": size, "files": files}


def run(ctx, peer_layer: str, peer_reps: int, big_layer: str | None, big_reps: int) -> dict:
    """Ours vs py3dtiles on ``peer_layer`` (alternating, ``peer_reps`` times); ours alone on ``big_layer``."""
    env = env_with(CITYTWIN_DATABASE_URL=ctx.db_url)
    rows = extrude_table(ctx, peer_layer)
    n = ctx.sizes[peer_layer]
    out = WORK / "p3"
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list] = {"ours": [], "py3dtiles": []}
    commands = {"ours": lambda: _timed(_ours(ctx, peer_layer, out / "ours"), env, out / "ours", "ours"),
                "py3dtiles": lambda: _timed(_peer(ctx, peer_layer, out / "peer"), env, out / "peer", "py3dtiles")}
    orders = []
    for rep in range(peer_reps):
        order = ["ours", "py3dtiles"] if rep % 2 == 0 else ["py3dtiles", "ours"]
        orders.append(order)
        for name in order:
            runs[name].append(commands[name]())
    res: dict = {
        "layer": peer_layer, "buildings": n, "buildings_with_height": rows, "reps": peer_reps,
        "commands": {"ours": " ".join(_ours(ctx, peer_layer, "OUT")), "py3dtiles": " ".join(_peer(ctx, peer_layer, "OUT"))},
        "runs": runs, "orders": orders,
    }
    for name, r in runs.items():
        secs = median([x["seconds"] for x in r])
        res[name] = {"seconds_median": secs, "buildings_per_s": rows / secs,
                     "max_rss_mb_median": median([x["max_rss_mb"] for x in r]),
                     "output_bytes": r[-1]["output_bytes"], "files": r[-1]["files"]}
    res["ratio_ours_over_py3dtiles"] = median([p["seconds"] / o["seconds"]
                                               for o, p in zip(runs["ours"], runs["py3dtiles"])])
    # same store layer for both (the peer's copy is extruded from it beforehand)
    ev = Evidence(reps=peer_reps, alternated=alternated(orders))
    res["targets"] = {"ours >= 10x py3dtiles (buildings/s)": judge(res["ratio_ours_over_py3dtiles"], ev, at_least=10)}
    if big_layer:
        big = [_timed(_ours(ctx, big_layer, out / "ours_big"), env, out / "ours_big", "ours (big)")
               for _ in range(big_reps)]
        secs = median([x["seconds"] for x in big])
        res["ours_big"] = {"layer": big_layer, "buildings": ctx.sizes[big_layer], "reps": big_reps, "runs": big,
                           "seconds_median": secs, "buildings_per_s": ctx.sizes[big_layer] / secs,
                           "max_rss_mb_median": median([x["max_rss_mb"] for x in big])}
    return res
