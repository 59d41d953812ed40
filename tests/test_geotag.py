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
from shared_data import SHARED_DATA
from test_media import write_jpeg, write_mp4_xyz

SEOUL = SHARED_DATA / "seoul"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_layer(project: Path, name: str) -> gpd.GeoDataFrame:
    store = GeoPackageStore(project / "build" / "citytwin.gpkg")
    try:
        return store.read(name)
    finally:
        store.close()


@pytest.mark.realdata("seoul")
def test_kto_csv_geotagged_against_real_boundaries(tmp_path):
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


def test_bad_input_each_gets_a_clear_error_or_a_reported_skip(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    # unreadable encoding: bytes that are neither UTF-8 nor CP949 (0xFF is no lead byte in either)
    bad = tmp_path / "bad.csv"
    bad.write_bytes("주소,lon,lat\n".encode() + b"\xff\xfe\xff,127,37.5\n")
    res = run("geotag", bad, "--layer", "x", "--project", project)
    assert res.exit_code == 2 and "neither UTF-8 nor CP949" in res.output and "--encoding" in res.output
    # empty file, and a header without rows
    (tmp_path / "empty.csv").write_bytes(b"")
    res = run("geotag", tmp_path / "empty.csv", "--layer", "x", "--project", project)
    assert res.exit_code == 2 and "the file is empty" in res.output
    (tmp_path / "header.csv").write_text("주소,lon,lat\n", encoding="utf-8")
    res = run("geotag", tmp_path / "header.csv", "--layer", "x", "--project", project)
    assert res.exit_code == 2 and "has no records" in res.output
    # no address column when placing by address alone
    src = tmp_path / "xy.csv"
    pd.DataFrame({"memo": ["a"], "lon": ["127"], "lat": ["37.5"]}).to_csv(src, index=False)
    res = run("geotag", src, "--out", tmp_path / "o.gpkg", "--ignore-coordinates", "--project", project)
    assert res.exit_code == 2 and "no address column found" in res.output
    res = run("geotag", src, "--project", project)
    assert res.exit_code == 2 and "--layer" in res.output and "--out" in res.output
    # nothing was published by any of these
    gpkg = project / "build" / "citytwin.gpkg"
    assert not gpkg.exists() or "x" not in GeoPackageStore(gpkg).layers()
    assert not (tmp_path / "o.gpkg").exists()

    # a corrupt JPEG (and a truncated one) next to a good one: reported, the good one published
    media = tmp_path / "media"
    media.mkdir()
    write_jpeg(media / "good.jpg", 37.5796, 126.9770)
    (media / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
    (media / "truncated.jpg").write_bytes((media / "good.jpg").read_bytes()[:40])
    res = run("photos", media, "--layer", "photos", "--project", project)
    assert res.exit_code == 0, res.output
    assert "not placed (2)" in res.output
    assert "corrupt.jpg (not a readable JPEG" in res.output and "truncated.jpg (" in res.output
    assert read_layer(project, "photos").file.tolist() == ["good.jpg"]


def test_out_keeps_every_row_masks_free_text_and_reports(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    gu = gpd.GeoDataFrame({"SIG_CD": ["11140", "11110"], "SIG_KOR_NM": ["중구", "종로구"]},
                          geometry=[box(126.96, 37.55, 127.02, 37.57), box(126.96, 37.57, 127.02, 37.60)], crs=4326)
    gu.to_file(tmp_path / "gu.geojson", driver="GeoJSON")
    assert run("ingest", tmp_path / "gu.geojson", "--layer", "gu", "--kind", "boundaries",
               "--project", project).exit_code == 0
    rows = pd.DataFrame({
        "name": ["덕수궁", "종묘", "어딘가", "보신각"],
        "name_ja": ["徳寿宮", None, None, None],
        "address": ["서울 중구 세종대로 99", "서울 종로구 종로 157", "부산 어딘가", "서울 종로구 종로 54"],
        "memo": ["담당 010-1234-5678", "회신 a.b@example.com", "없음", "확인"],
        "lon": ["126.975", "126.994", "", "126.990"],
        "lat": ["37.566", "37.574", "", "37.560"],  # the last one lies in 중구, its address says 종로구
    })
    src = tmp_path / "r.csv"
    rows.to_csv(src, index=False)
    out = tmp_path / "out" / "result.gpkg"
    res = run("geotag", src, "--address-column", "address", "--lon-column", "lon", "--lat-column", "lat",
              "--out", out, "--project", project)
    assert res.exit_code == 0, res.output
    import pyogrio

    got = pyogrio.read_dataframe(out)
    assert len(got) == 4 and got["id"].tolist() == ["1", "2", "3", "4"]
    assert got.geometry.isna().tolist() == [False, False, True, False]  # kept, unplaced
    assert got.memo.tolist() == ["담당 [mobile]", "회신 [email]", "없음", "확인"]
    assert got.geocode_tier.tolist() == ["gu", "gu", "none", "gu"]
    assert got.name_en.tolist() == ["Deoksugung", "Jongmyo", "Eodinga", "Bosingak"]
    assert got.name_ja.tolist()[0] == "徳寿宮" and got.name_en_source.unique().tolist() == ["romanized"]
    assert got.coord_check.tolist() == ["agrees", "agrees", "unchecked", "disagrees"]
    unmatched = pd.read_csv(tmp_path / "out" / "result.unmatched.csv", dtype=str)
    assert unmatched["id"].tolist() == ["3"] and unmatched.address.tolist() == ["부산 어딘가"]
    dis = pd.read_csv(tmp_path / "out" / "result.disagreements.csv", dtype=str)
    assert dis["id"].tolist() == ["4"] and dis.address_gu.tolist() == ["종로구"] and dis.point_gu.tolist() == ["중구"]
    assert "[mobile]" not in "".join(dis.to_string()) and "010-1234" not in unmatched.to_string()
    assert "gu 3, none 1" in res.output and "result.unmatched.csv" in res.output
    # no store layer was written: --out alone writes only the file
    gpkg = project / "build" / "citytwin.gpkg"
    assert GeoPackageStore(gpkg).layers() == ["gu"]
