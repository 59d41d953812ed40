"""Records a rounding hair past ±180/±90 are clamped and counted like vector features (real CLI)."""
from __future__ import annotations

from pathlib import Path

import pyogrio
from click.testing import CliRunner

from pipelines.cli import main


def run(*args) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.output


def test_hair_past_the_limits_is_clamped_and_counted_and_far_past_is_not_placed(tmp_path: Path):
    project = tmp_path / "proj"
    assert run("init", project)[0] == 0
    # 180 + 6e-14 and -90 - 1e-14: what a float round trip through a projection gives
    (project / "recs.csv").write_text(
        "id,name,lon,lat\n1,날짜변경선 부표,180.00000000000006,-16.5\n2,남극 기지,166.67,-90.00000000000001\n"
        "3,시청,126.9779,37.5663\n4,먼 곳,180.1,10\n", encoding="utf-8")
    code, out = run("geotag", project / "recs.csv", "--layer", "buoys", "--project", project)
    assert code == 0, out
    assert "published 3 of 4" in out, out
    assert "coordinates: 2 records lay up to 1e-09 degrees past ±180/±90 (rounding); clamped onto the limit" in out
    assert "not placed (1): 4 " in out, out
    gdf = pyogrio.read_dataframe(project / "build" / "citytwin.gpkg", layer="buoys").set_index("id")
    assert (gdf.geometry["1"].x, gdf.geometry["1"].y) == (180.0, -16.5)
    assert (gdf.geometry["2"].x, gdf.geometry["2"].y) == (166.67, -90.0)
    assert (gdf.geometry["3"].x, gdf.geometry["3"].y) == (126.9779, 37.5663)
