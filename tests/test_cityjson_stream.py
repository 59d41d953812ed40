"""CityJSONSeq to 3D Tiles, streamed: the same tileset as from the CityJSON file it was made
from, byte ranges at line starts that add up to the file, hostile lines refused in one line
with exit 2, and memory that does not grow with the file."""
from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from citygml_summary import tileset_summary
from click.testing import CliRunner
from peak_rss import run_measured
from validators import gltf_validate

from geo.city3d import ReadReport
from pipelines.cli import main
from pipelines.export3d import models_to_tileset
from pipelines.readers.cityjson import ORPHAN_PART, read_cityjson_lods
from pipelines.readers.cityjson_seq import split_seq_ranges
from shared_data import SHARED_DATA
from tiles.threed.implicit import RENDER_BATCH

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package
from benchmarks.p4_cityjsonseq import generate, generate_plain, seq_features, seq_header  # noqa: E402

pytestmark = pytest.mark.realdata("cityjson")
CJ = SHARED_DATA / "cityjson"
NAMES = ["delft.city.json", "multi_lod.city.json", "rotterdam_subset.city.json"]


def _to_seq(source: Path, out: Path) -> Path:
    data = json.loads(source.read_text())
    lines = [seq_header(data)] + seq_features(data)
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "gen.city.jsonl"
    generate(path, 3_000_000)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_seq_gives_the_tileset_of_the_cityjson_it_was_made_from(name, tmp_path):
    seq = _to_seq(CJ / name, tmp_path / name.replace(".json", ".jsonl"))
    assert len(seq.read_text().splitlines()) == 1 + sum(
        not o.get("parents") for o in json.loads((CJ / name).read_text())["CityObjects"].values())
    a, b = tmp_path / "a", tmp_path / "b"
    models_to_tileset([CJ / name], a, crs="EPSG:7415", progress=False, compress=False)
    models_to_tileset([seq], b, progress=False, compress=False)
    whole, streamed = tileset_summary(a), tileset_summary(b)
    assert streamed == whole and whole["tiles"] >= 1 and whole["triangles"] > 0


def test_byte_ranges_start_at_lines_and_read_every_building_once(generated, tmp_path):
    text = generated.read_bytes()
    ranges = split_seq_ranges(generated, part_bytes=300_000)
    assert ranges is not None and len(ranges) >= 5
    header_end = text.index(b"\n") + 1
    assert ranges[0].start == header_end and {r.header_end for r in ranges} == {header_end}
    assert all(a.stop == b.start for a, b in zip(ranges, ranges[1:])) and ranges[-1].stop == len(text)
    assert all(text[r.start - 1:r.start] == b"\n" for r in ranges)
    expected = [k for line in text.splitlines()[1:] for k, o in json.loads(line)["CityObjects"].items()
                if o["type"] == "Building"]
    whole = [next(iter(lods.values())).id for lods in read_cityjson_lods(generated)]
    parts = [next(iter(lods.values())).id for r in ranges for lods in read_cityjson_lods(generated, part=r)]
    assert len(expected) > 1000 and parts == whole == expected
    a, b = tmp_path / "a", tmp_path / "b"
    models_to_tileset([generated], a, progress=False, compress=False, max_per_tile=100)
    models_to_tileset([generated], b, progress=False, compress=False, max_per_tile=100, part_bytes=300_000)
    assert tileset_summary(a) == tileset_summary(b)


def _header() -> str:
    return json.dumps(seq_header(json.loads((CJ / "rotterdam_subset.city.json").read_text())))


def _features() -> list[str]:
    return [json.dumps(f) for f in seq_features(json.loads((CJ / "rotterdam_subset.city.json").read_text()))]


@pytest.mark.parametrize("case", ["bad_json", "no_header", "too_long", "too_many_vertices"])
def test_hostile_line_is_one_line_naming_file_and_line_and_exit_2(case, tmp_path, monkeypatch):
    feats = _features()
    lines = [_header(), *feats[:3]]
    if case == "bad_json":
        lines.insert(3, feats[3][:-40])  # line 4 cut off
        want = "broken JSON at line 4"
    elif case == "no_header":
        lines = feats[:3]
        want = "line 1 is a CityJSONFeature, not the CityJSON header"
    elif case == "too_long":
        limit = max(len(x) for x in lines) + 1
        monkeypatch.setattr("pipelines.readers.cityjson_seq.MAX_LINE_BYTES", limit)
        lines.insert(2, json.dumps({"type": "CityJSONFeature", "id": "x", "CityObjects": {},
                                    "vertices": [[1, 2, 3]] * limit}))
        want = "line 3 is longer than"
    else:
        monkeypatch.setattr("pipelines.readers.cityjson.MAX_FEATURE_VERTICES", 10)
        want = "line 2 (feature"
    seq = tmp_path / "hostile.city.jsonl"
    seq.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["export-3dtiles", str(seq), "--out", str(out)])
    assert result.exit_code == 2, result.output
    printed = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(printed) == 1 and str(seq) in printed[0] and want in printed[0], result.output
    assert "Traceback" not in result.output and not out.exists()
    assert not list(tmp_path.glob(".*")), "no scratch or spill folder is left behind"


def test_big_plain_cityjson_is_streamed_to_the_tileset_it_gives_whole(tmp_path, monkeypatch):
    """Above the whole-file bound a plain CityJSON file is streamed, not refused (before: exit 2
    with a pointer to CityJSONSeq), and gives the same tiles byte for byte."""
    path = tmp_path / "plain.city.json"
    buildings = generate_plain(path, 2_000_000)
    whole = CliRunner().invoke(main, ["export-3dtiles", str(path), "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    monkeypatch.setattr("pipelines.readers.cityjson.MAX_CITYJSON_BYTES", 1_000_000)
    streamed = CliRunner().invoke(main, ["export-3dtiles", str(path), "--out", str(tmp_path / "streamed")])
    assert streamed.exit_code == 0, streamed.output
    assert f"{buildings} buildings written" in streamed.output and buildings > 1000
    files = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "streamed") for p in (tmp_path / "streamed").rglob("*")
                           if p.is_file())
    assert all((tmp_path / "whole" / f).read_bytes() == (tmp_path / "streamed" / f).read_bytes() for f in files)


def test_streamed_plain_cityjson_merges_parts_in_any_order_and_counts_orphans(tmp_path, monkeypatch):
    cube = [[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0], [0, 0, 10], [10, 0, 10], [10, 10, 10], [0, 10, 10]]
    faces = [[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]], [[2, 3, 7, 6]], [[3, 0, 4, 7]]]
    moved = [[[i + 8 for i in ring] for ring in f] for f in faces]
    solid = lambda b: [{"type": "Solid", "lod": "2", "boundaries": [b]}]  # noqa: E731
    objects = {  # the part before its building, a plain building, an orphan part
        "annex": {"type": "BuildingPart", "parents": ["house"], "geometry": solid(moved),
                  "attributes": {"measuredHeight": 10}},
        "shed": {"type": "Building", "geometry": solid(faces), "attributes": {"measuredHeight": 10}},
        "lost": {"type": "BuildingPart", "parents": ["gone"], "geometry": solid(faces)},
        "house": {"type": "Building", "children": ["annex"], "geometry": solid(faces)},
    }
    path = tmp_path / "parts.city.json"
    path.write_text(json.dumps({"type": "CityJSON", "version": "2.0", "CityObjects": objects,
                                "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/7415"},
                                "transform": {"scale": [1, 1, 1], "translate": [85000, 447000, 0]},
                                "vertices": cube + [[x + 20, y, z] for x, y, z in cube]}))
    whole_report, streamed_report = ReadReport(path.name), ReadReport(path.name)
    whole = {lods[2].id: lods[2] for lods in read_cityjson_lods(path, lods=(2,), report=whole_report)}
    monkeypatch.setattr("pipelines.readers.cityjson.MAX_CITYJSON_BYTES", 100)
    streamed = {lods[2].id: lods[2] for lods in read_cityjson_lods(path, lods=(2,), report=streamed_report)}
    assert sorted(streamed) == sorted(whole) == ["house", "shed"]
    assert len(streamed["house"].surfaces) == 12 and streamed["house"].attributes["height"] == 10.0
    np.testing.assert_allclose(streamed["house"].surfaces[6].rings[0][0], [85020, 447000, 0])
    assert streamed_report.skipped == whole_report.skipped == {ORPHAN_PART: 1}


@pytest.mark.parametrize("case", ["cut_off", "deep_attribute", "big_object", "ragged_vertices"])
def test_hostile_streamed_plain_cityjson_is_one_line_and_exit_2(case, tmp_path, monkeypatch):
    path = tmp_path / "hostile.city.json"
    generate_plain(path, 300_000)
    text = path.read_text()
    if case == "cut_off":
        text, want = text[:len(text) // 2], "broken JSON"
    elif case == "deep_attribute":
        text = text.replace('"attributes":{', '"attributes":{"deep":' + "[" * 100 + "]" * 100 + ",", 1)
        want = "nests arrays or objects over 64 levels deep"
    elif case == "big_object":
        monkeypatch.setattr("pipelines.readers.cityjson_stream.MAX_OBJECT_BYTES", 100_000)
        text = text.replace('"attributes":{', '"attributes":{"pad":"' + "x" * 3_000_000 + '",', 1)
        want = "takes over 0 MB"
    else:
        text = text.replace('"vertices": [[', '"vertices": [[1,2],[', 1)
        want = "'vertices' is not a list of [x, y, z] numbers"
    path.write_text(text)
    monkeypatch.setattr("pipelines.readers.cityjson.MAX_CITYJSON_BYTES", 1000)
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["export-3dtiles", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    printed = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(printed) == 1 and str(path) in printed[0] and want in printed[0], result.output
    assert "Traceback" not in result.output and not out.exists()


def test_streamed_plain_cityjson_memory_does_not_grow_with_the_file(tmp_path, monkeypatch):
    """Streamed through $CITYTWIN_CITYJSON_WHOLE_MB=1: five times the file, about the same peak."""
    monkeypatch.setenv("CITYTWIN_CITYJSON_WHOLE_MB", "1")
    peaks = {}
    for copies, target in ((1, 8_000_000), (5, 40_000_000)):
        path = tmp_path / f"city{copies}.city.json"
        generate_plain(path, target)
        run = run_measured("export-3dtiles", path, "--out", tmp_path / f"out{copies}")
        assert run.returncode == 0, run.stderr[-2000:]
        peaks[copies] = run.peak_mb
        path.unlink()
    assert peaks[5] - peaks[1] < 25, peaks


def test_meshopt_tiles_of_a_split_seq_validate(generated, tmp_path):
    out = tmp_path / "tiles"
    report, _ = models_to_tileset([generated], out, progress=False, max_per_tile=100, part_bytes=300_000)
    reports = gltf_validate(sorted((out / "content").iterdir()))
    assert len(reports) == report.tiles >= 5
    assert [r["numErrors"] for r in reports] == [0] * len(reports), reports[0]["errors"]


def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    """Five times the buildings must not take more memory in proportion (before, a .jsonl
    file was not accepted by export-3dtiles at all)."""
    peaks = {}
    for copies, target in ((1, 8_000_000), (5, 40_000_000)):
        path = tmp_path / f"city{copies}.city.jsonl"
        generate(path, target)
        run = run_measured("export-3dtiles", path, "--out", tmp_path / f"out{copies}")
        assert run.returncode == 0, run.stderr[-2000:]
        peaks[copies] = run.peak_mb
    assert peaks[5] - peaks[1] < 25, peaks


def test_explicit_tileset_writer_holds_a_batch_of_tiles_not_all(generated, tmp_path):
    """Many small leaves written twice, with and without meshopt: the same tree, only the
    content bytes differ, so the writer's peak of Python and numpy allocations must not
    differ by as much as the content does (before, every rendered tile was held until the
    end: measured by hand, 34.4 MB peak for 12.1 MB of content, 21.8 MB with batches)."""
    models_to_tileset([CJ / "multi_lod.city.json"], tmp_path / "warm", crs="EPSG:7415", progress=False)  # imports
    peak, content = {}, {}
    for compress in (False, True):
        out = tmp_path / f"tiles{compress}"
        tracemalloc.start()
        try:
            report, _ = models_to_tileset([generated], out, progress=False, compress=compress, max_per_tile=2,
                                          implicit=False)
            peak[compress] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        content[compress] = sum(p.stat().st_size for p in (out / "content").iterdir())
        assert report.tiles > 3 * RENDER_BATCH, report.tiles
    saved = content[False] - content[True]
    assert saved > 1.5e6, content
    assert peak[False] - peak[True] < saved / 2, (peak, content)
