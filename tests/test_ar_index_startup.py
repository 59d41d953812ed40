"""The server answers at once after start-up while the AR index is still being built.

The app runs in a child process (pygeoapi reads its configuration once per process) whose index
build is held on an Event until the test has asked its questions; then the build runs for real.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from api_server import REPO
from test_ar_api import DEVICE, make_scene

SCRIPT = """
import json, sys, threading, time, warnings
warnings.simplefilter("ignore")
import api.ar_index as ar_index

started, release, finished = threading.Event(), threading.Event(), threading.Event()
real_build = ar_index.build_index

def held_build(catalog, store):
    started.set()
    release.wait(90)  # long enough for the questions below; without a background build it holds start-up
    index = real_build(catalog, store)
    finished.set()
    return index

ar_index.build_index = held_build
from starlette.testclient import TestClient
from api.app import create_app

client = TestClient(create_app(sys.argv[1], "127.0.0.1", 8000))
view = {"lon": DEVICE[0], "lat": DEVICE[1], "alt": 1.6, "heading": 45, "pitch": 0, "fov": 120, "radius": 400}
out = {"build_started": started.wait(60)}
out["conformance"] = client.get("/conformance?f=json").status_code
out["built_before_answering"] = finished.is_set()
items = client.get("/collections/landmarks/items?f=json")
out["items"] = [items.status_code, sorted(f["id"] for f in items.json()["features"])]
for path in ("/ar/view", "/ar/anchors", "/ar/route"):
    r = client.get(path, params=view)
    out[path] = [r.status_code, r.headers.get("retry-after"), r.json()]
r = client.get("/ready")
out["ready_while_held"] = [r.status_code, r.headers.get("retry-after"), r.json()]
out["still_held"] = not release.is_set()
release.set()
deadline = time.monotonic() + 120
while (r := client.get("/ar/view", params=view)).status_code == 503 and time.monotonic() < deadline:
    time.sleep(0.2)
out["after"] = [r.status_code, r.json()]
r = client.get("/ready")
out["ready_after"] = [r.status_code, r.json()]
print(json.dumps(out))
""".replace("DEVICE", repr(DEVICE))


@pytest.fixture(scope="module")
def startup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ar-startup") / "city"
    make_scene(root)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], capture_output=True, text=True, timeout=400,
                       cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-3000:]
    shutil.rmtree(root.parent, ignore_errors=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_other_routes_answer_while_the_index_is_built(startup):
    assert startup["build_started"] and startup["still_held"] and not startup["built_before_answering"]
    assert startup["conformance"] == 200
    assert startup["items"] == [200, ["behind", "clear", "on_tower"]]


@pytest.mark.parametrize("path", ["/ar/view", "/ar/anchors", "/ar/route"])
def test_ar_answers_503_with_retry_after_while_the_index_is_built(startup, path):
    status, retry_after, body = startup[path]
    assert status == 503
    assert int(retry_after) > 0
    assert body["code"] == "ServiceUnavailable" and "AR index is still being built" in body["description"]


def test_view_gives_the_full_answer_once_the_index_is_built(startup):
    status, doc = startup["after"]
    assert status == 200, doc
    items = {it["id"]: it for it in doc["items"]}
    assert set(items) == {"behind", "clear", "on_tower", "rec-1"}  # as in test_ar_api, from the same scene
    assert items["behind"]["occluded_by"] == {"layer": "buildings", "id": "tower"}
    assert items["clear"]["occluded"] is False
    assert doc["occluders"]["count"] == 2


def test_ready_says_503_until_the_index_is_built_then_200(startup):
    status, retry_after, body = startup["ready_while_held"]
    assert status == 503 and int(retry_after) > 0
    assert body == {"ready": False, "tasks": {"ar_index": "starting"}}
    assert startup["ready_after"] == [200, {"ready": True, "tasks": {"ar_index": "ready"}}]


def test_ready_counts_a_failed_build_as_done_and_says_why(monkeypatch):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    import api.ar_index as ar_index
    from api.readiness import ready_route

    def broken(catalog, store):
        raise OSError("store file is unreadable")

    monkeypatch.setattr(ar_index, "warm_up", lambda: None)
    monkeypatch.setattr(ar_index, "build_index", broken)
    holder = ar_index.IndexHolder(catalog=None, store=None)
    with pytest.raises(ar_index.IndexNotReady):
        holder.wait(30)
    r = TestClient(Starlette(routes=[ready_route({"ar_index": holder.state})])).get("/ready")
    assert r.status_code == 200
    assert r.json() == {"ready": True, "tasks": {"ar_index": "failed: AR index not built: store file is unreadable"}}
