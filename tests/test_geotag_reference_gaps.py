"""geotag says which reference layers are missing, how far addresses get without them, and
the command that adds each; following those commands closes the gaps."""
from __future__ import annotations

import shlex
from pathlib import Path

import geopandas as gpd
import pandas as pd
from click.testing import CliRunner
from shapely.geometry import box

from pipelines.cli import main
from pipelines.project import init_project
from pipelines.store.gpkg import GeoPackageStore

CITY_HALL_BLOCK = box(126.9775, 37.5660, 126.9785, 37.5668)


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def missing_line(out: str) -> str:
    lines = [line for line in out.splitlines() if "missing reference layers" in line]
    return lines[0] if lines else ""


def named_command(line: str, what: str, source: Path) -> list[str]:
    """The command the report gives for WHAT, with its placeholder file replaced by SOURCE."""
    part = next(p for p in line.split("; ") if what in p)
    words = shlex.split(part[part.index("citytwin "):].split(", or ")[0])
    return [str(source) if w.isupper() or w.split(".")[0].isupper() else w for w in words[1:]]


def tiers(project: Path) -> list[str]:
    store = GeoPackageStore(project / "build" / "citytwin.gpkg")
    try:
        return store.read("complaints")["geocode_tier"].tolist()
    finally:
        store.close()


def test_missing_reference_layers_are_named_with_the_command_that_adds_them(tmp_path: Path):
    project = tmp_path / "p"
    init_project(project)
    gu = tmp_path / "gu.geojson"
    gpd.GeoDataFrame({"SIG_CD": ["11140"], "SIG_KOR_NM": ["중구"]}, geometry=[box(126.96, 37.55, 127.02, 37.57)],
                     crs=4326).to_file(gu, driver="GeoJSON")
    assert run("ingest", gu, "--layer", "gu", "--kind", "boundaries", "--project", project)[0] == 0
    records = tmp_path / "complaints.csv"
    # a road address (needs addressed buildings) and a lot address (names its dong)
    pd.DataFrame({"주소": ["서울특별시 중구 세종대로 110", "서울특별시 중구 태평로1가 31"]}).to_csv(records, index=False)

    code, out = run("geotag", records, "--layer", "complaints", "--project", project)
    assert code == 0, out
    line = missing_line(out)
    assert line.startswith("  warning: addresses are placed at most to gu level; missing reference layers: ")
    at = shlex.quote(str(project))
    assert f"dong boundaries: citytwin ingest DONG.geojson --layer dong --kind boundaries --project {at}" in line
    assert f"citytwin ingest BUILDINGS.shp --layer buildings --kind buildings --project {at}" in line
    assert "gu boundaries" not in line
    assert tiers(project) == ["gu", "gu"]

    # follow the named command for the dong layer: the gap closes, addresses reach dong level
    dong = tmp_path / "dong.geojson"
    gpd.GeoDataFrame({"EMD_CD": ["11140115"], "EMD_KOR_NM": ["태평로1가"]}, geometry=[box(126.97, 37.56, 126.99, 37.57)],
                     crs=4326).to_file(dong, driver="GeoJSON")
    code, out = run(*named_command(line, "dong boundaries", dong))
    assert code == 0, out
    code, out = run("geotag", records, "--layer", "complaints", "--project", project)
    line = missing_line(out)
    assert line.startswith("  warning: addresses are placed at most to dong level; ") and "dong boundaries" not in line
    assert tiers(project) == ["gu", "dong"]

    # and the named command for addressed buildings: nothing is missing, the road address reaches its building
    blds = tmp_path / "buildings.geojson"
    gpd.GeoDataFrame({"도로명주소": ["서울특별시 중구 세종대로 110"], "height": [45.0]}, geometry=[CITY_HALL_BLOCK],
                     crs=4326).to_file(blds, driver="GeoJSON")
    code, out = run(*named_command(line, "buildings or address points", blds))
    assert code == 0, out
    code, out = run("geotag", records, "--layer", "complaints", "--project", project)
    assert code == 0, out
    assert missing_line(out) == ""
    assert tiers(project) == ["building", "dong"]


def test_geotag_help_names_the_reference_layers_and_their_commands():
    code, out = run("geotag", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "without a tier's layer, addresses stop at the tier above" in text
    for cmd in ("citytwin ingest dong.json --layer dong --kind boundaries",
                "citytwin ingest blds.shp --layer buildings --kind buildings",
                "citytwin geotag addrs.csv --layer addrs --as-reference"):
        assert cmd in text
