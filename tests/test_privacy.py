"""Personal data: RRN checksum, detectors, and a published layer that holds none of it."""
from __future__ import annotations

import json
import random
import re
import sqlite3
import unicodedata

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.project import init_project
from pipelines.readers.records import read_records
from pipelines.steps.privacy import PrivacyPolicy, find_personal, rrn_checksum_ok, scrub, withhold_reason
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
    secrets_, planted_bad_check = [], []  # the RRNs planted with a wrong check digit, as the memo holds them
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
        if memo.startswith("주민번호") and i % 5 == 0:
            planted_bad_check.append(rrn)
        expected["name"] += 1
        gu = rng.choice(["중구", "종로구", "마포구"])
        rows.append({"접수번호": f"A{i:04d}", "성명": name, "주민등록번호": rrn, "휴대전화": phone, "memo": memo,
                     "주소": f"서울특별시 {gu} 세종대로 {rng.randint(1, 200)}", "lon": "126.978", "lat": "37.566"})
        secrets_ += [name, rrn, rrn.replace("-", ""), phone, phone.replace("-", ""), email]
    return rows, expected, secrets_, planted_bad_check


def test_published_layer_holds_no_personal_data(tmp_path):
    rows, expected, secrets_, planted_bad_check = _records()
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
    assert priv["rrn_unverified"] == len(planted_bad_check) > 0
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



# --- per value, not per column: labels, full-width text, identifier columns ----------------

FULL_WIDTH = str.maketrans("0123456789-@.+ ", "０１２３４５６７８９－＠．＋\u3000")


def full_width(text: str) -> str:
    return text.translate(FULL_WIDTH)


def impossible_date_rrn(valid_check: bool = True) -> str:
    """13 digits in RRN shape whose date (70-03-99) cannot exist; the check digit holds unless told."""
    return make_rrn("700399", "123456", valid=valid_check)


def test_rrn_next_to_a_label_is_found_whatever_its_date():
    bad_date, bad_both = impossible_date_rrn(), impossible_date_rrn(valid_check=False)
    cases = [
        (f"주민번호: {bad_date}", bad_date),
        (f"주민등록번호 {bad_date.replace('-', '')}", bad_date.replace("-", "")),
        (f"주민 등록 번호는 {bad_both} 입니다", bad_both),
        (f"외국인등록번호({bad_both})", bad_both),
        (f"주민등록증 사본: {bad_date}", bad_date),
        (f"주민번호:\n{bad_date}", bad_date),  # on the next line of a multi-line cell
        ("주민번호 700313-1******", "700313-1******"),  # starred, still a birth date and sex
        ("RRN: 700313-*******", "700313-*******"),
        (f"RRN #{bad_date}", bad_date),
        (f"jumin: {bad_date}", bad_date),
        (f"Resident registration no. {bad_both}", bad_both),
        (f"주민번호 {full_width(bad_date)}", bad_date),  # full-width digits and dash
    ]
    for text, number in cases:
        found = find_personal(text)
        assert [(f.kind, unicodedata.normalize("NFKC", text)[f.start:f.end]) for f in found] == [("rrn", number)], text
        assert found[0].verified == rrn_checksum_ok(number)
    # without a label the date still decides: a typo'd number in plain text is not taken as an RRN
    assert find_personal(f"접수 {bad_date} 처리") == []
    # the label must be next to the number, not anywhere before it
    assert find_personal(f"주민번호 미기재, 민원 {'3' * 4} 건, 문서 {bad_date}") == []


def test_full_width_text_is_normalised_before_detection():
    rrn, phone, mail = make_rrn("700313", "123456"), "010-2345-6789", "hong@example.com"
    text = f"신청 {full_width(rrn)} 연락 {full_width(phone)} 메일 {full_width(mail)}"
    norm = unicodedata.normalize("NFKC", text)
    assert [(f.kind, norm[f.start:f.end]) for f in find_personal(text)] == [
        ("rrn", rrn), ("mobile", phone), ("email", mail)]


IDENTIFIER_COLUMNS = ["주민등록번호", "주민번호", "주민 등록 번호", "신청인_주민번호", "jumin", "jumin_no", "RRN", "applicantRrn",
                      "Resident Registration Number", "외국인등록번호", "외국인 번호", "여권번호", "passport_no",
                      "운전면허번호", "driver's license", "ＲＲＮ"]
ORDINARY_COLUMNS = ["주소", "전화번호", "접수번호", "사업자등록번호", "법인등록번호", "등록번호", "시설명", "memo", "currency",
                    "transit_route", "jumping", "주민센터", "주민센터_전화"]


def test_identifier_columns_are_known_by_name():
    for name in IDENTIFIER_COLUMNS:
        assert withhold_reason(name, []) is not None, name
        assert withhold_reason(name, []).startswith("its name marks "), name
    for name in ORDINARY_COLUMNS:
        assert withhold_reason(name, ["a", "b"]) is None, name


def test_identifier_columns_are_known_by_content():
    phones = [f"010-{1000 + i}-{2000 + i}" for i in range(3)]
    assert withhold_reason("연락", phones + ["02-120-1234", None, ""]) == "3 of its 4 values are mobile numbers"
    assert withhold_reason("연락", phones[:2] + ["02-120-1234", "없음"]) is None  # half is not most
    assert withhold_reason("x", ["a@example.com", full_width("b@example.org"), "-"]) == \
        "2 of its 3 values are e-mail addresses"
    # RRN-shaped with an impossible date but a valid check digit counts too
    assert withhold_reason("번호", [impossible_date_rrn(), make_rrn("851231", "234567"), "A-1"]) == \
        "2 of its 3 values are resident registration numbers"
    # free text that mentions a phone number is not a column of phone numbers
    assert withhold_reason("memo", [f"담당 {p}" for p in phones]) is None


def test_scrub_withholds_identifier_columns_even_when_whitelisted():
    table = pd.DataFrame({"주민번호": [impossible_date_rrn(), None], "contact": ["010-1111-2222", "010-3333-4444"],
                          "memo": [f"주민번호: {impossible_date_rrn(False)}", "ok"]})
    out, audit = scrub(table, PrivacyPolicy(publish=["주민번호", "contact", "memo"]), "t", ids=pd.Series(["a", "b"]))
    assert list(out.columns) == ["memo"]
    assert audit.fields_withheld == {"주민번호": "its name marks resident registration numbers",
                                     "contact": "2 of its 2 values are mobile numbers"}
    assert out.memo.tolist() == ["주민번호: [rrn]", "ok"] and audit.rrn_unverified == 1
    assert "withheld as personal identifiers: 주민번호 (its name marks" in audit.summary()


def _planted_records(n: int = 40) -> tuple[pd.DataFrame, dict]:
    """Records with personal data planted on purpose; returns them and the independent list of what was planted."""
    rng = random.Random(14)
    name_cols = {"주민등록번호": "rrn", "주민 등록 번호": "rrn", "jumin": "rrn", "Resident Registration Number": "rrn",
                 "외국인등록번호": "rrn", "여권번호": "passport", "운전면허번호": "licence"}
    rows, secrets_, memo_rrn, kept = [], [], 0, []
    mobiles = emails = rrn_like = 0
    for i in range(n):
        row = {"접수번호": f"B{i:03d}", "시설명": f"민원 {i}", "주소": "서울특별시 중구 세종대로 110",
               "lon": "126.978", "lat": "37.566", "전화번호": "02-120-1234"}
        for col, what in name_cols.items():
            if what == "rrn":  # typos and test data as often as real-looking numbers
                front = rng.choice(["700399", "701350", f"{rng.randint(50, 99)}{rng.randint(1, 12):02d}15"])
                value = make_rrn(front, f"{rng.choice('1256')}{rng.randint(0, 99999):05d}", valid=rng.random() < .7)
                value = full_width(value) if i % 3 == 0 else value
            elif what == "passport":
                value = f"M{rng.randint(10**7, 10**8 - 1)}"
            else:
                value = f"11-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(10, 99)}"
            row[col] = value
            secrets_.append(value)
        # innocuous names, personal content: most values are whole mobile numbers / e-mails / RRNs
        phone = f"010-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
        row["연락"] = phone if i % 4 else "없음"
        mobiles += bool(i % 4)
        mail = f"user{i}@example.kr"
        row["회신"] = full_width(mail) if i % 5 == 0 else mail
        emails += 1  # every value, full-width or not
        rrn = make_rrn(f"{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}", f"{rng.choice('12')}00001")
        row["참조"] = rrn if i % 3 else f"R-{i}"
        rrn_like += bool(i % 3)
        secrets_ += [phone, mail, rrn]
        # free text: labelled typos, full-width forms; every fourth row one unlabelled typo that stays
        labelled = make_rrn("700399", f"{i % 2 + 1}{i:05d}", valid=i % 2 == 0)  # impossible date
        form = i % 4
        if form == 0:
            row["memo"] = f"주민번호: {labelled} 확인"
        elif form == 1:
            row["memo"] = f"주민등록번호 {labelled.replace('-', '')} 본인 방문"
        elif form == 2:
            row["memo"] = f"주민번호 {full_width(labelled)}"
        else:
            unlabelled = make_rrn("701340", f"{i + 100000:06d}")  # month 13: no label, no RRN
            row["memo"] = f"문서번호 {unlabelled}"
            kept.append(unlabelled)
            labelled = None
        if labelled:
            memo_rrn += 1
            secrets_.append(labelled)
        rows.append(row)
    plan = {"name_columns": sorted(name_cols), "content": {"연락": (mobiles, n), "회신": (emails, n), "참조": (rrn_like, n)},
            "memo_rrn": memo_rrn, "secrets": secrets_, "kept": kept}
    return pd.DataFrame(rows), plan


def test_geotag_publishes_no_identifier_column_and_no_labelled_or_full_width_rrn(tmp_path):
    table, plan = _planted_records()
    project = tmp_path / "p"
    init_project(project)
    src = tmp_path / "records.csv"
    table.to_csv(src, index=False, encoding="utf-8")
    out = tmp_path / "out.gpkg"
    res = CliRunner().invoke(main, ["geotag", str(src), "--layer", "records", "--out", str(out), "--project", str(project),
                                    "--id-column", "접수번호"])
    assert res.exit_code == 0, res.output
    assert "withheld as personal identifiers: " in res.output

    withheld = plan["name_columns"] + sorted(plan["content"])
    for gpkg, layer in ((project / "build" / "citytwin.gpkg", "records"), (out, "records")):
        con = sqlite3.connect(gpkg)
        try:
            columns = [r[1] for r in con.execute(f'PRAGMA table_info("{layer}")')]
            rows = con.execute(f'SELECT * FROM "{layer}"').fetchall()
        finally:
            con.close()
        assert len(rows) == len(table)
        assert not set(withheld) & set(columns), columns
        assert {"시설명", "memo", "전화번호", "주소"} <= set(columns)
        values = [unicodedata.normalize("NFKC", v) for r in rows for v in r if isinstance(v, str)]
        blob = "\n".join(values)
        leaked = [s for s in plan["secrets"] if unicodedata.normalize("NFKC", s) in blob
                  or unicodedata.normalize("NFKC", s).replace("-", "") in blob]
        assert leaked == []
        # RRN-shaped numbers left: exactly the unlabelled ones with an impossible date (see find_personal)
        assert sorted(m.group(0) for v in values for m in RRN_ANY.finditer(v)) == sorted(plan["kept"])
        memo = [r[columns.index("memo")] for r in rows]
        assert sum(m.count("[rrn]") for m in memo) == plan["memo_rrn"]
        assert all(m.count("[rrn]") == 0 for m in memo if m.startswith("문서번호"))
        assert {r[columns.index("전화번호")] for r in rows} == {"02-120-1234"}  # a landline is no personal data

    audit = json.loads((project / "build" / "audit" / "records.geotag.json").read_text(encoding="utf-8"))
    priv = audit["privacy"]
    assert sorted(priv["fields_withheld"]) == sorted(withheld)
    for col in plan["name_columns"]:
        assert priv["fields_withheld"][col].startswith("its name marks "), col
    kinds = {"연락": "mobile numbers", "회신": "e-mail addresses", "참조": "resident registration numbers"}
    for col, (hits, total) in plan["content"].items():
        assert priv["fields_withheld"][col] == f"{hits} of its {total} values are {kinds[col]}"
    assert priv["counts"]["memo"] == {"rrn": plan["memo_rrn"]}
    assert not [s for s in plan["secrets"] if s in json.dumps(audit, ensure_ascii=False)]


@pytest.mark.parametrize("column, values, why", [
    ("주민번호", [impossible_date_rrn(), make_rrn("701350", "123456")], "its name marks resident registration numbers"),
    ("여권번호", ["M12345678", "M87654321"], "its name marks passport numbers"),
    ("ref", ["010-1234-5678", "010-8765-4321"], "2 of its 2 values are mobile numbers"),
])
def test_identifier_column_as_id_column_is_refused(tmp_path, column, values, why):
    """The id column is published as 'id': an identifier column must not slip out that way."""
    project = tmp_path / "p"
    init_project(project)
    src = tmp_path / "r.csv"
    pd.DataFrame({column: values, "주소": ["서울 중구 세종대로 110"] * 2, "lon": ["126.97"] * 2,
                  "lat": ["37.56"] * 2}).to_csv(src, index=False)
    res = CliRunner().invoke(main, ["geotag", str(src), "--layer", "r", "--project", str(project), "--id-column", column])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == (f"error: {src}: id column '{column}' holds personal data ({why}); "
                                  "use another id column or none (row numbers are used then)")
    assert not (project / "build" / "citytwin.gpkg").exists() or "r" not in GeoPackageStore(
        project / "build" / "citytwin.gpkg").layers()


def test_xlsx_numbers_under_zero_padding_formats_are_read_as_shown_and_scrubbed(tmp_path):
    """Excel keeps 010-1234-5678 as the number 1012345678 shown through 000-0000-0000: no detector sees the bare number."""
    import openpyxl

    rrn = make_rrn("010315", "312345")  # born 2001: the number loses its leading zero
    phones = ["010-2345-6789", "010-9876-5432", "011-234-5678"]
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["주소", "lon", "lat", "우편번호", "비고"])
    notes = [(int(phones[0].replace("-", "")), "000-0000-0000"), (int(rrn.replace("-", "")), "000000-0000000"),
             ("현장 확인", "General"), ("없음", "General"), (int(phones[2].replace("-", "")), '000"-"000"-"0000'),
             ("재방문", "General"), ("완료", "General")]  # mostly free text: the column is published, scrubbed
    for value, fmt in notes:
        ws.append(["서울 중구 세종대로 110", 126.978, 37.566, 4524, value])
        ws.cell(ws.max_row, 4).number_format = "00000"
        ws.cell(ws.max_row, 5).number_format = fmt
    src = tmp_path / "r.xlsx"
    book.save(src)
    assert read_records(src).table["비고"].tolist() == [phones[0], rrn, "현장 확인", "없음", phones[2], "재방문", "완료"]

    project = tmp_path / "p"
    init_project(project)
    res = CliRunner().invoke(main, ["geotag", str(src), "--layer", "notes", "--project", str(project)])
    assert res.exit_code == 0, res.output
    con = sqlite3.connect(project / "build" / "citytwin.gpkg")
    try:
        assert {"우편번호", "비고"} <= {r[1] for r in con.execute("PRAGMA table_info(notes)")}
        got = con.execute('SELECT "우편번호", "비고" FROM notes ORDER BY fid').fetchall()
        values = [v for row in con.execute("SELECT * FROM notes") for v in row if isinstance(v, str)]
    finally:
        con.close()
    assert got == [("04524", "[mobile]"), ("04524", "[rrn]"), ("04524", "현장 확인"), ("04524", "없음"),
                   ("04524", "[mobile]"), ("04524", "재방문"), ("04524", "완료")]
    secrets_ = [*phones, rrn]
    assert not [s for s in secrets_ for v in values if s in v or s.replace("-", "") in v or s.replace("-", "")[1:] in v]
