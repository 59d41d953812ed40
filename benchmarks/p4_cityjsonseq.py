"""P4 for CityJSONSeq: a ``.city.jsonl`` file to 3D Tiles against its parse floor.

    .venv/bin/python -m benchmarks.p4_cityjsonseq [GB]        (default 1, as P4 CityGML)

A CityJSONSeq file of at least ``GB`` gigabytes is generated in a temporary folder from the
shared Delft file (../shared/data/cityjson): one header line (transform, CRS), then one
feature line per building with its parts and its own vertices, the buildings repeated with
fresh ids and shifted on a grid. Two commands are timed as whole processes under
``/usr/bin/time -v``, in alternated order (as in ``benchmarks.p4_citygml``):

    floor    ``json.loads`` of every line and its vertices to a numpy array
    ours     ``citytwin export-3dtiles FILE --out DIR``

The last line is ``RESULT {json}``.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import CITYTWIN, PY
from benchmarks.p4_citygml import alternated_runs, figures

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cityjson" / "delft.city.json"
REPS = 3  # the verdicts need three alternated repetitions (benchmarks/verdict.py)

FLOOR = """
import json, sys
import numpy as np
n = values = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        item = json.loads(line)
        values += np.asarray(item.get("vertices") or [], dtype=np.float64).size
        n += sum(o.get("type") == "Building" for o in (item.get("CityObjects") or {}).values())
print(n, values)
"""


def seq_header(data: dict, crs: str = "https://www.opengis.net/def/crs/EPSG/0/7415") -> dict:
    """The CityJSONSeq first line of CityJSON ``data``: its transform, CRS and templates."""
    ref = (data.get("metadata") or {}).get("referenceSystem") or crs
    header = {"type": "CityJSON", "version": data.get("version", "2.0"), "transform": data["transform"],
              "metadata": {"referenceSystem": ref}, "CityObjects": {}, "vertices": []}
    if "geometry-templates" in data:
        header["geometry-templates"] = data["geometry-templates"]
    return header


def seq_features(data: dict) -> list[dict]:
    """One CityJSONFeature per top-level city object: it, its descendants and only their vertices."""
    objects = data["CityObjects"]
    out = []
    for key, obj in objects.items():
        if obj.get("parents"):
            continue
        keys, todo = [], [key]
        while todo:
            k = todo.pop(0)
            if k in objects and k not in keys:
                keys.append(k)
                todo += objects[k].get("children") or []
        chosen = {k: copy.deepcopy(objects[k]) for k in keys}
        remap: dict[int, int] = {}
        for o in chosen.values():
            for g in o.get("geometry") or []:
                g["boundaries"] = _remap(g["boundaries"], remap)
        vertices = [data["vertices"][i] for i in sorted(remap, key=remap.get)]
        out.append({"type": "CityJSONFeature", "id": key, "CityObjects": chosen, "vertices": vertices})
    return out


def _remap(value, remap: dict[int, int]):
    if isinstance(value, list):
        return [_remap(v, remap) for v in value]
    return remap.setdefault(value, len(remap))


def generate(path: Path, target_bytes: int, source: Path = SOURCE) -> int:
    """Write a CityJSONSeq file of at least ``target_bytes``; returns its building count."""
    data = json.loads(source.read_text())
    features = [f for f in seq_features(data)
                if any(o.get("type") == "Building" for o in f["CityObjects"].values())]
    per_copy = sum(o.get("type") == "Building" for f in features for o in f["CityObjects"].values())
    body = sum(len(json.dumps(f)) + 1 for f in features)
    cols = math.ceil(math.sqrt(max(1, target_bytes / body)))
    xs = [v[0] for v in data["vertices"]]
    ys = [v[1] for v in data["vertices"]]
    step = int(max(max(xs) - min(xs), max(ys) - min(ys)) * 1.1) + 1  # in transform units
    copies = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(seq_header(data)) + "\n")
        while f.tell() < target_bytes:
            k, copies = copies, copies + 1
            dx, dy = (k % cols) * step, (k // cols) * step
            for feat in features:
                tag = f"-c{k}"
                objects = {key + tag: {**o, **({"children": [c + tag for c in o["children"]]} if "children" in o else {}),
                                       **({"parents": [p + tag for p in o["parents"]]} if "parents" in o else {})}
                           for key, o in feat["CityObjects"].items()}
                moved = [[x + dx, y + dy, z] for x, y, z in feat["vertices"]]
                f.write(json.dumps({"type": "CityJSONFeature", "id": feat["id"] + tag, "CityObjects": objects,
                                    "vertices": moved}, separators=(",", ":")) + "\n")
    return copies * per_copy


def generate_plain(path: Path, target_bytes: int, source: Path = SOURCE) -> int:
    """A plain CityJSON file of at least ``target_bytes`` holding what ``generate`` writes (its
    CityObjects first, then one vertex list); returns its building count. Vertices go to a
    scratch file first, so memory stays at one feature."""
    seq = path.with_name(path.name + ".seq.jsonl")
    buildings = generate(seq, target_bytes)
    scratch = path.with_name(path.name + ".vertices")
    try:
        with open(seq, "rb") as lines, open(path, "wb") as out, open(scratch, "wb") as vs:
            header = json.loads(next(lines))
            head = {k: header[k] for k in ("type", "version", "transform", "metadata")}
            out.write(json.dumps(head)[:-1].encode() + b', "CityObjects": {')
            offset, first = 0, True
            for line in lines:
                feat = json.loads(line)
                for key, obj in feat["CityObjects"].items():
                    for g in obj.get("geometry") or []:
                        g["boundaries"] = _shift(g["boundaries"], offset)
                    out.write((b"" if first else b",") + json.dumps(key).encode() + b":"
                              + json.dumps(obj, separators=(",", ":")).encode())
                    first = False
                vs.write(b"".join((b"," if offset or i else b"") + json.dumps(v, separators=(",", ":")).encode()
                                  for i, v in enumerate(feat["vertices"])))
                offset += len(feat["vertices"])
            out.write(b'}, "vertices": [')
            vs.close()
            with open(scratch, "rb") as back:
                shutil.copyfileobj(back, out)
            out.write(b"]}\n")
    finally:
        seq.unlink(missing_ok=True)
        scratch.unlink(missing_ok=True)
    return buildings


def _shift(value, offset: int):
    if isinstance(value, list):
        return [_shift(v, offset) for v in value]
    return value + offset


def run(gb: float = 1.0, work: Path | None = None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="p4-cityjsonseq-", dir=work))
    try:
        seq = tmp / "city.city.jsonl"
        t0 = time.perf_counter()
        buildings = generate(seq, int(gb * 1e9))
        size_mb = seq.stat().st_size / 1e6
        print(f"generated {seq.name}: {size_mb:,.0f} MB, {buildings:,} buildings in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        load_start = os.getloadavg()
        cmds = {"floor": [str(PY), "-c", FLOOR, str(seq)],
                "ours": [str(CITYTWIN), "export-3dtiles", str(seq), "--out", str(tmp / "tiles")]}
        runs = alternated_runs(cmds, buildings, REPS)
        return figures(runs, size_mb, buildings, load_start, os.getloadavg())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    result = run(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
    print(f"P4 CityJSONSeq, {result['file_mb']:,} MB, {result['buildings']:,} buildings "
          f"(load average {result['loadavg_start'][0]} at start, {result['loadavg_end'][0]} at end):")
    for name, r in (("json.loads floor", result["floor"]), ("citytwin export-3dtiles", result["ours"])):
        print(f"  {name:24s} {r['seconds']:7.1f} s (CPU {r['cpu_s']:.1f} s)  {r['mb_per_s']:6.1f} MB/s  "
              f"{r['buildings_per_s']:7,} buildings/s  peak RSS {r['peak_rss_mb']:,} MB")
    print(f"  ours / floor: {result['ratio_to_floor']}x wall, {result['cpu_ratio_to_floor']}x CPU")
    for name, v in result["verdicts"].items():
        print(f"  {name}: {v['verdict']} ({v['value']} vs {v['bound']}{'; ' + v['why'] if v['why'] else ''})")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
