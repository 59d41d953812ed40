"""A synthetic corpus full of personal data, through the whole pipeline up to served tiles and features.

records (RRNs, mobile numbers, e-mails, names) -> citytwin geotag (--layer and --out) ->
citytwin build (PMTiles) -> citytwin serve -> citytwin privacy-scan of the GeoPackage, the
PMTiles archive, the output file and the running server: 0 leaks. Then a planted value
(written straight into the store) is found, located and masked, with exit code 3.
"""
from __future__ import annotations

import gzip
import random
import re
from pathlib import Path

import geopandas as gpd
import httpx
import mapbox_vector_tile
import pandas as pd
import pytest
from click.testing import CliRunner
from pmtiles.reader import MemorySource, all_tiles
from shapely.geometry import Point, box

from api_server import serve
from pipelines.cli import main
from pipelines.project import init_project
from pipelines.store.gpkg import GeoPackageStore
from test_privacy import EMAIL_ANY, MOBILE_ANY, RRN_ANY, make_rrn

GU = {"중구": ("11140", box(126.96, 37.55, 127.02, 37.57)), "종로구": ("11110", box(126.96, 37.57, 127.02, 37.60))}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def corpus(n: int = 80) -> tuple[pd.DataFrame, list[str]]:
    """Records whose every text field may carry personal data; returns them and the secret values."""
    rng = random.Random(4)
    rows, secrets = [], []
    for i in range(n):
        name = rng.choice("김이박최정") + rng.choice(["민준", "서연", "도윤", "하은"])
        rrn = make_rrn(f"{rng.randint(60, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                       f"{rng.choice('12')}{rng.randint(0, 99999):05d}", valid=i % 4 != 0)
        phone = rng.choice(["010-{}-{}", "010{}{}", "+82 10 {} {}"]).format(rng.randint(1000, 9999),
                                                                         rng.randint(1000, 9999))
        email = f"{name.encode().hex()[:8]}{i}@mail.example.kr"
        gu = rng.choice(list(GU))
        rows.append({
            "시설명": rng.choice(["경복궁", "덕수궁", "광화문 광장", "서울광장"]) + f" {i}",
            "성명": name,
            "주민등록번호": rrn,
            "연락처": phone,
            "메모": f"{name} 님 ({rrn}) 연락 {phone}, 회신 {email}",
            "주소": f"서울특별시 {gu} 세종대로 {rng.randint(1, 300)}" + rng.choice(["", f" 담당 {email}"]),
            "lon": f"{126.97 + rng.random() * 0.04:.6f}",
            "lat": f"{(37.555 if gu == '중구' else 37.58) + rng.random() * 0.01:.6f}",
        })
        secrets += [rrn, rrn.replace("-", ""), phone, email]
    return pd.DataFrame(rows), secrets


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy_e2e")
    project = root / "p"
    init_project(project)
    gu = gpd.GeoDataFrame({"SIG_CD": [v[0] for v in GU.values()], "SIG_KOR_NM": list(GU)},
                          geometry=[v[1] for v in GU.values()], crs=4326)
    gu.to_file(root / "gu.geojson", driver="GeoJSON")
    assert run("ingest", root / "gu.geojson", "--layer", "gu", "--kind", "boundaries", "--project", project).exit_code == 0
    rows, secrets = corpus()
    src = root / "민원.csv"
    rows.to_csv(src, index=False, encoding="cp949")
    res = run("geotag", src, "--layer", "complaints", "--out", root / "complaints_out.gpkg", "--project", project)
    assert res.exit_code == 0, res.output
    res = run("build", "--project", project, "--skip-ingest")
    assert res.exit_code == 0, res.output
    return project, rows, secrets


def _tile_values(path: Path) -> list[str]:
    """Every property value of every tile, decoded here (not by the scanner)."""
    out = []
    data = path.read_bytes()
    for _, tile in all_tiles(MemorySource(data)):
        tile = gzip.decompress(tile) if tile[:2] == b"\x1f\x8b" else tile
        for layer in mapbox_vector_tile.decode(tile).values():
            out += [str(v) for feat in layer["features"] for v in feat["properties"].values()]
    return out


def test_artifacts_hold_no_personal_data_by_independent_check(project):
    project, rows, secrets = project
    gdf = GeoPackageStore(project / "build" / "citytwin.gpkg").read("complaints")
    assert len(gdf) == len(rows)
    assert {"geocode_tier", "name_ko", "name_en"} <= set(gdf.columns)
    assert gdf.name_en.str.match(r"^(Gyeongbokgung|Deoksugung|Gwanghwamun Gwangjang|Seoulgwangjang) \d+$").all()
    values = [str(v) for c in gdf.columns if c != "geometry" for v in gdf[c].tolist() if v is not None]
    values += _tile_values(project / "build" / "tiles" / "complaints.pmtiles")
    assert len(values) > 1000
    for pattern in (RRN_ANY, MOBILE_ANY, EMAIL_ANY):
        assert not [v for v in values if pattern.search(v)], pattern.pattern
    assert not [s for s in secrets if any(s in v for v in values)]


def test_scan_of_gpkg_pmtiles_out_and_server_finds_nothing(project):
    project, rows, _ = project
    build = project / "build"
    for target, what in ((build / "citytwin.gpkg", "features"), (build / "tiles" / "complaints.pmtiles", "tiles"),
                         (project.parent / "complaints_out.gpkg", "features"), (build, "files")):
        res = run("privacy-scan", target)
        assert res.exit_code == 0, res.output
        assert "no personal data found" in res.output and f" {what}" in res.output
    res = run("privacy-scan", build / "citytwin.gpkg")
    # every record and every gu was looked at
    assert re.search(rf"\b{len(rows) + len(GU)} features\b", res.output), res.output
    with serve(project) as url:
        items = httpx.get(f"{url}/collections/complaints/items", params={"f": "json", "limit": 1000}, timeout=30).json()
        assert items["numberReturned"] == len(rows)
        assert {"geocode_tier", "name_en"} <= set(items["features"][0]["properties"])
        res = run("privacy-scan", url)
        assert res.exit_code == 0, res.output
        m = re.search(r"(\d+) features", res.output)
        assert m and int(m.group(1)) == len(rows) + len(GU), res.output
        assert re.search(r"[1-9]\d* tiles", res.output), res.output


def test_planted_rrn_is_found_located_and_masked(project, tmp_path):
    project, _, _ = project
    rrn = make_rrn("880808", "123456")
    store = GeoPackageStore(project / "build" / "citytwin.gpkg")
    leak = gpd.GeoDataFrame({"id": ["x1", "x2"], "note": ["fine", f"번호 {rrn}"]},
                            geometry=[Point(126.98, 37.56), Point(126.99, 37.58)], crs=4326)
    store.publish("leak", leak)
    res = run("privacy-scan", project / "build" / "citytwin.gpkg")
    assert res.exit_code == 3, res.output
    assert "1 LEAK(S)" in res.output and "citytwin.gpkg/leak/x2 field 'note'" in res.output
    assert rrn not in res.output and rrn.replace("-", "") not in res.output and "88****-*******" in res.output
    assert "check digit ok" in res.output

    # the same value in a tile archive and behind a server
    (project / "citytwin.yaml").write_text((project / "citytwin.yaml").read_text(encoding="utf-8")
                                           + "  leak: {kind: pois}\n", encoding="utf-8")
    res = run("build", "--project", project, "--skip-ingest", "--layer", "leak")
    assert res.exit_code == 0, res.output
    res = run("privacy-scan", project / "build" / "tiles" / "leak.pmtiles")
    assert res.exit_code == 3 and "leak.pmtiles/" in res.output and rrn not in res.output, res.output
    with serve(project) as url:
        res = run("privacy-scan", url)
    assert res.exit_code == 3, res.output
    assert f"{url}/collections/leak/items/x2 field 'note'" in res.output and rrn not in res.output


def test_scan_errors_are_clear(tmp_path):
    res = run("privacy-scan", tmp_path / "nothing.gpkg")
    assert res.exit_code == 2 and "no such file" in res.output
    (tmp_path / "bad.pmtiles").write_bytes(b"not a pmtiles archive at all" * 10)
    res = run("privacy-scan", tmp_path / "bad.pmtiles")
    assert res.exit_code == 2 and "not a PMTiles" in res.output
    res = run("privacy-scan", "ftp://example.org/x")
    assert res.exit_code == 2 and "http(s)" in res.output


def test_scan_finds_identifier_columns_labelled_and_full_width_values(tmp_path):
    """What scrubbing withholds or masks is a leak in a published GeoPackage (planted here, counted by hand)."""
    typo = make_rrn("700399", "123456")  # impossible date, valid check digit
    rrn, phone = make_rrn("851231", "234567"), "010-2345-6789"
    fw = str.maketrans("0123456789-", "０１２３４５６７８９－")
    leak = gpd.GeoDataFrame({
        "id": ["a", "b", "c", "d"],
        "jumin": [typo, None, typo.replace("-", ""), "-"],             # identifier by name: 1 column hit
        "passport_no": [None, None, None, None],                       # by name, but empty: no hit
        "contact": [phone, "010-1111-2222", "010-3333-4444", "02-120-1234"],  # by content: 1 column hit + 3 values
        "note": [f"주민번호: {typo}", rrn.translate(fw), f"연락 {phone.translate(fw)}",  # 3 value hits
                 f"문서 {typo}"],                                        # no label, impossible date: no hit
    }, geometry=[Point(126.98, 37.56)] * 4, crs=4326)
    gpkg = tmp_path / "published.gpkg"
    leak.to_file(gpkg, layer="leak", driver="GPKG")
    res = run("privacy-scan", gpkg)
    assert res.exit_code == 3, res.output
    assert "8 LEAK(S)" in res.output, res.output
    assert "identifier column: published.gpkg/leak field 'jumin': its name marks resident registration numbers" \
        in res.output
    assert "identifier column: published.gpkg/leak field 'contact': 3 of its 4 values are mobile numbers" in res.output
    assert "passport_no" not in res.output
    note_hits = re.findall(r"(\w+)(?: \(check digit \w+\))?: published\.gpkg/leak/(\w) field 'note'", res.output)
    assert note_hits == [("rrn", "a"), ("rrn", "b"), ("mobile", "c")], res.output
    for secret in (typo, typo.replace("-", ""), rrn, rrn.translate(fw), phone, phone.translate(fw)):
        assert secret not in res.output


def test_scan_of_tiles_and_server_names_identifier_properties_once(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    typo = make_rrn("701350", "123456")  # month 13: no detector sees it without its column name
    refs = [make_rrn("701350", f"1{i:05d}") for i in range(3)] + ["R-1", "R-2"]  # 3 of 5 RRN-shaped, valid check digit
    layer = gpd.GeoDataFrame({"id": [f"f{i}" for i in range(5)], "jumin": [typo] * 5, "memo": ["ok"] * 5, "ref": refs},
                             geometry=[Point(126.98 + i / 1000, 37.56) for i in range(5)], crs=4326)
    GeoPackageStore(project / "build" / "citytwin.gpkg").publish("people", layer)
    (project / "citytwin.yaml").write_text((project / "citytwin.yaml").read_text(encoding="utf-8").replace(
        "layers: {}", "layers:\n  people: {kind: pois}"), encoding="utf-8")
    res = run("build", "--project", project, "--skip-ingest", "--layer", "people")
    assert res.exit_code == 0, res.output
    res = run("privacy-scan", project / "build" / "tiles" / "people.pmtiles")
    assert res.exit_code == 3, res.output
    assert "2 LEAK(S)" in res.output, res.output
    assert "identifier column: people.pmtiles/people field 'jumin': its name marks resident registration numbers" \
        in res.output
    # a feature is in one tile per zoom (or dropped where a tile is full): count what the tiles hold, decoded here
    seen = []
    for _, tile in all_tiles(MemorySource((project / "build" / "tiles" / "people.pmtiles").read_bytes())):
        tile = gzip.decompress(tile) if tile[:2] == b"\x1f\x8b" else tile
        seen += [f["properties"]["ref"] for f in mapbox_vector_tile.decode(tile)["people"]["features"]]
    planted = sum(v in refs[:3] for v in seen)
    assert 2 * planted > len(seen)
    assert f"identifier column: people.pmtiles/people field 'ref': {planted} of its {len(seen)} values are " \
        "resident registration numbers" in res.output
    with serve(project) as url:
        res = run("privacy-scan", url)
    assert res.exit_code == 3, res.output
    assert f"identifier column: {url}/collections/people field 'jumin'" in res.output
    assert f"identifier column: {url}/collections/people field 'ref': 3 of its 5 values are resident registration " \
        "numbers" in res.output
    assert f"identifier column: {url}/collections/people/tiles/WebMercatorQuad/people field 'jumin'" in res.output
    assert not [s for s in [typo, *refs[:3]] if s in res.output or s.replace("-", "") in res.output]
