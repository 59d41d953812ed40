"""CityGML to 3D Tiles in two passes (read and spill, then tile): the same tilesets as the
one-pass writer made, byte-range partitions that add up to the whole file, and memory that
does not grow with the file."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from citygml_summary import tileset_summary
from click.testing import CliRunner
from peak_rss import run_measured
from validators import gltf_validate

from pipelines.cli import main
from pipelines.export3d import models_to_tileset
from pipelines.readers.citygml import read_citygml_lods
from pipelines.readers.citygml_split import split_ranges
from pipelines.runner import DaskRunner
from shared_data import SHARED_DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package
from benchmarks.p4_citygml import generate  # noqa: E402

pytestmark = pytest.mark.realdata("citygml")
#: made by the one-pass writer (before the spill) with compress=False; "generated" is
#: benchmarks.p4_citygml.generate(path, 1_500_000) written with max_per_tile=8
GOLDEN = json.loads((Path(__file__).parent / "data" / "citygml_stream" / "golden.json").read_text())


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "gen3.gml"
    generate(path, 1_500_000)
    return path


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_tileset_holds_what_the_one_pass_writer_wrote(name, generated, tmp_path):
    path = generated if name == "generated" else SHARED_DATA / "citygml" / name
    out = tmp_path / "tiles"
    models_to_tileset([path], out, progress=False, compress=False, max_per_tile=8 if name == "generated" else 400)
    assert tileset_summary(out) == GOLDEN[name]


def test_byte_ranges_cut_at_members_and_read_every_building_once(generated):
    text = generated.read_bytes()
    ranges = split_ranges(generated, part_bytes=200_000)
    assert ranges is not None and len(ranges) >= 5
    # contiguous, each starting at a member's start tag, the last one running to the end
    assert ranges[0].start == text.index(b"<core:cityObjectMember>")
    assert all(a.stop == b.start for a, b in zip(ranges, ranges[1:])) and ranges[-1].stop == len(text)
    assert all(text[r.start:r.start + 23] == b"<core:cityObjectMember>" for r in ranges)
    assert {r.closing for r in ranges[:-1]} == {b"</core:CityModel>"} and ranges[-1].closing == b""
    whole = [lods for lods in read_citygml_lods(generated, lods=(1, 2))]
    parts = [lods for r in ranges for lods in read_citygml_lods(generated, lods=(1, 2), part=r)]
    assert [sorted(a) for a in parts] == [sorted(b) for b in whole]
    same = [np.array_equal(np.vstack([r for s in a[lv].surfaces for r in s.rings]),
                           np.vstack([r for s in b[lv].surfaces for r in s.rings]))
            for a, b in zip(parts, whole) for lv in a]
    assert same and all(same)
    whole = [next(iter(lods.values())).id for lods in whole]
    parts = [next(iter(lods.values())).id for lods in parts]
    expected = re.findall(r'<bldg:Building gml:id="([^"]+)"', text.decode())
    assert len(expected) == 39 and parts == whole == expected


def test_split_file_gives_the_same_tileset_in_process_and_on_dask(generated, tmp_path):
    summaries = []
    for k, runner in enumerate((None, DaskRunner(workers=2))):
        out = tmp_path / f"tiles{k}"
        try:
            models_to_tileset([generated], out, progress=False, compress=False, max_per_tile=8,
                              part_bytes=200_000, runner=runner)
        finally:
            if runner is not None:
                runner.close()
        summaries.append(tileset_summary(out))
        assert not list(tmp_path.glob(".*spill*")), "the spill folder is removed after the export"
    assert summaries[0] == summaries[1] == GOLDEN["generated"]


def test_two_files_are_two_partitions_and_a_repeated_id_is_kept_once(generated, tmp_path):
    plateau = SHARED_DATA / "citygml" / "plateau_yokosuka_52397519_bldg_6697_op.gml"
    out = tmp_path / "tiles"
    report, messages = models_to_tileset([generated, plateau, plateau], out, progress=False, compress=False)
    assert report.buildings == 39 + 13
    assert sum(n for why, n in report.skipped.items() if str(why) == "duplicate id") == 13
    assert sum("duplicate id" in m for m in messages) == 3  # the first few, naming the building


def test_cut_off_part_is_one_line_naming_the_file_and_exit_2(generated, tmp_path):
    broken = tmp_path / "broken.gml"
    data = generated.read_bytes()
    broken.write_bytes(data[:len(data) * 2 // 3])  # cut in the middle of a building
    result = CliRunner().invoke(main, ["export-3dtiles", str(broken), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(broken) in lines[0] and "broken XML" in lines[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_meshopt_tiles_of_a_split_file_validate(generated, tmp_path):
    out = tmp_path / "tiles"
    models_to_tileset([generated], out, progress=False, max_per_tile=8, part_bytes=200_000)
    reports = gltf_validate(sorted((out / "content").iterdir()))
    assert len(reports) == GOLDEN["generated"]["tiles"]
    assert [r["numErrors"] for r in reports] == [0] * len(reports), reports[0]["errors"]


def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    """Five times the buildings (over five times the ground) must not take more memory in
    proportion: before the spill the export held every building until the end (measured then:
    219 MB and 260 MB peak; with the spill 219 MB and 231 MB, the rest being the finished
    tiles the tileset writer holds until it writes them)."""
    peaks = {}
    for copies, target in ((1, 12_000_000), (5, 60_000_000)):
        path = tmp_path / f"city{copies}.gml"
        generate(path, target)
        run = run_measured("export-3dtiles", path, "--out", tmp_path / f"out{copies}")
        assert run.returncode == 0, run.stderr[-2000:]
        peaks[copies] = run.peak_mb
    assert peaks[5] - peaks[1] < 25, peaks
