"""Vector layers published by ``citytwin ingest`` and ``citytwin build`` carry no personal data.

The same rules as geotag records, through the real CLI: identifier columns withheld whole
(by name or content), RRNs next to a label and mobile numbers masked in free text (also
written full-width), person-name columns masked, the catalog's privacy whitelist honoured,
an id field of personal data refused, and the audit in the report and under build/audit.
Expectations are the secret values themselves, looked for in what was published.
"""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import geopandas as gpd
import pyogrio
import yaml
from click.testing import CliRunner
from shapely.geometry import Point

from pipelines.cli import main
from test_privacy import make_rrn

RRN = make_rrn("700313", "123456")
LABELLED = make_rrn("851224", "234567")
MOBILES = ["010-1234-5678", "010 9876 5432", "+82 10 2345 6789"]
FULL_WIDTH_MOBILE = "０１０－２２２２－３３３３"


def run(*args) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.output


def leaky_layer(path: Path) -> list[str]:
    """Four shops whose attributes carry personal data; returns the secret values."""
    gdf = gpd.GeoDataFrame({
        "name": ["가게 A", "가게 B", "가게 C", "가게 D"],
        "주민번호": [RRN, "", make_rrn("800101", "234567"), None],
        "소유자 연락처": [*MOBILES, "02-123-4567"],
        "note": [f"주민번호: {LABELLED} 확인", "특이사항 없음", f"연락 {FULL_WIDTH_MOBILE}", "2층 1203호"],
        "소유자": ["김철수", "이영희", None, "박민수"],
        "floors": [3, 5, 2, 7],
    }, geometry=[Point(126.97 + i / 100, 37.56) for i in range(4)], crs=4326)
    gdf.to_file(path, driver="GeoJSON")
    return [RRN, RRN.replace("-", ""), LABELLED, LABELLED.replace("-", ""), *MOBILES,
            unicodedata.normalize("NFKC", FULL_WIDTH_MOBILE), FULL_WIDTH_MOBILE, "김철수", "이영희", "박민수"]


def published(project: Path, layer: str) -> gpd.GeoDataFrame:
    return pyogrio.read_dataframe(project / "build" / "citytwin.gpkg", layer=layer)


def assert_no_secret(gdf: gpd.GeoDataFrame, secrets: list[str]) -> None:
    text = gdf.drop(columns="geometry").astype(str).to_csv()
    assert not [s for s in secrets if s in text], text


def test_ingest_withholds_masks_and_audits(tmp_path: Path):
    project = tmp_path / "proj"
    assert run("init", project)[0] == 0
    secrets = leaky_layer(project / "shops.geojson")
    code, out = run("ingest", project / "shops.geojson", "--layer", "shops", "--kind", "pois", "--project", project)
    assert code == 0, out
    gdf = published(project, "shops")
    assert_no_secret(gdf, secrets)
    assert list(gdf.columns) == ["id", "name", "note", "소유자", "floors", "geometry"]
    assert gdf["note"].tolist() == ["주민번호: [rrn] 확인", "특이사항 없음", "연락 [mobile]", "2층 1203호"]
    assert gdf["소유자"].tolist()[:2] == ["[name]", "[name]"] and gdf["소유자"].tolist()[3] == "[name]"
    assert gdf["floors"].tolist() == [3, 5, 2, 7]
    assert ("privacy (mask): rrn 1, mobile 1, email 0, name 3; withheld as personal identifiers: "
            "주민번호 (its name marks resident registration numbers), "
            "소유자 연락처 (3 of its 4 values are mobile numbers)") in out
    audit_path = project / "build" / "audit" / "shops.ingest.json"
    assert f"audit: {audit_path}" in out
    audit = json.loads(audit_path.read_text(encoding="utf-8"))
    assert audit["counts"] == {"note": {"rrn": 1, "mobile": 1}, "소유자": {"name": 3}}
    assert audit["records"]["note"]["rrn"] == [gdf["id"][0]] and audit["records"]["note"]["mobile"] == [gdf["id"][2]]
    assert not [s for s in secrets if s in audit_path.read_text(encoding="utf-8")]
    code, out = run("privacy-scan", project / "build" / "citytwin.gpkg")
    assert code == 0 and "no personal data found" in out, out


def test_build_honours_the_catalog_whitelist_and_publishes_clean_tiles(tmp_path: Path):
    project = tmp_path / "proj"
    assert run("init", project)[0] == 0
    secrets = leaky_layer(project / "shops.geojson")
    catalog = yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))
    catalog["layers"] = {"shops": {"kind": "pois", "source": "shops.geojson", "minzoom": 12, "maxzoom": 14,
                                   "privacy": {"publish": ["name", "note", "주민번호"]}}}
    (project / "citytwin.yaml").write_text(yaml.safe_dump(catalog, allow_unicode=True), encoding="utf-8")
    code, out = run("build", "--project", project)
    assert code == 0, out
    gdf = published(project, "shops")
    assert_no_secret(gdf, secrets)
    # whitelisted or not, an identifier column is never published
    assert list(gdf.columns) == ["id", "name", "note", "geometry"]
    assert "fields not published: 소유자 연락처, 소유자, floors" in out
    assert "withheld as personal identifiers: 주민번호 (its name marks resident registration numbers)" in out
    code, out = run("privacy-scan", project / "build" / "tiles" / "shops.pmtiles")
    assert code == 0 and "no personal data found" in out, out


def test_an_id_field_of_personal_data_is_refused(tmp_path: Path):
    project = tmp_path / "proj"
    assert run("init", project)[0] == 0
    leaky_layer(project / "shops.geojson")
    catalog = yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))
    catalog["layers"] = {"shops": {"kind": "pois", "source": "shops.geojson", "id_field": "소유자 연락처"}}
    (project / "citytwin.yaml").write_text(yaml.safe_dump(catalog, allow_unicode=True), encoding="utf-8")
    code, out = run("build", "--project", project)
    assert code == 2, out
    assert out.strip().splitlines()[-1] == (
        "error: layer 'shops': id column '소유자 연락처' holds personal data (3 of its 4 values are mobile "
        "numbers); name another id_field or none (ids are then made from the features)")
    assert not (project / "build" / "citytwin.gpkg").exists() or "shops" not in [
        n for n, _ in pyogrio.list_layers(project / "build" / "citytwin.gpkg")]


def test_the_screen_lets_through_every_value_a_detector_would_catch():
    """The array screen in front of the detectors may pass too much, never too little."""
    import random

    from pipelines.steps.privacy import candidates, find_personal

    rng = random.Random(14)
    parts = ["010", "011", "+82", "82", "1", "0", "-", "－", " ", "\u3000", ".", "@", "a", "주민번호", ": ",
             "７", "9", "12", "1234", "5678", "700313", "1234567", "*", "\n", "서울 ", "x.kr", "٣", "\x00"]
    values = ["".join(rng.choice(parts) for _ in range(rng.randint(1, 9))) for _ in range(20_000)]
    values += [RRN, LABELLED.replace("-", ""), f"주민등록증 {RRN[:8]}******", "0101234５６７８", "a@b.co", 7003131234567]
    present, maybe = candidates(values)
    caught = [i for i, v in enumerate(values) if find_personal(str(v))]
    assert len(caught) > 300
    assert set(caught) <= set(maybe.tolist())
    assert set(present.tolist()) == {i for i, v in enumerate(values) if str(v).strip()}
