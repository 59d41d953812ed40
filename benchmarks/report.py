"""Render benchmarks/results/latest.md from the results dict run.py collects."""
from __future__ import annotations

import json
import math


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


def _targets(d: dict) -> list[str]:
    return [f"- {name}: **{'met' if ok else 'MISSED'}**" for name, ok in d.items()]


def _p1(r: dict) -> list[str]:
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
        f"Time ratio ours / tippecanoe (median of per-repetition ratios): **{_f(r['time_ratio_ours_over_tippecanoe'], 2)}** "
        f"(target <= 1.0: **{'met' if r['met'] else 'MISSED'}**).",
        "",
        f"Commands: `{r['commands']['ours']}`; `{r['commands']['tippecanoe']}` "
        "(tippecanoe reads a FlatGeobuf exported from the same store layer; the export is not timed).",
        "",
    ]
    return lines


def _drops(d: dict) -> str:
    return ", ".join(f"z{z}:{v:,}" for z, v in d.items())


def _p2(r: dict) -> list[str]:
    s = r["summary"]
    names = [n for n in ("ours", "tipg", "pygeoapi") if n in s]
    lines = [
        f"## P2 dynamic MVT from PostGIS: `{r['layer']}` ({r['features']:,} footprints, {r['connections']} connections, {r['tiles_unique']:,} unique z14-16 tiles "
        f"{r['zoom_mix']}, median of {r['reps']})",
        "",
        "| server | cold req/s | cold p50 ms | cold p99 ms | cold first-request share | warm req/s | warm p50 ms | warm p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        c, w = s[n]["cold"], s[n]["warm"]
        lines.append(f"| {n} | {_f(c['rps'])} | {_f(c['p50_ms'])} | {_f(c['p99_ms'])} | {_f(c['first_request_share'], 2)} "
                     f"| {_f(w['rps'])} | {_f(w['p50_ms'])} | {_f(w['p99_ms'])} | {c['errors'] + w['errors']} |")
    f = s["floor"]
    lines += [
        f"| SQL floor (our ST_AsMVT query, 16 connections, no HTTP) | {_f(f['rps'])} | {_f(f['p50_ms'])} | {_f(f['p99_ms'])} | 1.00 | | | | |",
        "",
        "Ratios (median of per-repetition ratios, same run):",
        "",
    ]
    lines += [f"- {k}: **{_f(v, 2)}**" for k, v in r["ratios"].items()]
    lines += ["", "Targets:", *_targets(r["targets"]), ""]
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
        *_targets(r["targets"]),
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
    lines += ["", f"Ratio ours / pygeoapi (req/s): **{_f(r['ratio_ours_over_pygeoapi'], 2)}**", "",
              *_targets(r["targets"]), "",
              "Sanity (first bbox): " + "; ".join(f"{n}: {v}" for n, v in r["sanity"].items()), ""]
    return lines


def render(res: dict) -> str:
    m, v = res["machine"], res["versions"]
    lines = [
        "# citytwin benchmarks",
        "",
        f"Run {res['started']}, scale `{res['scale']}`, total {res.get('total_seconds', 0):.0f} s. "
        "Every figure is a median over the repetitions shown; every ratio is taken between runs of the same "
        "`make bench` invocation on the same data.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores), memory {m['memory']}, {m['os']}; load average at start "
        f"{m['loadavg_at_start']} (the machine is shared, so absolute figures carry noise; ratios are adjacent runs)",
        f"- Python {v['python']}, git {v['git_commit']}; ours: " + ", ".join(f"{k} {x}" for k, x in v["ours"].items()),
        f"- peers venv: {v['peers_venv']}; {v['tippecanoe']}; {v['postgres']}; {v['wrk']}",
        "",
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
    for key, fn in (("p1", _p1), ("p2", _p2), ("p2_small", _p2), ("p3", _p3), ("p5", _p5)):
        if key in res:
            try:
                for part in res[key] if isinstance(res[key], list) else [res[key]]:
                    lines += fn(part)
            except (KeyError, TypeError) as exc:
                lines += [f"## {key.upper()}", "", f"(could not render: {exc!r})", ""]
        if key in res.get("errors", {}):
            lines += [f"## {key.upper()} failed", "", "```", res["errors"][key][-2500:], "```", ""]
    if res.get("notes"):
        lines += ["## Notes", "", res["notes"], ""]
    if res.get("findings"):
        lines += ["## Findings where a target is missed", "", res["findings"], ""]
    for name, e in res.get("extra", {}).items():
        lines += [f"## {name} (exit {e['returncode']}, {e['seconds']} s)", "", "```", e["stdout"].strip()[-4000:],
                  e.get("stderr", "").strip()[-1500:], "```", ""]
    lines += ["## Step times", "", json.dumps(res.get("step_seconds", {})), ""]
    return "\n".join(lines)


def main() -> None:
    """Re-render latest.md from latest.json, picking up benchmarks/notes.md (no re-run)."""
    from pathlib import Path

    results = Path(__file__).resolve().parent / "results"
    res = json.loads((results / "latest.json").read_text(encoding="utf-8"))
    notes = Path(__file__).resolve().parent / "notes.md"
    if notes.is_file():
        res["notes"] = notes.read_text(encoding="utf-8")
        (results / "latest.json").write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str),
                                             encoding="utf-8")
    (results / "latest.md").write_text(render(res), encoding="utf-8")


if __name__ == "__main__":
    main()
