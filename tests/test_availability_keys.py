"""Polled availability sources that want an API key: sent in a header or as a query parameter,
read from an environment variable named in the catalog (never written in it).

A small HTTP server here answers 401 unless the key is right. The poll runs in process
(``AvailabilityPoller.poll_once``); the places stored are compared with the document sent, and
the key is looked for, and must not be found, in the poll status and the audit log.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from api.availability_poller import AvailabilityPoller, poll_status
from geo.errors import CatalogError
from pipelines.catalog import load_catalog
from pipelines.live import LiveLayer

SECRET = "s3cr3t-parking-key-9731"
ENV = "CITYTWIN_TEST_PARKING_KEY"
PLACES = [{"id": "K1", "lon": 126.9790, "lat": 37.5670, "capacity": 50, "free": 12},
          {"id": "K2", "lon": 126.9770, "lat": 37.5655, "capacity": 8, "free": 0}]


class KeyedSource:
    """Serves the places at /by-header.json (key in X-API-Key) and /by-param.json (?serviceKey=),
    401 without the right key; counts the requests."""

    def __init__(self) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests += 1
                parts = urlsplit(self.path)
                given = (self.headers.get("X-API-Key") if parts.path == "/by-header.json"
                         else parse_qs(parts.query).get("serviceKey", [None])[0])
                ok = given == SECRET
                body = json.dumps([{**p, "updated": time.time() - 5} for p in PLACES]).encode() if ok else b"no key"
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def source():
    src = KeyedSource()
    yield src
    src.server.shutdown()


def write_catalog(root: Path, url: str, key_header: str, key_param: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "citytwin.yaml").write_text(f"""\
name: keyed sources
layers:
  by_header:
    kind: live
    availability:
      poll: {{url: {url}/by-header.json, key: {key_header}}}
  by_param:
    kind: live
    availability:
      poll: {{url: {url}/by-param.json, key: {key_param}}}
""", encoding="utf-8")
    return root


def poll(root: Path, name: str) -> dict:
    catalog = load_catalog(root)
    with httpx.Client() as client:
        return AvailabilityPoller(catalog).poll_once(client, name)


def stored(root: Path, name: str) -> dict[str, tuple[int, int]]:
    return {f["id"]: (f["properties"]["capacity"], f["properties"]["free"])
            for f in LiveLayer(load_catalog(root), name).features()}


@pytest.mark.parametrize("name", ["by_header", "by_param"])
def test_a_keyed_source_is_polled_with_its_key_and_refused_without(name: str, source: KeyedSource, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    root = write_catalog(tmp_path, source.url, f"{{env: {ENV}, header: X-API-Key}}",
                         f"{{env: {ENV}, param: serviceKey}}")
    audit = root / "build" / "logs" / "audit.log"
    # no key in the environment: not fetched, and the status says which variable to set
    monkeypatch.delenv(ENV, raising=False)
    status = poll(root, name)
    assert ENV in status["error"] and "not set" in status["error"], status
    assert source.requests == 0 and stored(root, name) == {}
    # a wrong key: the source's 401 is the fault reported, nothing stored
    monkeypatch.setenv(ENV, "wrong-key")
    status = poll(root, name)
    assert "answered HTTP 401" in status["error"] and ENV in status["error"], status
    assert source.requests == 1 and stored(root, name) == {}
    # the right key: the places as sent
    monkeypatch.setenv(ENV, SECRET)
    status = poll(root, name)
    assert status["error"] is None and status["stored"] == 2, status
    assert stored(root, name) == {p["id"]: (p["capacity"], p["free"]) for p in PLACES}
    # the key is in neither the status (served with the layer's items) nor the audit log
    assert SECRET not in json.dumps(poll_status(load_catalog(root), name)) and "wrong-key" not in json.dumps(status)
    assert SECRET not in audit.read_text() and "wrong-key" not in audit.read_text()


@pytest.mark.parametrize("key,needle", [
    ("{env: PARKING_KEY}", "header or param"),
    ("{env: PARKING_KEY, header: X-API-Key, param: key}", "header or param"),
    ("{env: PARKING_KEY, header: X-API-Key, value: abc}", "value"),
    ("{env: 'not a name', header: X-API-Key}", "env"),
])
def test_the_catalog_refuses_a_key_it_cannot_use_or_a_key_written_in_it(key: str, needle: str, tmp_path: Path):
    root = write_catalog(tmp_path, "http://127.0.0.1:9", key, "{env: PARKING_KEY, param: key}")
    with pytest.raises(CatalogError) as err:
        load_catalog(root)
    assert needle in str(err.value) and "by_header" in str(err.value)
