"""Live items carry no personal data once accepted, and privacy-scan finds it in a live layer.

One served project (``citytwin serve``) with the live layers of test_live: posted and watched
items are screened before they are stored (RRNs, mobile numbers and e-mails masked in
values, nested ones too; person-name properties masked; properties named like identifiers
dropped), and the POST answer and the audit log say what was done by property name and
count, never the values. A leak planted straight into the item store (as a store written
before screening would hold) is found by ``citytwin privacy-scan`` of the server (exit 3).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import shapely
from click.testing import CliRunner

from api_server import CITY_HALL
from pipelines.catalog import load_catalog
from pipelines.cli import main
from pipelines.live import LiveItem, LiveLayer
from pipelines.steps.privacy import PropertyScreen
from test_live import audit, base, collection, get_items, item, post, project  # noqa: F401 (fixtures)
from test_privacy import make_rrn

RRN = make_rrn("700313", "123456")
LABELLED = make_rrn("851224", "234567")
MOBILE, OTHER_MOBILE, EMAIL = "010-1234-5678", "010 9876 5432", "reporter@example.kr"
SECRETS = [RRN, RRN.replace("-", ""), LABELLED, MOBILE, OTHER_MOBILE, EMAIL, "김철수", "０１０－２２２２－３３３３"]


def leaky_item(fid: str) -> dict:
    return item(fid, *CITY_HALL, kind="crash", note=f"신고자 {MOBILE}, 회신 {EMAIL}", 주민번호=RRN,
                **{"신고자 연락처": OTHER_MOBILE, "성명": "김철수", "lanes": 2,
                   "details": {"memo": f"주민번호: {LABELLED}", "calls": ["없음", "０１０－２２２２－３３３３"]}})


def scan(target: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["privacy-scan", target])
    return res.exit_code, res.output


def test_posted_items_are_screened_and_the_answer_says_what_was_done(base, project):
    resp = post(base, "incidents", collection(leaky_item("p-1"), item("p-2", *CITY_HALL, kind="fire")))
    assert resp.status_code == 201, resp.text
    assert not [s for s in SECRETS if s in resp.text]
    assert resp.json()["privacy"] == {
        "masked": {"note": {"mobile": 1, "email": 1}, "신고자 연락처": {"mobile": 1}, "성명": {"name": 1},
                   "details.memo": {"rrn": 1}, "details.calls[]": {"mobile": 1}},
        "dropped": {"주민번호": "its name marks resident registration numbers"},
    }
    got = {f["id"]: f["properties"] for f in get_items(base, "incidents").json()["features"]}
    props = got["p-1"]
    assert props["note"] == "신고자 [mobile], 회신 [email]" and "주민번호" not in props
    assert props["신고자 연락처"] == "[mobile]" and props["성명"] == "[name]" and props["lanes"] == 2
    assert props["details"] == {"memo": "주민번호: [rrn]", "calls": ["없음", "[mobile]"]}
    assert got["p-2"]["kind"] == "fire"
    entry = [e for e in audit(project) if e.get("status") == 201 and "p-1" in e.get("ids", [])][-1]
    assert entry["privacy"] == resp.json()["privacy"]
    assert not [s for s in SECRETS if s in (project / "build" / "logs" / "audit.log").read_text()]


def test_watched_file_items_are_screened(base, project):
    (project / "data" / "congestion.geojson").write_text(json.dumps(collection(leaky_item("f-1"))), encoding="utf-8")
    feats = get_items(base, "congestion").json()["features"]
    assert [f["id"] for f in feats] == ["f-1"]
    assert not [s for s in SECRETS if s in json.dumps(feats, ensure_ascii=False)]
    reload = [e for e in audit(project) if e.get("action") == "reload" and e.get("stored") == 1][-1]
    assert reload["privacy"]["dropped"] == {"주민번호": "its name marks resident registration numbers"}


def test_privacy_scan_finds_a_leak_in_a_live_layer(base, project):
    code, out = scan(base)
    assert code == 0 and "no personal data found" in out, out
    now = datetime.now(timezone.utc)
    planted = LiveItem("old-1", shapely.Point(*CITY_HALL), {"note": f"연락 {MOBILE}"}, now, now + timedelta(hours=1),
                       PropertyScreen())
    LiveLayer(load_catalog(project), "incidents").put([planted], "test")
    code, out = scan(base)
    assert code == 3, out
    assert f"mobile: {base}/collections/incidents/items/old-1 field 'note': 01" in out, out
    assert MOBILE not in out


def test_privacy_scan_of_the_build_folder_reads_live_stores(base, project):
    """After the planted leak above: the folder scan and the store itself find it; nothing is written."""
    store = project / "build" / "live" / "incidents.sqlite"
    before = store.read_bytes()
    for target in (store, project / "build"):
        code, out = scan(str(target))
        assert code == 3, out
        assert "mobile: incidents.sqlite/old-1 field 'note': 01" in out and MOBILE not in out, out
        assert "incidents.sqlite/p-1" not in out, out  # screened when posted
    assert store.read_bytes() == before
    (project / "build" / "live" / "broken.sqlite").write_bytes(b"not a database at all, just text" * 40)
    code, out = scan(str(project / "build" / "live" / "broken.sqlite"))
    assert code == 2 and out.strip().splitlines()[-1].startswith("error: ") and "not a live layer's item store" in out
