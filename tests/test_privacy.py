"""Personal data: RRN checksum, detectors, and a published layer that holds none of it."""
from __future__ import annotations

import json
import random
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.project import init_project
from pipelines.steps.privacy import PrivacyPolicy, find_personal, rrn_checksum_ok, scrub
from pipelines.store.gpkg import GeoPackageStore

WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)


def make_rrn(front: str, back6: str, valid: bool = True) -> str:
    """An RRN with a correct (or deliberately wrong) check digit: 11 - (weighted sum mod 11), mod 10."""
    digits = front + back6
    check = (11 - sum(int(d) * w for d, w in zip(digits, WEIGHTS)) % 11) % 10
    if not valid:
        check = (check + 1) % 10
    return f"{front}-{back6}{check}"


def test_rrn_checksum_valid_and_invalid():
    good = make_rrn("900101", "123456")
    assert rrn_checksum_ok(good) and rrn_checksum_ok(good.replace("-", ""))
    assert not rrn_checksum_ok(make_rrn("900101", "123456", valid=False))
    assert not rrn_checksum_ok("900101-123456")  # 12 digits
    rng = random.Random(7)
    for _ in range(200):
        front = f"{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        back = f"{rng.choice('1234')}{rng.randint(0, 99999):05d}"
        assert rrn_checksum_ok(make_rrn(front, back))
        assert not rrn_checksum_ok(make_rrn(front, back, valid=False))


def test_detectors_find_and_skip_the_right_things():
    rrn = make_rrn("851231", "234567")
    text = f"신청인 {rrn}, 연락처 010-1234-5678 / +82 10 9876 5432, hong.gd@example.co.kr"
    kinds = [(f.kind, text[f.start:f.end], f.verified) for f in find_personal(text)]
    assert kinds == [("rrn", rrn, True), ("mobile", "010-1234-5678", True), ("mobile", "+82 10 9876 5432", True),
                     ("email", "hong.gd@example.co.kr", True)]
    bad = make_rrn("851231", "234567", valid=False)
    assert [(f.kind, f.verified) for f in find_personal(f"번호 {bad}")] == [("rrn", False)]
    # not personal: a landline, a date-less 13-digit number, coordinates, a building number
    for text in ("02-120-1234", "991399-1234567", "127.0117623417", "37.5263358907", "세종대로 110", "20180101"):
        assert find_personal(text) == [], text


def test_scrub_actions_and_whitelist():
    table = pd.DataFrame({"memo": ["call 010-2222-3333", "none"], "성명": ["김철수", ""], "secret": ["x", "y"]})
    ids = pd.Series(["a", "b"])
    out, audit = scrub(table, PrivacyPolicy(publish=["memo", "성명"]), "t", ids=ids)
    assert list(out.columns) == ["memo", "성명"] and audit.fields_dropped == ["secret"]
    assert out.memo.tolist() == ["call [mobile]", "none"] and out["성명"].tolist() == ["[name]", ""]
    assert audit.counts == {"memo": {"mobile": 1}, "성명": {"name": 1}} and audit.records["memo"]["mobile"] == ["a"]
    hashed, _ = scrub(table, PrivacyPolicy(action="hash"), "t", ids=ids)
    assert re.fullmatch(r"call \[mobile:[g-pa-f]{16}\]", hashed.memo[0])
    dropped, _ = scrub(table, PrivacyPolicy(action="drop"), "t", ids=ids)
    assert dropped.memo.tolist() == [None, "none"]


# Independent of the code under test: plain regexes for what must never be published.
RRN_ANY = re.compile(r"\d{6}\s*-?\s*[1-8]\d{6}")
MOBILE_ANY = re.compile(r"01[016789]\D{0,2}\d{3,4}\D{0,2}\d{4}")
EMAIL_ANY = re.compile(r"[^\s@]+@[^\s@]+\.[a-z]{2,}", re.I)


def _records(n: int = 60):
    rng = random.Random(2015)
    surnames, given = "김이박최정강조윤장임", ["민준", "서연", "도윤", "하은", "지호", "수아"]
    rows, expected = [], {"rrn": 0, "mobile": 0, "email": 0, "name": 0}
    secrets_ = []
    for i in range(n):
        name = rng.choice(surnames) + rng.choice(given)
        rrn = make_rrn(f"{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                       f"{rng.choice('12')}{rng.randint(0, 99999):05d}", valid=i % 5 != 0)
        phone = f"010-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
        email = f"user{i}@example.com"
        memo = rng.choice([f"민원인 연락처 {phone}", f"회신 {email}", f"주민번호 {rrn} 확인", "현장 확인 완료"])
        expected["mobile"] += memo.startswith("민원인")
        expected["email"] += memo.startswith("회신")
        expected["rrn"] += memo.startswith("주민번호")
        expected["name"] += 1
        gu = rng.choice(["중구", "종로구", "마포구"])
        rows.append({"접수번호": f"A{i:04d}", "성명": name, "주민등록번호": rrn, "휴대전화": phone, "memo": memo,
                     "주소": f"서울특별시 {gu} 세종대로 {rng.randint(1, 200)}", "lon": "126.978", "lat": "37.566"})
        secrets_ += [name, rrn, rrn.replace("-", ""), phone, phone.replace("-", ""), email]
    return rows, expected, secrets_


def test_published_layer_holds_no_personal_data(tmp_path):
    rows, expected, secrets_ = _records()
    project = tmp_path / "p"
    init_project(project)
    (project / "citytwin.yaml").write_text((project / "citytwin.yaml").read_text(encoding="utf-8").replace(
        "layers: {}", """layers:
  complaints:
    kind: pois
    records: {address_columns: [주소], id_column: 접수번호}
    privacy:
      publish: [접수번호, 성명, memo, 주소]
      person_name_fields: [성명]
      action: mask
"""), encoding="utf-8")
    src = tmp_path / "complaints.csv"
    pd.DataFrame(rows).to_csv(src, index=False, encoding="cp949")
    res = CliRunner().invoke(main, ["geotag", str(src), "--layer", "complaints", "--project", str(project)])
    assert res.exit_code == 0, res.output

    store = GeoPackageStore(project / "build" / "citytwin.gpkg")
    gdf = store.read("complaints")
    store.close()
    assert len(gdf) == len(rows)
    assert "주민등록번호" not in gdf.columns and "휴대전화" not in gdf.columns  # not whitelisted
    values = [str(v) for c in gdf.columns if c != "geometry" for v in gdf[c].tolist() if v is not None]
    assert not any(find_personal(v) for v in values)
    for pattern in (RRN_ANY, MOBILE_ANY, EMAIL_ANY):
        assert not [v for v in values if pattern.search(v)], pattern.pattern
    blob = "\n".join(values)
    assert not [s for s in secrets_ if s in blob]
    assert (gdf["성명"] == "[name]").all()

    audit = json.loads((project / "build" / "audit" / "complaints.geotag.json").read_text(encoding="utf-8"))
    priv = audit["privacy"]
    assert priv["totals"] == expected
    assert sorted(priv["fields_dropped"]) == ["lat", "lon", "주민등록번호", "휴대전화"]
    assert priv["rrn_unverified"] == sum(1 for r in rows if r["memo"].startswith("주민번호")
                                         and not rrn_checksum_ok(r["memo"].split()[1])) > 0
    assert len(priv["records"]["memo"]["mobile"]) == expected["mobile"]
    # the audit names records, never the values
    audit_text = json.dumps(audit, ensure_ascii=False)
    assert not [s for s in secrets_ if s in audit_text]


def test_id_column_with_personal_data_is_refused(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    src = tmp_path / "r.csv"
    pd.DataFrame({"rrn": [make_rrn("900101", "123456")], "주소": ["서울 중구 세종대로 110"],
                  "lon": ["126.97"], "lat": ["37.56"]}).to_csv(src, index=False)
    res = CliRunner().invoke(main, ["geotag", str(src), "--layer", "r", "--project", str(project), "--id-column", "rrn"])
    assert res.exit_code == 2 and "holds personal data" in res.output
    assert not (project / "build" / "citytwin.gpkg").exists() or "r" not in GeoPackageStore(
        project / "build" / "citytwin.gpkg").layers()
