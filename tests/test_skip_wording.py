"""Skip counts in the 3D Tiles report name what they count and why."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
from click.testing import CliRunner
from shapely.geometry import box

from pipelines.cli import main


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_footprints_without_height_are_counted_as_buildings(tmp_path: Path):
    project = tmp_path / "p"
    assert run("init", project)[0] == 0
    blds = tmp_path / "blds.geojson"
    cells = [box(126.9775 + i * 0.001, 37.566, 126.978 + i * 0.001, 37.5665) for i in range(4)]
    gpd.GeoDataFrame({"height": [12.0, None, None, 30.0]}, geometry=cells, crs=4326).to_file(blds, driver="GeoJSON")
    code, out = run("ingest", blds, "--layer", "blds", "--kind", "buildings", "--project", project)
    assert code == 0, out
    code, out = run("export-3dtiles", "layer:blds", "--out", tmp_path / "t", "--project", project)
    assert code == 0, out
    summary = out.strip().splitlines()[-1]
    assert "2 buildings written" in summary
    assert summary.endswith("; 2 buildings skipped: no height (no height attribute and no floors)")
