"""citytwin geotag / photos end to end: real files in, a pois layer in the store out."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner
from shapely.geometry import box

from pipelines.catalog import load_catalog
from pipelines.cli import main
from pipelines.project import init_project
from pipelines.readers.records import read_records
from pipelines.store.gpkg import GeoPackageStore
from test_media import write_jpeg, write_mp4_xyz

SEOUL = Path(__file__).resolve().parents[2] / "shared" / "data" / "seoul"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_layer(project: Path, name: str) -> gpd.GeoDataFrame:
    store = GeoPackageStore(project / "build" / "citytwin.gpkg")
    try:
        return store.read(name)
    finally:
        store.close()


@pytest.mark.realdata
def test_kto_csv_geotagged_against_real_boundaries(tmp_path):
    if not SEOUL.is_dir():
        pytest.skip(f"real data folder {SEOUL} is absent (fresh clone without shared data)")
    project = tmp_path / "seoul"
    init_project(project)
    for layer, f in (("gu", "seoul_municipalities_geo.json"), ("legal_dong", "seoul_neighborhoods_geo_simple.json"),
                     ("admin_dong", "seoul_submunicipalities_geo_simple.json")):
        assert run("ingest", SEOUL / f, "--layer", layer, "--kind", "boundaries", "--project", project).exit_code == 0
    res = run("geotag", SEOUL / "kto_tourism_pois_a.csv", "--layer", "tourism", "--project", project)
    assert res.exit_code == 0, res.output
    print("\n" + res.output)

    gdf = read_layer(project, "tourism")
    assert len(gdf) == 145 and gdf["id"].is_unique
    tiers = Counter(gdf.geocode_tier)
    assert set(tiers) <= {"dong", "gu"} and tiers["dong"] >= 120
    assert (gdf.position_source == "record").all()
    src = pd.read_csv(SEOUL / "kto_tourism_pois_a.csv", dtype=str)
    # geometry is the record's own coordinates
    assert gdf.geometry.x.round(9).tolist() == src.lon.astype(float).round(9).tolist()

    # disagreement, independently: sjoin of the record points with the gu, vs the gu word in the address
    gu = gpd.read_file(SEOUL / "seoul_municipalities_geo.json")
    pts = gpd.GeoDataFrame({"want": [re.search(r"(\S+구)\s", a).group(1) for a in src.address]},
                           geometry=gpd.points_from_xy(src.lon.astype(float), src.lat.astype(float)), crs=4326)
    j = gpd.sjoin(pts, gu[["SIG_KOR_NM", "geometry"]], how="left", predicate="within")
    expected = int((j.SIG_KOR_NM.fillna("") != j.want).sum())
    assert int((gdf.coord_check == "disagrees").sum()) == expected > 0
    assert f"disagrees {expected}" in res.output

    audit = json.loads((project / "build" / "audit" / "tourism.geotag.json").read_text(encoding="utf-8"))
    assert audit["tiers"] == dict(tiers) and audit["published"] == 145
    cfg = load_catalog(project).layers["tourism"]
    assert cfg.kind == "pois" and cfg.records.address_columns == ["address"] and cfg.source == []


def _korean_rows():
    return pd.DataFrame({
        "시설명": ["서울특별시청", "덕수궁", "똠양꿍 식당"],  # 똠 exists only in CP949, not in strict EUC-KR
        "주소": ["서울특별시 중구 세종대로 110", "서울 중구 세종대로 99 (정동)", "서울시 중구 명동길 74 2층"],
        "경도": ["126.97797", "126.97510", "126.98574"],
        "위도": ["37.56654", "37.56586", "37.56365"],
    })


def test_cp949_csv_round_trip(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    rows = _korean_rows()
    src = tmp_path / "facilities.csv"
    src.write_bytes(rows.to_csv(index=False).encode("cp949"))
    with pytest.raises(UnicodeDecodeError):
        src.read_bytes().decode("utf-8")

    res = run("geotag", src, "--layer", "facilities", "--project", project)
    assert res.exit_code == 0, res.output
    gdf = read_layer(project, "facilities")
    assert gdf["시설명"].tolist() == rows["시설명"].tolist() and gdf["주소"].tolist() == rows["주소"].tolist()
    assert gdf.geometry.x.round(5).tolist() == rows["경도"].astype(float).tolist()

    assert run("geotag", src, "--layer", "facilities2", "--encoding", "euc-kr", "--project", project).exit_code == 0
    assert read_layer(project, "facilities2")["시설명"].tolist() == rows["시설명"].tolist()
    res = run("geotag", src, "--layer", "facilities3", "--encoding", "utf-8", "--project", project)
    assert res.exit_code == 2 and "not valid utf-8" in res.output and len(res.output.strip().splitlines()) == 1


def test_xlsx_and_json_read_like_csv(tmp_path):
    rows = _korean_rows()
    rows.to_excel(tmp_path / "r.xlsx", index=False)
    (tmp_path / "r.json").write_text(json.dumps(rows.to_dict(orient="records"), ensure_ascii=False), encoding="utf-8")
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"주소": a}, "geometry": {"type": "Point", "coordinates": [float(x), float(y)]}}
        for a, x, y in zip(rows["주소"], rows["경도"], rows["위도"])]}
    (tmp_path / "r.geojson").write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    for name in ("r.xlsx", "r.json"):
        rec = read_records(tmp_path / name)
        assert rec.table["주소"].tolist() == rows["주소"].tolist()
        assert (rec.columns.address, rec.columns.lon, rec.columns.lat) == (["주소"], "경도", "위도")
    rec = read_records(tmp_path / "r.geojson")
    assert rec.columns.lon == "lon" and rec.table["lat"].astype(float).tolist() == rows["위도"].astype(float).tolist()


def test_records_placed_from_boundaries_when_they_have_no_coordinates(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    gu = gpd.GeoDataFrame({"SIG_CD": ["11140"], "SIG_KOR_NM": ["중구"], "SIG_ENG_NM": ["Jung-gu"]},
                          geometry=[box(126.96, 37.55, 127.02, 37.57)], crs=4326)
    gu.to_file(tmp_path / "gu.geojson", driver="GeoJSON")
    assert run("ingest", tmp_path / "gu.geojson", "--layer", "gu", "--kind", "boundaries", "--project", project).exit_code == 0
    src = tmp_path / "r.csv"
    pd.DataFrame({"address": ["서울 중구 세종대로 110", "부산 어딘가", "서울특별시 중구"]}).to_csv(src, index=False)
    res = run("geotag", src, "--layer", "r", "--project", project)
    assert res.exit_code == 0, res.output
    gdf = read_layer(project, "r")
    assert gdf["id"].tolist() == ["1", "3"] and gdf.geocode_tier.tolist() == ["gu", "gu"]
    assert gdf.geometry.within(gu.geometry.iloc[0]).all() and (gdf.position_source == "geocoded").all()
    assert "not placed (1): 2" in res.output


def test_photos_command_publishes_positions_and_reports_the_rest(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    media = tmp_path / "media"
    (media / "day2").mkdir(parents=True)
    write_jpeg(media / "a.jpg", 37.579617, 126.977041, direction=90.0)
    write_mp4_xyz(media / "day2" / "b.mp4", "+37.5512+126.9882+243.000/")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(media / "no_gps.jpg", "JPEG")
    res = run("photos", media, "--layer", "photos", "--project", project)
    assert res.exit_code == 0, res.output
    gdf = read_layer(project, "photos").sort_values("file")
    assert gdf.file.tolist() == ["a.jpg", "day2/b.mp4"]
    assert gdf.geometry.y.round(6).tolist() == [37.579617, 37.5512]
    assert gdf.direction_deg.iloc[0] == 90.0 and gdf.media_type.tolist() == ["photo", "video"]
    assert "not placed (1): no_gps.jpg (no EXIF GPS tags)" in res.output


def test_cli_errors_are_one_line_exit_2(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    res = run("geotag", tmp_path / "missing.csv", "--layer", "x", "--project", project)
    assert res.exit_code == 2 and "no such file" in res.output
    src = tmp_path / "r.csv"
    pd.DataFrame({"addr": ["서울 중구"], "lon": ["127"], "lat": ["37.5"]}).to_csv(src, index=False)
    res = run("geotag", src, "--layer", "x", "--address-column", "주소", "--project", project)
    assert res.exit_code == 2 and "address column(s) 주소 not in the file" in res.output
    res = run("geotag", src, "--layer", "Bad-Name", "--project", project)
    assert res.exit_code == 2 and "not allowed" in res.output
    res = run("photos", tmp_path / "nowhere", "--layer", "x", "--project", project)
    assert res.exit_code == 2 and "not a folder" in res.output
