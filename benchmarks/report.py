"""Render benchmarks/results/latest.md from the results dict run.py collects, and merge partial re-runs.

``python -m benchmarks.report`` folds every results/partial-PART.json newer than the part in
latest.json into it (recording the part's commit, dirty state, load and database settings)
and re-renders latest.md from latest.json alone.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

DB_PARTS = ("p1", "p2", "p2_two", "p2_pygeoapi", "p3", "p5")
# parts an earlier harness wrote that are no longer measured, and why
RETIRED = {"p2_small": "pygeoapi's MVT-postgresql ratio is dropped: the provider builds a PROJ transformation "
                       "per row (see the pygeoapi diagnosis), so the ratio measured that bug; and on the 10k "
                       "layer 99 % of our requests were tile-cache hits"}
LEGACY_WHY = ("recorded as a plain yes/no, without the evidence benchmarks/verdict.py needs (repetitions, "
              "order, data, cold share)")


def _f(v, nd: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:,.{nd}f}"
    return str(v)


def _mb(b) -> str:
    return "n/a" if b is None else f"{b / 1e6:,.1f} MB"


def target_lines(d: dict) -> list[str]:
    out = []
    for name, t in d.items():
        if isinstance(t, bool):  # not decided by benchmarks/verdict.py
            out.append(f"- {name}: **not measured** ({LEGACY_WHY})")
            continue
        basis = f"{t['reps']} repetition(s), {'alternated' if t['alternated'] else 'same order'}"
        if t.get("cold_share") is not None:
            basis += f", cold-request share {t['cold_share']:.2f}"
        out.append(f"- {name}: **{t['verdict']}** (figure {_f(t['value'], 2)}, target {t['bound']}; "
                   f"{t['why'] or basis})")
    return out


def _p1(r: dict) -> list[str]:
    if "ours_w2" in r:
        return _p1_with_dask(r)
    o, t = r["ours"], r["tippecanoe"]
    lines = [
        f"## P1 vector tile archive build: `{r['layer']}` ({r['features']:,} footprints, z{r['zooms']}, "
        f"median of {r['reps']})",
        "",
        "| | ours (build_pmtiles on the PostGIS store) | tippecanoe |",
        "|---|---|---|",
        f"| wall time | {_f(o['seconds_median'])} s | {_f(t['seconds_median'])} s |",
        f"| peak RSS | {_f(o['max_rss_mb_median'], 0)} MB | {_f(t['max_rss_mb_median'], 0)} MB |",
        f"| archive size | {_mb(o['archive_bytes'])} | {_mb(t['archive_bytes'])} |",
        f"| tiles | {o['tiles']:,} | {t['tiles']:,} |",
        f"| largest tile (uncompressed MVT) | {o['largest_tile_bytes'] / 1000:,.0f} kB | {t['largest_tile_bytes'] / 1000:,.0f} kB |",
        f"| features absent per zoom | {_drops(o['dropped_per_zoom'])} | {_drops(t['dropped_per_zoom'])} |",
        "",
        f"Time ratio ours / tippecanoe (median of per-repetition ratios): **{_f(r['time_ratio_ours_over_tippecanoe'], 2)}**",
        f"Peak RSS ratio ours / tippecanoe: **{_f(r.get('rss_ratio_ours_over_tippecanoe'), 2)}**; ours holds every "
        f"feature from z{o.get('complete_from_zoom')} up." if "rss_ratio_ours_over_tippecanoe" in r else "",
        "",
        *target_lines(r.get("targets") or {r.get("target", "ours time <= tippecanoe time"): r["met"]}),
        "",
        f"Commands: `{r['commands']['ours']}`; `{r['commands']['tippecanoe']}` "
        "(tippecanoe reads a FlatGeobuf exported from the same store layer; the export is not timed).",
        "",
    ]
    return lines


def _pct(v) -> str:
    return "n/a" if v is None else f"{_f(100 * v, 1)} %"


def _p1_with_dask(r: dict) -> list[str]:
    """P1 with ours two or three times (in process, on one thread where measured, on a local Dask
    cluster) beside tippecanoe."""
    o, w = r["ours"], r["ours_w2"]
    nw = w.get("workers", 2)
    t1 = "ours_t1" in r
    names = ("ours", "ours_t1", "ours_w2", "tippecanoe") if t1 else ("ours", "ours_w2", "tippecanoe")
    sides = [r[n] for n in names]
    heads = {"ours": "ours in process (build_pmtiles on the PostGIS store"
                     + (f", zooms on {o['threads']} threads)" if o.get("threads") else ")"),
             "ours_t1": "ours in process on one thread (--threads 1)",
             "ours_w2": f"ours --workers {nw} (local Dask cluster, started and stopped inside the timed process)",
             "tippecanoe": "tippecanoe"}

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(x) for x in sides) + " |"

    def ours_only(key: str, fmt) -> callable:
        return lambda x: fmt(x[key]) if key in x else "n/a"

    def same(name: str, what: str) -> str:
        return (f"{what} wrote byte for byte the same archive as in process" if r[name].get("same_archive_as_ours")
                else f"{what} wrote **a different archive from in process** (any plan and thread count should "
                     "write the same bytes)")

    ratios = [f"- time ours in process / tippecanoe: **{_f(r['time_ratio_ours_over_tippecanoe'], 2)}**"]
    if t1:
        ratios += [f"- time ours in process on one thread / tippecanoe: "
                   f"**{_f(r['time_ratio_ours_t1_over_tippecanoe'], 2)}**",
                   f"- time ours in process / ours on one thread: **{_f(r['time_ratio_ours_over_ours_t1'], 2)}**",
                   f"- time ours --workers {nw} / ours in process on one thread: "
                   f"**{_f(r['time_ratio_ours_w2_over_ours_t1'], 2)}**"]
    ratios += [
        f"- time ours --workers {nw} / ours in process: **{_f(r['time_ratio_ours_w2_over_ours'], 2)}**",
        f"- time ours --workers {nw} / tippecanoe: **{_f(r['time_ratio_ours_w2_over_tippecanoe'], 2)}**",
        f"- peak RSS (largest process) ours in process / tippecanoe: **{_f(r['rss_ratio_ours_over_tippecanoe'], 2)}**",
        f"- peak RSS (process tree summed) ours --workers {nw} / tippecanoe: "
        f"**{_f(r['tree_rss_ratio_ours_w2_over_tippecanoe'], 2)}**",
    ]
    lines = [
        f"## P1 vector tile archive build: `{r['layer']}` ({r['features']:,} footprints, z{r['zooms']}, "
        f"median of {r['reps']}, the sides' order per repetition: {', '.join('/'.join(x) for x in r['orders'])})",
        "",
        "| | " + " | ".join(heads[n] for n in names) + " |",
        "|---|" + "---|" * len(names),
        row("wall time", lambda x: f"{_f(x['seconds_median'])} s"),
        row("peak RSS, largest single process (GNU time %M)", lambda x: f"{_f(x['max_rss_mb_median'], 0)} MB"),
        row("peak RSS, whole process tree summed (sampled every 0.2 s)",
            lambda x: f"{_f(x.get('tree_rss_mb_median'), 0)} MB"),
        row("build time (BuildReport.seconds)", ours_only("build_seconds_median", lambda v: f"{_f(v)} s")),
        row("outside the build: imports, the store, the cluster's start and stop (wall - BuildReport.seconds)",
            ours_only("outside_build_seconds_median", lambda v: f"{_f(v)} s")),
        row("driver time: planning, merging, writing (BuildReport.driver_seconds)",
            ours_only("driver_seconds_median", lambda v: f"{_f(v, 2)} s")),
        row("driver share of the child's wall time (imports, cluster start and stop included)",
            ours_only("driver_share_of_wall_median", _pct)),
        row("driver share of the build (driver_seconds / BuildReport.seconds)",
            ours_only("driver_share_of_build_median", _pct)),
        row("partitions", ours_only("partitions", lambda v: f"{v:,}")),
        row("archive size", lambda x: _mb(x["archive_bytes"])),
        row("tiles", lambda x: f"{x['tiles']:,}"),
        row("largest tile (uncompressed MVT)", lambda x: f"{x['largest_tile_bytes'] / 1000:,.0f} kB"),
        row("features absent per zoom", lambda x: _drops(x["dropped_per_zoom"])),
        "",
        "Ratios, each the median of per-repetition ratios (same run):",
        "",
        *ratios,
        "",
        f"Ours holds every feature from z{o.get('complete_from_zoom')} up; "
        + "; ".join([*([same("ours_t1", "one thread")] if t1 else []), same("ours_w2", f"--workers {nw}")]) + ".",
        "",
        *target_lines(r["targets"]),
        "",
        "Commands: " + "; ".join(f"`{r['commands'][n]}`" for n in names)
        + " (tippecanoe reads a FlatGeobuf exported from the same store layer; the export is not timed).",
        "",
    ]
    return lines


def _drops(d: dict) -> str:
    return ", ".join(f"z{z}:{v:,}" for z, v in d.items())


def _processes(r: dict) -> str:
    n = r.get("processes", 1)  # older results ran one process per server
    return "one process per server" if n == 1 else f"{n} processes per server (uvicorn workers)"


def _p2(r: dict) -> list[str]:
    s = r["summary"]
    names = [n for n in ("ours", "tipg", "pygeoapi") if n in s]
    lines = [
        f"## P2 dynamic MVT from PostGIS: `{r['layer']}` ({r['features']:,} footprints, {r['connections']} connections, {r['tiles_unique']:,} unique z14-16 tiles "
        f"({_zoom_mix(r['zoom_mix'])}), {_processes(r)}, median of {r['reps']})",
        "",
        "| server | cold req/s | cold p50 ms | cold p99 ms | cold first-request share | warm req/s | warm p50 ms | warm p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        c, w = s[n]["cold"], s[n]["warm"]
        lines.append(f"| {n} | {_f(c['rps'])} | {_f(c['p50_ms'])} | {_f(c['p99_ms'])} | {_f(c['first_request_share'], 2)} "
                     f"| {_f(w['rps'])} | {_f(w['p50_ms'])} | {_f(w['p99_ms'])} | {c['errors'] + w['errors']} |")
    if "floor_16" in s:  # since our tile pool has its own size: the floor over its connections, and over 16
        for key in ("floor", "floor_16"):
            f = s[key]
            lines.append(f"| SQL floor (our ST_AsMVT query, {r['connections']} threads over {f['connections']} connections, "
                         f"no HTTP) | {_f(f['rps'])} | {_f(f['p50_ms'])} | {_f(f['p99_ms'])} | 1.00 | | | | |")
    else:
        f = s["floor"]
        lines.append(f"| SQL floor (our ST_AsMVT query, 16 connections, no HTTP) | {_f(f['rps'])} | {_f(f['p50_ms'])} | "
                     f"{_f(f['p99_ms'])} | 1.00 | | | | |")
    if r.get("cold_seconds_run"):
        lines += ["", "Cold runs lasted " + ", ".join(f"{v:g}" for v in r["cold_seconds_run"]) + " s (one value per "
                  "repetition: the floor's time for 85 % of the cold list, at most "
                  f"{r['cold_seconds']:g} s, so that no server asks for a tile twice)."]
    lines += [
        "",
        "Ratios (median of per-repetition ratios, same run):",
        "",
    ]
    lines += [f"- {k}: **{_f(v, 2)}**" for k, v in r["ratios"].items()]
    lines += ["", "Warm requests are answered from our tile cache; the peers have none, so the warm ratios "
              "carry no target.", "", "Targets:", *target_lines(r["targets"]), ""]
    lines += ["Sanity (3 dense tiles, status and bytes): " + "; ".join(
        f"{n}: {v['status']} {v['bytes']}" for n, v in r["sanity"].items()), ""]
    return lines


def _p3(r: dict) -> list[str]:
    o, p = r["ours"], r["py3dtiles"]
    lines = [
        f"## P3 3D Tiles, LOD1 from PostGIS ({r['buildings_with_height']:,} buildings with a height of "
        f"{r['buildings']:,} in `{r['layer']}`, median of {r['reps']})",
        "",
        "| | ours (`citytwin export-3dtiles layer:`) | py3dtiles export |",
        "|---|---|---|",
        f"| wall time | {_f(o['seconds_median'], 2)} s | {_f(p['seconds_median'], 2)} s |",
        f"| buildings/s | {_f(o['buildings_per_s'], 0)} | {_f(p['buildings_per_s'], 0)} |",
        f"| peak RSS | {_f(o['max_rss_mb_median'], 0)} MB | {_f(p['max_rss_mb_median'], 0)} MB |",
        f"| output | {_mb(o['output_bytes'])} in {o['files']} files | {_mb(p['output_bytes'])} in {p['files']} files |",
        "",
        f"Ratio (buildings/s ours / py3dtiles, median of per-repetition ratios): **{_f(r['ratio_ours_over_py3dtiles'], 1)}**",
        "",
        *target_lines(r["targets"]),
        "",
        f"Commands: `{r['commands']['ours']}`; `{r['commands']['py3dtiles']}` (py3dtiles reads `<layer>_lod1`, "
        "the same layer extruded beforehand to MultiPolygon Z in EPSG:5186, because it cannot extrude footprints; "
        "that preparation is not timed).",
        "",
    ]
    if "ours_big" in r:
        b = r["ours_big"]
        lines += [f"Ours alone on `{b['layer']}` ({b['buildings']:,} buildings, median of {b['reps']}): "
                  f"{_f(b['seconds_median'])} s, {_f(b['buildings_per_s'], 0)} buildings/s, peak RSS "
                  f"{_f(b['max_rss_mb_median'], 0)} MB.", ""]
    return lines


def _p5(r: dict) -> list[str]:
    s = r["summary"]
    lines = [
        f"## P5 OGC API Features, bbox items ({r['bboxes']:,} bboxes of 250-400 m, limit={r['limit']}, "
        f"{r['connections']} connections, {r['seconds']} s per run, median of {r['reps']})",
        "",
        "| server | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
    ]
    for n, v in s.items():
        lines.append(f"| {n} | {_f(v['rps'])} | {_f(v['p50_ms'])} | {_f(v['p99_ms'])} | {v['errors']} |")
    lines += ["", f"Ratio ours / pygeoapi (req/s): **{_f(r['ratio_ours_over_pygeoapi'], 2)}**", ""]
    for kind, k in r.get("sets", {}).items():  # P5 query sets (benchmarks/p5_features.py)
        lines += [f"Set `{kind}` on `{r['layer']}`: " + "; ".join(
            f"{n} {_f(v['rps'])} req/s (p50 {_f(v['p50_ms'])} ms, {v['errors']} errors, one request alone "
            f"{_f(k['check']['median_single_ms'][n])} ms)" for n, v in k["summary"].items())
            + "; ratios " + ", ".join(f"{n.replace('_', ' ')} **{_f(x, 2)}**" for n, x in k["ratios"].items())
            + f"; answers compared {k['check']['compared']}, differing {len(k['check']['differ'])}", ""]
    lines += [*target_lines(r["targets"]), "",
              "Sanity: " + "; ".join(f"{n}: {v}" for n, v in r["sanity"].items()), ""]
    return lines


def _p2_pygeoapi(r: dict) -> list[str]:
    lines = [f"## P2 peer diagnosis: pygeoapi MVT-postgresql on `{r['table']}` (ratio dropped)", "",
             "pygeoapi 0.21.0 (the newest release on PyPI) configured as its documentation shows "
             f"(`{json.dumps(r['provider_config'])}`, connection details left out). It passes SRIDs to PostGIS as "
             "text ('EPSG:3857'), which selects `ST_Transform(geometry, text)`: a PROJ transformation is built for "
             "every row the tile holds. The same SQL with integer SRIDs, on the same server:", "",
             "| tile | rows | provider (s) | its SQL, text SRIDs (ms) | same SQL, integer SRIDs (ms) | bytes |",
             "|---|---|---|---|---|---|"]
    for t in r["tiles"]:
        lines.append(f"| {t['tile']} | {t['rows']:,} | {_f(t['provider_s'], 2)} | {_f(t['sql_text_srid_ms'], 1)} "
                     f"| {_f(t['sql_integer_srid_ms'], 1)} | {t['bytes']:,} |")
    lines += ["", "No option of the provider changes the SRID form, so a throughput ratio against it would measure "
              "this bug, not tile serving; no ratio is reported.", ""]
    return lines


def _started(res: dict, part: str) -> str:
    """When ``part`` of ``res`` was measured, as ISO UTC (older files only have the run's start)."""
    rec = res.get("parts", {}).get(part)
    if rec:
        return rec["started"]
    when = datetime.strptime(res["started"], "%Y-%m-%d %H:%M:%S %z").astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _provenance(res: dict, part: str) -> str:
    rec = res.get("parts", {}).get(part)
    if not rec:
        return (f"_Measured at commit {res['versions'].get('git_commit', '?')} ({res['started']}); whether the tree "
                "was dirty was not recorded._")
    total = rec.get("changed_total", len(rec["changed"]))
    more = f" and {total - len(rec['changed'])} more" if total > len(rec["changed"]) else ""
    state = "clean tree" if not rec["dirty"] else f"DIRTY tree, {total} file(s) differ: " + ", ".join(rec["changed"]) + more
    load = rec.get("loadavg", [])
    return (f"_Measured at commit {rec['commit']} ({state}), started {rec['started']}; load average "
            f"{load[:3]} before, {load[3:]} after._")


def _db_settings(res: dict) -> list[str]:
    lines = ["## Database configuration", ""]
    seen: dict[str, list[str]] = {}
    for part, rec in res.get("parts", {}).items():
        if rec.get("db_settings"):
            seen.setdefault(json.dumps(rec["db_settings"], sort_keys=True), []).append(part)
    legacy = [p for p in DB_PARTS if p in res and p not in res.get("parts", {})]
    if len(seen) > 1:
        lines += ["**The parts below ran under different server settings; their ratios are not comparable "
                  "across parts.**", ""]
    for settings, parts in seen.items():
        lines.append(f"One PostgreSQL server for every side ({', '.join(parts)}), set with ALTER SYSTEM by "
                     "benchmarks/common.py and read back from pg_settings: "
                     + ", ".join(f"`{k}={v}`" for k, v in json.loads(settings).items()) + ".")
    if legacy:
        lines.append(f"Parts {', '.join(legacy)}: not recorded (server defaults, JIT on for every side but ours).")
    return [*lines, ""]


def _peers(res: dict) -> list[str]:
    if not res.get("peers"):
        return []
    lines = ["## How each peer runs", "", "| peer | options | why |", "|---|---|---|"]
    lines += [f"| {name} | {opts} | {why} |" for name, (opts, why) in res["peers"].items()]
    return [*lines, ""]


def _zoom_mix(mix: dict) -> str:
    """Tiles per zoom; the same text before and after a JSON round trip turns the zooms into strings."""
    return ", ".join(f"z{z}: {n:,}" for z, n in sorted(mix.items(), key=lambda kv: int(kv[0])))


def _extra(name: str, e: dict) -> list[str]:
    lines = [f"## {name} (exit {e['returncode']}, {e['seconds']} s)", ""]
    data = e.get("data") or {}
    for line in data.get("headline", []):
        lines.append(f"- {line}")
    if data.get("targets"):
        lines += ["", *target_lines(data["targets"])]
    if data:
        lines.append("")
    return [*lines, "```", e["stdout"].strip()[-4000:], e.get("stderr", "").strip()[-1500:], "```", ""]


def render(res: dict) -> str:
    m, v = res["machine"], res["versions"]
    lines = [
        "# citytwin benchmarks",
        "",
        f"Run {res['started']}, scale `{res['scale']}`, total {res.get('total_seconds', 0):.0f} s. "
        "Every figure is a median over the repetitions shown; every ratio is taken between runs of the same "
        "`make bench` invocation on the same data. Each section says which commit it measured; parts re-run "
        "alone were merged in by `python -m benchmarks.report`. A target is met or missed only with 3+ "
        "repetitions in alternated order on the same data (and 90 % cold requests for a cold claim); "
        "otherwise it is not measured (benchmarks/verdict.py).",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores), memory {m['memory']}, {m['os']}; load average at start "
        f"{m['loadavg_at_start']} (the machine is shared, so absolute figures carry noise; ratios are adjacent runs)",
        f"- Python {v['python']}, git {v['git_commit']}; ours: " + ", ".join(f"{k} {x}" for k, x in v["ours"].items()),
        f"- peers venv: {v['peers_venv']}; {v['tippecanoe']}; {v['postgres']}; {v['wrk']}",
        "",
        *_db_settings(res),
        *_peers(res),
        "## Data",
        "",
    ]
    for name, c in res["setup"].get("citygen", {}).items():
        ing = res["setup"]["ingest"].get(name, {})
        lines.append(f"- `{name}`: {c['buildings']:,} footprints ({c['pois']:,} POIs, {c['records']:,} records) over "
                     f"{c['side_km']} x {c['side_km']} km, generated in {c['generate_s']} s (+{c['write_fgb_s']} s "
                     f"FlatGeobuf); `citytwin ingest` into PostGIS {ing.get('seconds', 'n/a')} s, peak RSS "
                     f"{ing.get('max_rss_mb', 'n/a')} MB")
    lines.append("")
    for key, fn in (("p1", _p1), ("p2", _p2), ("p2_two", _p2), ("p2_pygeoapi", _p2_pygeoapi), ("p3", _p3),
                    ("p5", _p5)):
        if key in res:
            try:
                for part in res[key] if isinstance(res[key], list) else [res[key]]:
                    lines += fn(part)
            except (KeyError, TypeError) as exc:
                lines += [f"## {key.upper()}", "", f"(could not render: {exc!r})", ""]
            lines += [_provenance(res, key), ""]
        if key in res.get("errors", {}):
            lines += [f"## {key.upper()} failed", "", "```", res["errors"][key][-2500:], "```", ""]
    for key, why in res.get("retired", {}).items():
        lines += [f"## {key.upper()}: no longer measured", "", why, ""]
    if res.get("notes"):
        lines += ["## Notes", "", res["notes"], ""]
    if res.get("findings"):
        lines += ["## Findings where a target is missed", "", res["findings"], ""]
    for name, e in res.get("extra", {}).items():
        lines += [*_extra(name, e), _provenance(res, _extra_part(name)), ""]
    lines += ["## Step times", "", json.dumps(res.get("step_seconds", {})), ""]
    return "\n".join(lines)


def _extra_part(file_name: str) -> str:
    named = {script: part for part, script in NAMED_SCRIPTS.items()}
    return named.get(file_name) or file_name.removeprefix("bench_").removesuffix(".py")


# extra parts whose script is not benchmarks/bench_PART.py
NAMED_SCRIPTS = {"p4": "p4_citygml.py", "p4_seq": "p4_cityjsonseq.py"}


def extra_script(part: str) -> str:
    """The file name of an extra part's script, the key of its results under ``extra``."""
    return NAMED_SCRIPTS.get(part, f"bench_{part}.py")


def write_partials(res: dict, results_dir: Path) -> list[Path]:
    """One results/partial-PART.json per part of a ``BENCH_ONLY`` run, each with its own provenance."""
    common = {k: res[k] for k in ("scale", "config", "started", "machine", "versions")}
    paths = []
    for part, rec in res["parts"].items():
        doc = {**common, "part": part, "provenance": rec, "peers": res.get("peers"),
               "errors": {k: v for k, v in res["errors"].items() if k == part}}
        if part in DB_PARTS:
            doc["setup"] = res["setup"]
            if part in res:
                doc[part] = res[part]
        else:
            doc["extra"] = {extra_script(part): res["extra"][extra_script(part)]}
        path = results_dir / f"partial-{part}.json"
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        paths.append(path)
    return paths


def merge(latest: dict, partial: dict) -> bool:
    """Fold ``partial`` into ``latest`` when it is newer than what latest holds for that part."""
    part = partial["part"]
    held = part in latest or extra_script(part) in latest.get("extra", {})
    if held and partial["provenance"]["started"] <= _started(latest, part):
        return False
    latest.setdefault("parts", {})[part] = partial["provenance"]
    latest.setdefault("errors", {}).pop(part, None)
    latest["errors"].update(partial.get("errors", {}))
    if part in DB_PARTS:
        latest.pop(part, None)
        if part in partial:
            latest[part] = partial[part]
    else:
        latest.setdefault("extra", {}).update(partial["extra"])
    if partial.get("peers") and partial["provenance"]["started"] >= latest.get("peers_started", ""):
        latest["peers"], latest["peers_started"] = partial["peers"], partial["provenance"]["started"]
    return True


def main() -> None:
    """Merge newer results/partial-*.json into latest.json, then re-render latest.md from it (no re-run)."""
    results = Path(__file__).resolve().parent / "results"
    res = json.loads((results / "latest.json").read_text(encoding="utf-8"))
    for path in sorted(results.glob("partial-*.json")):
        if merge(res, json.loads(path.read_text(encoding="utf-8"))):
            print(f"merged {path.name}")
    for key, why in RETIRED.items():
        if key in res:
            res.pop(key)
            res.setdefault("retired", {})[key] = why
    notes = Path(__file__).resolve().parent / "notes.md"
    if notes.is_file():
        res["notes"] = notes.read_text(encoding="utf-8")
    (results / "latest.json").write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str),
                                         encoding="utf-8")
    (results / "latest.md").write_text(render(res), encoding="utf-8")


if __name__ == "__main__":
    main()
