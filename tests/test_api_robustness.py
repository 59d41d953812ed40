"""Hostile or odd requests get a clear 4xx in one JSON shape and leave the server up; jobs are
seen only by the key that started them; the pages say what is true and log no noise.

One served project (``citytwin serve`` over real HTTP): the live test city (buildings,
landmarks, two live layers) with two API keys. Expectations come from the inputs: dates
from ``datetime``, counts from the sample buildings.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from api_server import CITY_HALL, sample_buildings, serve, serve_output
from test_live import KEY, TMS, collection, item, write_live_project

OTHER_ID, OTHER_KEY = "other-desk", "other-desk-key-for-tests-77"
EXECUTE = "/processes/hazard-exposure/execution"
INPUTS = {"hazard": "buildings", "targets": ["landmarks"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = write_live_project(tmp_path_factory.mktemp("robust"))
    with open(root / "secrets" / "keys.txt", "a", encoding="utf-8") as f:
        f.write(f"{OTHER_ID}: {OTHER_KEY}\n")
    return root


@pytest.fixture(scope="module")
def base(project: Path) -> str:
    with serve(project) as url:
        yield url


def assert_error(resp: httpx.Response, status: int, code: str, needle: str) -> None:
    """An OGC API exception: JSON with type, code and a description that says ``needle``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["type"] == body["code"] == code, body
    assert needle in body["description"], body
    assert "Traceback" not in resp.text


def still_up(base: str) -> None:
    assert httpx.get(f"{base}/conformance?f=json", timeout=30).status_code == 200


# -- log noise (first: the first HTML page view is the one that translates the config) ---------
@pytest.mark.parametrize("path", ["/?f=html", "/collections?f=html", "/processes?f=html",
                                  "/processes/hazard-exposure?f=html", "/collections/buildings?f=html"])
def test_html_pages_log_no_locale_warnings(base, project, path):
    before = len(serve_output(project))
    assert httpx.get(f"{base}{path}", timeout=30).status_code == 200
    still_up(base)  # the log lines of the page view are written before this answer
    new = serve_output(project)[before:]
    assert "locale" not in new, new[:2000]


# -- query parameters ----------------------------------------------------------------------------
@pytest.mark.parametrize("limit", ["²", "٣.5", "2.5", "1e999", "abc"])
def test_live_limit_that_is_not_a_whole_number_is_400(base, limit):
    resp = httpx.get(f"{base}/live/incidents/items", params={"limit": limit}, timeout=30)
    assert_error(resp, 400, "InvalidParameterValue", f"parameter 'limit' must be a whole number, got {limit!r}")
    still_up(base)


@pytest.mark.parametrize("limit,needle", [("0", "at least 1"), ("10001", "at most 10000")])
def test_live_limit_out_of_range_is_400(base, limit, needle):
    resp = httpx.get(f"{base}/live/incidents/items", params={"limit": limit}, timeout=30)
    assert_error(resp, 400, "InvalidParameterValue", f"parameter 'limit' must be {needle}")


@pytest.mark.parametrize("params,needle", [
    ({"offset": "1" + "0" * 30}, "parameter 'offset' must be at most 9007199254740992, got 1e+30"),
    ({"offset": "²"}, "parameter 'offset' must be a whole number, got '²'"),
    ({"bbox": "nan,nan,nan,nan"}, "parameter 'bbox' must hold finite numbers"),
    ({"bbox": "126,37,inf,38"}, "parameter 'bbox' must hold finite numbers"),
])
def test_items_paging_and_bbox_that_no_store_can_use_are_400(base, params, needle):
    resp = httpx.get(f"{base}/collections/buildings/items", params={"f": "json", **params}, timeout=30)
    assert_error(resp, 400, "InvalidParameterValue", needle)
    still_up(base)


@pytest.mark.parametrize("sortby", ["height,", ",height", "-", "+,-height"])
def test_sortby_with_an_empty_entry_is_400(base, sortby):
    resp = httpx.get(f"{base}/collections/buildings/items", params={"f": "json", "sortby": sortby}, timeout=30)
    assert_error(resp, 400, "InvalidParameterValue", "every entry is a property name")
    still_up(base)


def test_empty_sortby_sorts_nothing(base):
    plain = httpx.get(f"{base}/collections/buildings/items", params={"f": "json", "limit": 20}, timeout=30)
    empty = httpx.get(f"{base}/collections/buildings/items", params={"f": "json", "limit": 20, "sortby": ""},
                      timeout=30)
    assert empty.status_code == 200, empty.text[:300]
    ids = [f["id"] for f in empty.json()["features"]]
    assert len(ids) == 20 and ids == [f["id"] for f in plain.json()["features"]]


def test_a_url_too_long_for_the_http_parser_gets_a_json_400(base):
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(base)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(b"GET /geocode?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"content-type: application/json" in head.lower(), head
    doc = json.loads(body)
    assert doc["type"] == doc["code"] == "InvalidRequest" and "URL over about 64 kB" in doc["description"]
    still_up(base)


# -- live items at the edges of the calendar and of JSON -----------------------------------------
def _post(base: str, body, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    if isinstance(body, (dict, list)):
        return httpx.post(f"{base}/live/incidents/items", json=body, headers=headers, timeout=60, **kwargs)
    return httpx.post(f"{base}/live/incidents/items", content=body, headers=headers, timeout=60, **kwargs)


def _dated(fid: str, timestamp: str, expires: str) -> dict:
    return {"type": "Feature", "id": fid, "geometry": {"type": "Point", "coordinates": list(CITY_HALL)},
            "properties": {"timestamp": timestamp, "expires": expires}}


NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.mark.parametrize("fid,timestamp,expires", [
    ("last-second", NOW.isoformat(), "9999-12-31T23:59:59Z"),
    ("first-day", "0001-01-01T00:00:00Z", (NOW + timedelta(hours=1)).isoformat()),
    ("east-of-utc", (NOW - timedelta(hours=1)).isoformat(), "9999-12-31T23:59:59+09:00"),
])
def test_items_at_the_edges_of_the_calendar_are_kept(base, fid, timestamp, expires):
    resp = _post(base, _dated(fid, timestamp, expires))
    assert resp.status_code == 201, resp.text
    got = httpx.get(f"{base}/live/incidents/items", params={"limit": 10000}, timeout=30)
    assert got.status_code == 200, got.text
    (feature,) = [f for f in got.json()["features"] if f["id"] == fid]
    assert datetime.fromisoformat(feature["properties"]["expires"]) == datetime.fromisoformat(expires)
    assert datetime.fromisoformat(feature["properties"]["timestamp"]) == datetime.fromisoformat(timestamp)


@pytest.mark.parametrize("timestamp,expires,needle", [
    ("0001-01-01T00:00:00+01:00", "2099-01-01T00:00:00Z", "properties.timestamp '0001-01-01T00:00:00+01:00' "
                                                          "is outside the years 1 to 9999"),
    ("2024-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "properties.expires '9999-12-31T23:59:59-05:00' "
                                                          "is outside the years 1 to 9999"),
    ("2024-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "is not an ISO 8601 time"),
])
def test_times_outside_the_calendar_are_400(base, timestamp, expires, needle):
    resp = _post(base, _dated("edge", timestamp, expires))
    assert_error(resp, 400, "InvalidParameterValue", needle)
    assert "item 1 (id 'edge')" in resp.json()["description"]
    still_up(base)


def _nested(depth: int) -> dict:
    value: object = "bottom"
    for _ in range(depth):
        value = {"in": value}
    return value  # type: ignore[return-value]


@pytest.mark.parametrize("raw,shown", [("NaN", "nan"), ("-Infinity", "-inf"), ("1e999", "inf"),
                                       (str(2**63), str(2**63)), ('{"a": [1, NaN]}', "nan")])
def test_numbers_no_answer_can_carry_are_400(base, raw, shown):
    lon, lat = CITY_HALL[0] + 0.0031, CITY_HALL[1] + 0.0017
    body = json.dumps(item("odd-number", lon, lat))[:-2] + f', "value": {raw}}}}}'
    resp = _post(base, body.encode())
    assert_error(resp, 400, "InvalidParameterValue", "properties.value")
    assert f"is {shown}; numbers must be finite and whole numbers within 64 bits" in resp.json()["description"]
    # the layer still answers as GeoJSON and as a tile over that place
    assert httpx.get(f"{base}/live/incidents/items", timeout=30).status_code == 200
    tile = TMS.tile(lon, lat, 16)
    assert httpx.get(f"{base}/live/incidents/tiles/16/{tile.x}/{tile.y}", timeout=30).status_code in (200, 204)


def _depth(value: object) -> int:
    """Nesting depth of a parsed JSON value, by recursion (the documents here are shallow)."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def test_json_depth_skips_brackets_in_strings_and_escaped_quotes():
    import random

    from api.bodies import json_depth

    rng = random.Random(5)
    tricky = ['a[{"', "\\", '\\"]}', "}{][", "x\\\\", 1, None, 2.5]

    def doc(level: int) -> object:
        roll = rng.random()
        if level > 7 or roll < 0.3:
            return rng.choice(tricky)
        if roll < 0.65:
            return [doc(level + 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}{rng.choice(tricky)}": doc(level + 1) for i in range(rng.randint(0, 3))}

    for _ in range(2000):
        value = doc(0)
        assert json_depth(json.dumps(value).encode()) == _depth(value), value
    assert json_depth(b"[" * 5000 + b"]" * 5000) == 5000


def test_properties_nested_5000_deep_are_400(base):
    deep = item("deep", *CITY_HALL)
    body = json.dumps(deep)[:-2] + ', "nest": ' + "[" * 5000 + "]" * 5000 + "}}"
    resp = _post(base, body.encode())
    assert_error(resp, 400, "InvalidParameterValue", "more than 64 levels deep")
    still_up(base)
    # Nesting a real payload uses is kept as sent.
    fine = item("nested-ok", *CITY_HALL, detail=_nested(20))
    assert _post(base, fine).status_code == 201
    got = httpx.get(f"{base}/live/incidents/items", params={"limit": 10000}, timeout=30).json()
    (feature,) = [f for f in got["features"] if f["id"] == "nested-ok"]
    assert feature["properties"]["detail"] == _nested(20)


def test_a_watched_file_nested_5000_deep_is_refused_and_logged(base, project):
    path = project / "data" / "congestion.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [' + "[" * 5000 + "]" * 5000 + "]}",
                    encoding="utf-8")
    resp = httpx.get(f"{base}/live/congestion/items", timeout=30)
    assert resp.status_code == 200, resp.text
    reloads = [json.loads(line) for line in (project / "build" / "logs" / "audit.log").read_text().splitlines()
               if '"reload"' in line]
    assert reloads[-1]["layer"] == "congestion" and reloads[-1]["status"] == "error"
    assert "kept the previous items" in reloads[-1]["error"]


def test_live_body_over_the_limit_is_413_payload_too_large(base):
    resp = _post(base, b" " * 1_000_001)
    assert_error(resp, 413, "PayloadTooLarge", "over 1,000,000 bytes")
    # a 2 MB item is refused the same way, and nothing of it is stored
    big = item("too-big", *CITY_HALL, note="x" * 2_000_000)
    assert_error(_post(base, big), 413, "PayloadTooLarge", "send fewer items per request")
    assert "too-big" not in {f["id"] for f in httpx.get(f"{base}/live/incidents/items", timeout=30).json()["features"]}


def test_401_has_the_ogc_exception_shape(base):
    assert_error(_post(base, collection(item("x", *CITY_HALL)), key=None), 401, "Unauthorized", "X-API-Key")
    resp = httpx.post(f"{base}{EXECUTE}", json={"inputs": INPUTS}, timeout=30)
    assert_error(resp, 401, "Unauthorized", "X-API-Key")
    assert resp.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'


def test_errors_name_files_not_server_paths(base, project):
    live = httpx.get(f"{base}/live/nowhere/items", timeout=30)
    assert_error(live, 404, "NotFound", "layer 'nowhere' is not in citytwin.yaml")
    process = _execute(base, {"inputs": {"hazard": "nowhere", "targets": ["landmarks"]}})
    assert process.status_code == 400 and "layer 'nowhere' is not in citytwin.yaml" in process.text
    for resp in (live, process):
        assert str(project) not in resp.text and str(project.parent) not in resp.text


def test_a_process_input_mistake_logs_one_line_without_traceback(base, project):
    before = len(serve_output(project))
    resp = _execute(base, {"inputs": {"hazard": "no_such_zones", "targets": ["landmarks"]}})
    assert resp.status_code == 400, resp.text
    still_up(base)
    new = serve_output(project)[before:]
    assert "layer 'no_such_zones' is not in citytwin.yaml" in new and "Traceback" not in new, new[:3000]


# -- process execution ---------------------------------------------------------------------------
def _execute(base: str, body, key: str | None = KEY, **headers: str) -> httpx.Response:
    all_headers = {"Content-Type": "application/json", **headers}
    if key:
        all_headers["X-API-Key"] = key
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{base}{EXECUTE}", content=content, headers=all_headers, timeout=120)


@pytest.mark.parametrize("body,needle", [
    (b"[]", "the body is an array; send a JSON object"),
    (b"null", "the body is null; send a JSON object"),
    (b'"x"', "the body is a string; send a JSON object"),
    (b"1", "the body is a number; send a JSON object"),
    (b"", "the body is empty; send a JSON object"),
    (b"{inputs", "the body is not JSON"),
    (b'{"inputs": []}', "'inputs' must be an object of names and values, got an array"),
    (b'{"inputs": "x"}', "'inputs' must be an object of names and values, got a string"),
    (b'{"inputs": {}, "response": 5}', "'response' must be 'raw' or 'document'"),
    (b'{"inputs": {}, "subscriber": {"successUri": "http://127.0.0.1:9/"}}', "'subscriber' (callback URLs) is not"),
    (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "more than 64 levels deep"),
])
def test_malformed_execute_bodies_are_400(base, body, needle):
    assert_error(_execute(base, body), 400, "InvalidParameterValue", needle)
    still_up(base)


@pytest.mark.parametrize("threshold", [b"NaN", b"Infinity", b"1e999", b"1" + b"0" * 400])
def test_a_threshold_that_is_not_a_finite_number_is_400(base, threshold):
    body = b'{"inputs": {"hazard": "buildings", "targets": ["landmarks"], "threshold": ' + threshold + b"}}"
    resp = _execute(base, body)
    assert resp.status_code == 400 and "input 'threshold' must be a finite number" in resp.text, resp.text


def test_conformance_does_not_claim_the_refused_callbacks(base):
    classes = httpx.get(f"{base}/conformance", params={"f": "json"}, timeout=30).json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in classes
    assert not [c for c in classes if c.endswith("/conf/callback")]


def test_execute_body_over_1_mb_is_413(base):
    body = json.dumps({"inputs": INPUTS, "pad": " " * 1_000_000}).encode()
    assert_error(_execute(base, body), 413, "PayloadTooLarge", "over 1,000,000 bytes")

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(40):
            yield b" " * 50_000

    resp = httpx.post(f"{base}{EXECUTE}", content=chunks(), timeout=60,
                      headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    assert_error(resp, 413, "PayloadTooLarge", "over 1,000,000 bytes")
    still_up(base)


# -- jobs belong to the key that started them ----------------------------------------------------
def _job_id(resp: httpx.Response) -> str:
    assert resp.status_code in (200, 201), resp.text
    return resp.headers["location"].rstrip("/").rsplit("/", 1)[1]


def _get(base: str, path: str, key: str | None) -> httpx.Response:
    return httpx.get(f"{base}{path}", params={"f": "json"}, headers={"X-API-Key": key} if key else {}, timeout=30)


def test_jobs_are_read_only_with_the_key_that_started_them(base):
    mine = _job_id(_execute(base, {"inputs": INPUTS}))
    theirs = _job_id(_execute(base, {"inputs": INPUTS}, key=OTHER_KEY))
    expected = _execute(base, {"inputs": INPUTS}).json()

    # the owner reads status, results and the list
    assert _get(base, f"/jobs/{mine}", KEY).json()["status"] == "successful"
    assert _get(base, f"/jobs/{mine}/results", KEY).json() == expected
    listed = {j["jobID"] for j in _get(base, "/jobs", KEY).json()["jobs"]}
    assert mine in listed and theirs not in listed
    assert {j["jobID"] for j in _get(base, "/jobs", OTHER_KEY).json()["jobs"]} == {theirs}

    # without a key: 401 everywhere
    for path in ("/jobs", f"/jobs/{mine}", f"/jobs/{mine}/results"):
        assert_error(_get(base, path, None), 401, "Unauthorized", "X-API-Key")
        assert_error(_get(base, path, "not-a-key-at-all"), 401, "Unauthorized", "not valid")

    # another key: the job does not exist, exactly like an unknown id
    unknown = "00000000-0000-0000-0000-000000000000"
    for path in (f"/jobs/{mine}", f"/jobs/{mine}/results"):
        foreign = _get(base, path, OTHER_KEY)
        missing = _get(base, path.replace(mine, unknown), OTHER_KEY)
        assert_error(foreign, 404, "NoSuchJob", "started with this API key")
        assert foreign.json()["description"].replace(mine, unknown) == missing.json()["description"]
    refused = httpx.delete(f"{base}/jobs/{mine}", headers={"X-API-Key": OTHER_KEY}, timeout=30)
    assert_error(refused, 404, "NoSuchJob", "started with this API key")
    assert _get(base, f"/jobs/{mine}", KEY).status_code == 200

    # the owner dismisses it
    assert httpx.delete(f"{base}/jobs/{mine}", headers={"X-API-Key": KEY}, timeout=30).status_code == 200
    assert _get(base, f"/jobs/{mine}", KEY).status_code == 404


def test_async_job_is_the_callers_from_the_start(base):
    job = _job_id(_execute(base, {"inputs": INPUTS}, **{"Prefer": "respond-async"}))
    assert _get(base, f"/jobs/{job}", KEY).status_code == 200
    assert _get(base, f"/jobs/{job}", OTHER_KEY).status_code == 404


def test_job_list_paging_parameters_are_checked(base):
    resp = httpx.get(f"{base}/jobs", params={"limit": "²"}, headers={"X-API-Key": KEY}, timeout=30)
    assert_error(resp, 400, "InvalidParameterValue", "parameter 'limit' must be a whole number")


# -- what the pages say --------------------------------------------------------------------------
def test_collection_description_tells_what_the_embedded_store_filters(base):
    doc = httpx.get(f"{base}/collections/buildings", params={"f": "json"}, timeout=30).json()
    assert "needs PostGIS" not in doc["description"]
    assert "CQL2 'filter'" in doc["description"] and "200,000" in doc["description"]
    # and the CQL2 filter it describes does filter
    tall = int((sample_buildings()["height"] > 60).sum())
    resp = httpx.get(f"{base}/collections/buildings/items", timeout=30,
                     params={"f": "json", "filter": "height > 60", "resulttype": "hits"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["numberMatched"] == tall


def test_landing_page_links_the_ar_preview(base):
    links = httpx.get(f"{base}/", params={"f": "json"}, timeout=30).json()["links"]
    assert [link["title"] for link in links if link["href"] == f"{base}/viewer/ar/"] == ["AR preview"]
    assert f'href="{base}/viewer/ar/"' in httpx.get(f"{base}/", params={"f": "html"}, timeout=30).text
    assert httpx.get(f"{base}/viewer/ar/", timeout=30).status_code == 200


# -- last: these change the keys file of the served project ---------------------------------------
@pytest.mark.parametrize("fault", ["missing", "malformed"])
def test_a_keys_file_gone_bad_while_serving_refuses_keys_with_401(base, project, fault):
    keys = project / "secrets" / "keys.txt"
    good = keys.read_text(encoding="utf-8")
    try:
        if fault == "missing":
            keys.unlink()
        else:
            keys.write_text("traffic-desk live-key-without-a-colon\n", encoding="utf-8")
        for resp in (_post(base, collection(item("while-bad", *CITY_HALL))), _execute(base, {"inputs": INPUTS}),
                     _get(base, "/jobs", KEY)):
            assert_error(resp, 401, "Unauthorized", "keys file is missing or malformed")
            assert str(project) not in resp.text
        assert "keys.txt" in serve_output(project) and "its keys are refused until it is fixed" in serve_output(project)
    finally:
        keys.write_text(good, encoding="utf-8")
    assert _post(base, collection(item("after-fix", *CITY_HALL))).status_code == 201

