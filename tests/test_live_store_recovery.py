"""A live layer's database deleted, emptied or replaced while the server runs.

The next request is answered from the file now at the layer's path: a deleted one is made
again (empty), one without tables gets them, a replaced one serves its own items, in items
and in tiles (never tiles kept from the file it replaced). A file that is not a database gets
a 503 naming it, and the layer serves again once it is moved away. The routes run in process
(Starlette's TestClient); expected tile positions come from morecantile.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mapbox_vector_tile
import morecantile
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.live_routes import live_routes
from api_server import CITY_HALL
from pipelines.catalog import load_catalog
from pipelines.live import LiveLayer, parse_items
from test_live import KEY, KEY_ID, collection, item

TMS = morecantile.tms.get("WebMercatorQuad")
CATALOG = """\
name: live store recovery
layers:
  incidents: {kind: live, title: Traffic incidents}
api_keys_file: secrets/keys.txt
"""


def make_root(root: Path) -> Path:
    (root / "secrets").mkdir(parents=True)
    (root / "secrets" / "keys.txt").write_text(f"{KEY_ID}: {KEY}\n", encoding="utf-8")
    (root / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    return root


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "project")


@pytest.fixture()
def client(root: Path) -> TestClient:
    with TestClient(Starlette(routes=live_routes(load_catalog(root)))) as c:
        yield c


def db(root: Path) -> Path:
    return root / "build" / "live" / "incidents.sqlite"


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def post(client: TestClient, *features: dict) -> None:
    r = client.post("/live/incidents/items", json=collection(*features), headers={"X-API-Key": KEY})
    assert r.status_code == 201, r.text


def served_ids(client: TestClient) -> list[str]:
    r = client.get("/live/incidents/items")
    assert r.status_code == 200, r.text
    return sorted(f["id"] for f in r.json()["features"])


TILE = TMS.tile(*CITY_HALL, 16)


def tile_ids(client: TestClient) -> list[str]:
    """Ids drawn in the z16 tile of City Hall (every item of these tests lies in it)."""
    r = client.get(f"/live/incidents/tiles/16/{TILE.x}/{TILE.y}")
    assert r.status_code in (200, 204), r.text
    if r.status_code == 204:
        return []
    return sorted(f["properties"]["id"] for f in mapbox_vector_tile.decode(r.content)["incidents"]["features"])


def near(fid: str, k: int) -> dict:
    lon, lat = CITY_HALL
    return item(fid, lon + k * 1e-5, lat)


def test_a_deleted_database_is_made_again_and_takes_posts(client: TestClient, root: Path):
    post(client, near("a", 1))
    assert served_ids(client) == tile_ids(client) == ["a"]
    remove_db(db(root))
    assert served_ids(client) == [] and tile_ids(client) == []
    post(client, near("b", 2))
    assert served_ids(client) == tile_ids(client) == ["b"]
    # the whole live folder removed too
    shutil.rmtree(root / "build" / "live")
    assert served_ids(client) == []
    post(client, near("c", 3))
    assert served_ids(client) == tile_ids(client) == ["c"]


def test_a_database_emptied_in_place_gets_its_tables_again(client: TestClient, root: Path):
    post(client, near("a", 1))
    assert served_ids(client) == ["a"]
    remove_db_wal = [Path(f"{db(root)}{s}") for s in ("-wal", "-shm")]
    inode = db(root).stat().st_ino
    with open(db(root), "wb"):  # truncated where it is: the same file (inode), no tables
        pass
    for p in remove_db_wal:
        p.unlink(missing_ok=True)
    assert db(root).stat().st_ino == inode
    assert served_ids(client) == [] and tile_ids(client) == []
    # a layer opened afresh in this process on the same file, as a feed's publish does
    fresh = LiveLayer(load_catalog(root), "incidents")
    fresh.put(parse_items(collection(near("b", 2))), "test")
    assert [f["id"] for f in fresh.features()] == ["b"]
    assert served_ids(client) == tile_ids(client) == ["b"]


def test_a_replaced_database_serves_its_own_items_and_tiles(client: TestClient, root: Path, tmp_path: Path):
    post(client, near("old", 1))
    assert tile_ids(client) == ["old"]
    # another project's database for the same layer, written the same number of times
    other = make_root(tmp_path / "other")
    LiveLayer(load_catalog(other), "incidents").put(parse_items(collection(near("new", 2))), "test")
    remove_db(db(root))
    os.replace(db(other), db(root))
    assert served_ids(client) == ["new"]
    assert tile_ids(client) == ["new"]  # not the tile made from the file it replaced


def test_a_file_that_is_not_a_database_is_a_clear_503_until_it_is_moved_away(client: TestClient, root: Path):
    post(client, near("a", 1))
    remove_db(db(root))
    db(root).write_bytes(b"these are not the droids " * 200)
    for r in (client.get("/live/incidents/items"),
              client.get(f"/live/incidents/tiles/16/{TILE.x}/{TILE.y}"),
              client.post("/live/incidents/items", json=near("b", 2), headers={"X-API-Key": KEY})):
        assert r.status_code == 503, r.text
        message = r.json()["description"]
        assert "incidents.sqlite" in message and "not a database" in message and "move it away" in message
        assert str(root) not in message  # the server's folders stay private
    assert db(root).read_bytes().startswith(b"these are not")  # nothing written over it
    db(root).unlink()
    post(client, near("b", 2))
    assert served_ids(client) == tile_ids(client) == ["b"]


APP_SCRIPT = r"""
import json, sys, warnings
warnings.simplefilter('ignore')
from pathlib import Path
from starlette.testclient import TestClient
from api.app import create_app

root, key = Path(sys.argv[1]), sys.argv[2]
db = root / 'build' / 'live' / 'incidents.sqlite'
client = TestClient(create_app(str(root), '127.0.0.1', 8000))
out = []

def read():
    r = client.get('/collections/incidents/items', params={'f': 'json'})
    body = r.json()
    out.append([r.status_code, sorted(f['id'] for f in body['features']) if r.status_code == 200
                else body.get('description', '')])

feature = json.loads(sys.argv[3])
assert client.post('/live/incidents/items', json=feature, headers={'X-API-Key': key}).status_code == 201
read()
for suffix in ('', '-wal', '-shm'):
    Path(f'{db}{suffix}').unlink(missing_ok=True)
db.write_bytes(b'these are not the droids ' * 200)
read()
db.unlink()
read()
print(json.dumps(out))
"""


def test_the_ogc_collection_of_a_layer_whose_file_is_not_a_database_is_a_503(tmp_path: Path):
    from api_server import REPO, make_project
    from test_live import LIVE_CATALOG

    root = tmp_path / "project"
    make_project(root)
    (root / "secrets").mkdir()
    (root / "secrets" / "keys.txt").write_text(f"{KEY_ID}: {KEY}\n", encoding="utf-8")
    (root / "data").mkdir()
    (root / "data" / "congestion.geojson").write_text(json.dumps(collection()), encoding="utf-8")
    (root / "citytwin.yaml").write_text(LIVE_CATALOG, encoding="utf-8")
    r = subprocess.run([sys.executable, "-c", APP_SCRIPT, str(root), KEY, json.dumps(near("a", 1))],
                       capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-3000:]
    posted, broken, moved_away = json.loads(r.stdout.strip().splitlines()[-1])
    assert posted == [200, ["a"]]
    assert broken[0] == 503 and "incidents.sqlite" in broken[1] and "not a database" in broken[1]
    assert str(root) not in broken[1]
    assert moved_away == [200, []]


ANCHORS_SCRIPT = r"""
import json, sys, time, warnings
warnings.simplefilter('ignore')
from pathlib import Path
from starlette.testclient import TestClient
from api.app import create_app

root, key, lon, lat = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
client = TestClient(create_app(str(root), '127.0.0.1', 8000))
deadline = time.monotonic() + 120
while client.get('/ar/view').status_code == 503 and time.monotonic() < deadline:  # AR index built after start-up
    time.sleep(0.2)
place = {'type': 'Feature', 'id': 'L1', 'geometry': {'type': 'Point', 'coordinates': [lon, lat]},
         'properties': {'capacity': 30, 'free': 4, 'updated': sys.argv[5]}}
assert client.post('/live/lots/items', json=place, headers={'X-API-Key': key}).status_code == 201
bbox = f'{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}'
out = []

def anchors():
    r = client.get('/ar/anchors', params={'bbox': bbox, 'types': 'poi,availability', 'terrain': 'none'})
    body = r.json()
    out.append([r.status_code, sorted([x['type'], x['id']] for x in body.get('items', [])), body.get('notes', [])])

anchors()
db = root / 'build' / 'live' / 'lots.sqlite'
for suffix in ('', '-wal', '-shm'):
    Path(f'{db}{suffix}').unlink(missing_ok=True)
db.write_bytes(b'these are not the droids ' * 200)
anchors()
print(json.dumps(out))
"""


def test_ar_anchors_answer_without_an_availability_layer_whose_file_is_not_a_database(tmp_path: Path):
    from datetime import datetime, timezone

    from api_server import CATALOG as CITY, REPO, make_project

    root = tmp_path / "project"
    make_project(root)
    (root / "secrets").mkdir()
    (root / "secrets" / "keys.txt").write_text(f"{KEY_ID}: {KEY}\n", encoding="utf-8")
    (root / "citytwin.yaml").write_text(CITY + "  lots:\n    kind: live\n    availability: {category: parking}\n"
                                        "api_keys_file: secrets/keys.txt\n", encoding="utf-8")
    updated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    r = subprocess.run([sys.executable, "-c", ANCHORS_SCRIPT, str(root), KEY, *map(str, CITY_HALL), updated],
                       capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-3000:]
    before, broken = json.loads(r.stdout.strip().splitlines()[-1])
    assert before[0] == 200 and ["availability", "L1"] in before[1]
    pois = [x for x in before[1] if x[0] == "poi"]
    # the other anchors still come, and a note says which layer is left out and why
    assert broken[0] == 200 and broken[1] == pois
    note = next(n for n in broken[2] if "lots" in n)
    assert "not a database" in note and "lots.sqlite" in note and str(root) not in note
