"""The viewer's libraries go gzip-encoded to clients that accept it, and as they are otherwise."""
from __future__ import annotations

import gzip

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.static_routes import NODE_MODULES, VIEWER_DIR, static_routes

CESIUM = "/viewer/vendor/cesium/Build/Cesium/Cesium.js"


@pytest.fixture(scope="module")
def client():
    with TestClient(Starlette(routes=static_routes())) as c:
        yield c


def raw_get(client: TestClient, path: str, **headers: str):
    """Status, headers and the body as sent (not decoded by the client)."""
    with client.stream("GET", path, headers=headers) as r:
        return r.status_code, r.headers, b"".join(r.iter_raw())


def test_a_library_is_sent_gzipped_and_decodes_to_the_file(client):
    source = (NODE_MODULES / "cesium" / "Build" / "Cesium" / "Cesium.js").read_bytes()
    status, headers, body = raw_get(client, CESIUM, **{"accept-encoding": "gzip, deflate"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert "javascript" in headers["content-type"] and headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(body) < len(source) / 2
    assert gzip.decompress(body) == source
    again = raw_get(client, CESIUM, **{"accept-encoding": "gzip"})
    assert again[2] == body and again[1]["etag"] == headers["etag"]  # the cached copy, same tag


def test_without_gzip_or_with_a_range_the_file_goes_as_it_is(client):
    source = (VIEWER_DIR / "viewer.js").read_bytes()
    for accept in ("identity", "gzip;q=0", ""):
        status, headers, body = raw_get(client, "/viewer/viewer.js", **{"accept-encoding": accept})
        assert status == 200 and "content-encoding" not in headers and body == source, accept
        assert headers["vary"] == "Accept-Encoding"
    status, headers, body = raw_get(client, "/viewer/viewer.js", **{"accept-encoding": "gzip", "range": "bytes=0-99"})
    assert status == 206 and "content-encoding" not in headers and body == source[:100]


def test_the_gzip_copy_has_its_own_tag_and_revalidates(client):
    _, plain, _ = raw_get(client, CESIUM, **{"accept-encoding": "identity"})
    _, zipped, _ = raw_get(client, CESIUM, **{"accept-encoding": "gzip"})
    assert zipped["etag"] != plain["etag"]
    status, headers, body = raw_get(client, CESIUM, **{"accept-encoding": "gzip", "if-none-match": zipped["etag"]})
    assert status == 304 and body == b"" and headers["etag"] == zipped["etag"]


def test_small_and_binary_files_are_not_compressed(client):
    png = next((NODE_MODULES / "cesium" / "Build" / "Cesium" / "Assets").rglob("*.png"))
    path = "/viewer/vendor/cesium/" + png.relative_to(NODE_MODULES / "cesium").as_posix()
    status, headers, body = raw_get(client, path, **{"accept-encoding": "gzip"})
    assert status == 200 and "content-encoding" not in headers and body == png.read_bytes()
    small = NODE_MODULES / "cesium" / "greenkeeper.json"
    assert small.stat().st_size < 1024
    status, headers, body = raw_get(client, "/viewer/vendor/cesium/greenkeeper.json", **{"accept-encoding": "gzip"})
    assert status == 200 and "content-encoding" not in headers and body == small.read_bytes()
