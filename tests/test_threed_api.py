"""3D Tiles over real HTTP: ``citytwin build`` writes the tileset, ``citytwin serve`` serves it.

Checks the bytes and media types, ETag/304, gzip, CORS, the OGC API - 3D GeoVolumes view
(link and 3D bounding box) and that no request path can reach a file outside the
layer's tileset folder.
"""
from __future__ import annotations

import gzip
import http.client
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from api_server import REPO, make_project, serve

GEOVOLUMES_REL = "http://www.opengis.net/def/rel/ogc/1.0/3d-geovolumes"
CRS84H = "http://www.opengis.net/def/crs/OGC/0/CRS84h"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
SECRET = "name: API test city"  # a line of citytwin.yaml that must never come back


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("threed") / "city"
    layers = make_project(root)
    env = {k: v for k, v in os.environ.items() if k != "CITYTWIN_DATABASE_URL"}
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "build", "--project", str(root)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root, layers


@pytest.fixture(scope="module")
def base(project) -> Iterator[str]:
    with serve(project[0]) as url:
        yield url


@pytest.fixture(scope="module")
def folder(project) -> Path:
    path = project[0] / "build" / "3dtiles" / "buildings"
    assert (path / "tileset.json").is_file()
    return path


def _content_uris(tile: dict) -> list[str]:
    uris = [tile["content"]["uri"]] if "content" in tile else []
    for child in tile.get("children", []):
        uris += _content_uris(child)
    return uris


def _raw_get(base: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written: no client-side '..' removal or re-encoding."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# -- files ---------------------------------------------------------------------------------
def test_tileset_json_is_served_with_cors(base: str, folder: Path) -> None:
    r = httpx.get(f"{base}/collections/buildings/3dtiles/tileset.json",
                  headers={"Origin": "http://example.org", "Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/3dtiles+json"  # as its GeoVolumes link says
    assert r.headers["access-control-allow-origin"] == "*"
    assert "etag" in r.headers["access-control-expose-headers"].lower()
    assert "cache-control" in r.headers
    assert r.content == (folder / "tileset.json").read_bytes()
    assert r.json()["asset"]["version"] == "1.1"


def test_tileset_json_is_gzipped_when_accepted(base: str, folder: Path) -> None:
    with httpx.stream("GET", f"{base}/collections/buildings/3dtiles/tileset.json",
                      headers={"Accept-Encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    assert gzip.decompress(raw) == (folder / "tileset.json").read_bytes()


def test_every_content_file_is_served_byte_for_byte(base: str, folder: Path) -> None:
    tileset = json.loads((folder / "tileset.json").read_text())
    uris = _content_uris(tileset["root"])
    assert uris and len(uris) == len(list((folder / "content").glob("*.glb")))
    for uri in uris:
        r = httpx.get(f"{base}/collections/buildings/3dtiles/{uri}")
        assert r.status_code == 200, uri
        assert r.headers["content-type"] == "model/gltf-binary"
        assert "content-encoding" not in r.headers  # GLB is binary: never re-encoded
        assert r.content[:4] == b"glTF"
        assert r.content == (folder / uri).read_bytes()


def test_head_has_headers_and_no_body(base: str, folder: Path) -> None:
    r = httpx.head(f"{base}/collections/buildings/3dtiles/content/1.glb")
    assert r.status_code == 200
    assert r.headers["content-type"] == "model/gltf-binary"
    assert int(r.headers["content-length"]) == (folder / "content" / "1.glb").stat().st_size
    assert r.content == b""


def test_etag_gives_304_and_changes_with_the_file(base: str, folder: Path) -> None:
    url = f"{base}/collections/buildings/3dtiles/content/1.glb"
    first = httpx.get(url)
    etag = first.headers["etag"]
    again = httpx.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert httpx.get(url, headers={"If-None-Match": f'W/{etag}, "other"'}).status_code == 304
    assert httpx.get(url, headers={"If-None-Match": '"not-it"'}).status_code == 200
    # a rebuild rewrites the file: a new mtime must give a new ETag and a full answer
    path = folder / "content" / "1.glb"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        after = httpx.get(url, headers={"If-None-Match": etag})
        assert after.status_code == 200 and after.headers["etag"] != etag
        assert after.content == path.read_bytes()
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# -- what must never be served --------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/collections/buildings/3dtiles/..%2F..%2Fcitytwin.yaml",
    "/collections/buildings/3dtiles/../../citytwin.yaml",
    "/collections/buildings/3dtiles/content/../../../citytwin.yaml",
    "/collections/buildings/3dtiles/%2e%2e/%2e%2e/%2e%2e/citytwin.yaml",
    "/collections/buildings/3dtiles/..%5C..%5C..%5Ccitytwin.yaml",
    "/collections/buildings/3dtiles/%2Fetc%2Fpasswd",
    "/collections/buildings/3dtiles//etc/passwd",
    "/collections/buildings/3dtiles/content/1.glb%00.json",
    "/collections/buildings/3dtiles/.hidden.json",
    "/collections/buildings/3dtiles/",
    "/collections/nope/3dtiles/tileset.json",
    "/collections/landmarks/3dtiles/tileset.json",  # a layer without 3D Tiles
    "/collections/buildings'%3B%20DROP%20TABLE%20buildings--/3dtiles/tileset.json",
    "/collections/Buildings/3dtiles/tileset.json",
    "/collections/%2E%2E/3dtiles/tileset.json",
])
def test_paths_outside_the_tileset_are_refused(base: str, path: str) -> None:
    status, body = _raw_get(base, path)
    assert 400 <= status < 500, f"{path} -> {status}"
    assert SECRET.encode() not in body
    assert b"root:" not in body


def test_symlinks_and_other_files_in_the_folder(base: str, project, folder: Path) -> None:
    root = project[0]
    leak = folder / "content" / "leak.glb"
    alias = folder / "content" / "alias.glb"
    notes = folder / "notes.txt"
    leak.symlink_to(root / "citytwin.yaml")
    alias.symlink_to(folder / "content" / "1.glb")
    notes.write_text(SECRET)
    try:
        status, body = _raw_get(base, "/collections/buildings/3dtiles/content/leak.glb")
        assert status == 404 and SECRET.encode() not in body
        # a link that stays inside the tileset is an ordinary file of it
        status, body = _raw_get(base, "/collections/buildings/3dtiles/content/alias.glb")
        assert status == 200 and body == (folder / "content" / "1.glb").read_bytes()
        # only 3D Tiles file types are served from the folder
        status, body = _raw_get(base, "/collections/buildings/3dtiles/notes.txt")
        assert status == 400 and SECRET.encode() not in body
    finally:
        for p in (leak, alias, notes):
            p.unlink()
    assert httpx.get(f"{base}/collections/buildings/3dtiles/tileset.json").status_code == 200


# -- OGC API - 3D GeoVolumes --------------------------------------------------------------
def _expected_bbox(folder: Path) -> list[float]:
    w, s, e, n, lo, hi = json.loads((folder / "tileset.json").read_text())["root"]["boundingVolume"]["region"]
    return [w * 180 / math.pi, s * 180 / math.pi, lo, e * 180 / math.pi, n * 180 / math.pi, hi]


def test_collection_has_the_3d_tiles_link_and_3d_bbox(base: str, project, folder: Path) -> None:
    doc = httpx.get(f"{base}/collections/buildings?f=json").json()
    links = [lk for lk in doc["links"] if lk["rel"] == GEOVOLUMES_REL]
    assert len(links) == 1
    assert links[0]["type"] == "application/3dtiles+json"
    assert links[0]["href"] == f"{base}/collections/buildings/3dtiles/tileset.json"
    assert httpx.get(links[0]["href"]).status_code == 200

    # Features clients read a 2D CRS84 spatial extent only; the heights are the vertical extent.
    spatial = doc["extent"]["spatial"]
    assert spatial["crs"] == CRS84
    (box,) = spatial["bbox"]
    (heights,) = doc["extent"]["vertical"]["interval"]
    assert doc["extent"]["vertical"]["vrs"] == CRS84H
    bbox = [box[0], box[1], heights[0], box[2], box[3], heights[1]]
    assert bbox == pytest.approx(_expected_bbox(folder), abs=1e-6)
    # ... and it holds what was published: the footprints (lon/lat) and the heights on the
    # ellipsoid (base 0 m, top = the tallest building), from the source data itself. Tiles
    # are flat local frames: 900 m from a tile's centre the ellipsoid is ~6 cm below the
    # plane (d^2 / 2R), hence 0.1 m on heights.
    source = project[1]["buildings"]
    minx, miny, maxx, maxy = source.total_bounds
    assert bbox[0] == pytest.approx(minx, abs=1e-6) and bbox[1] == pytest.approx(miny, abs=1e-6)
    assert bbox[3] == pytest.approx(maxx, abs=1e-6) and bbox[4] == pytest.approx(maxy, abs=1e-6)
    assert bbox[2] == pytest.approx(0.0, abs=0.1)
    assert bbox[5] == pytest.approx(float(source["height"].max()), abs=0.1)


def test_collections_list_marks_only_layers_with_tilesets(base: str, folder: Path) -> None:
    doc = httpx.get(f"{base}/collections?f=json").json()
    by_id = {c["id"]: c for c in doc["collections"]}
    assert set(by_id) == {"buildings", "landmarks", "catalog"}  # the layers and the Records catalog
    assert [lk["href"] for lk in by_id["buildings"]["links"] if lk["rel"] == GEOVOLUMES_REL] == [
        f"{base}/collections/buildings/3dtiles/tileset.json"]
    w, s, lo, e, n, hi = _expected_bbox(folder)
    assert by_id["buildings"]["extent"]["spatial"]["bbox"][0] == pytest.approx([w, s, e, n], abs=1e-6)
    assert by_id["buildings"]["extent"]["vertical"]["interval"] == [pytest.approx([lo, hi], abs=1e-3)]
    assert not [lk for lk in by_id["landmarks"]["links"] if lk["rel"] == GEOVOLUMES_REL]
    assert len(by_id["landmarks"]["extent"]["spatial"]["bbox"][0]) == 4
    # HTML stays pygeoapi's own
    html = httpx.get(f"{base}/collections/buildings?f=html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")


def test_conformance_lists_geovolumes(base: str) -> None:
    classes = httpx.get(f"{base}/conformance?f=json").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-geovolumes-1/1.0/conf/core" in classes
    assert "http://www.opengis.net/spec/ogcapi-geovolumes-1/1.0/conf/3d-tiles" in classes
    assert len(classes) == len(set(classes))
    assert httpx.get(f"{base}/conformance?f=json").json()["conformsTo"] == classes  # no growth per call


# -- the 3D viewer and its library ------------------------------------------------------------
def test_3d_viewer_page_and_cesium_are_served(base: str) -> None:
    landing = httpx.get(f"{base}/?f=json").json()
    assert f"{base}/viewer/3d/" in [lk["href"] for lk in landing["links"]]
    assert 'href="3d/"' in httpx.get(f"{base}/viewer/").text  # linked from the 2D viewer

    page = httpx.get(f"{base}/viewer/3d/")
    assert page.status_code == 200 and "../vendor/cesium/Build/Cesium/Cesium.js" in page.text
    pinned = json.loads((REPO / "viewer" / "package.json").read_text())["dependencies"]["cesium"]
    assert pinned[0].isdigit(), "cesium must be pinned to an exact version"
    served = httpx.get(f"{base}/viewer/vendor/cesium/package.json").json()
    assert served["version"] == pinned
    for asset in ("Cesium.js", "Widgets/widgets.css", "Assets/approximateTerrainHeights.json"):
        r = httpx.head(f"{base}/viewer/vendor/cesium/Build/Cesium/{asset}")
        assert r.status_code == 200, asset
    assert httpx.get(f"{base}/viewer/3d", follow_redirects=False).status_code in (307, 308)
