"""Items of a live layer through pygeoapi: the layer is opened once per catalog version.

pygeoapi makes a provider for every items request. Validating the catalog and running the live
database's schema each time cost a good share of a loaded server; the catalog is now validated
once per version of its file, and the schema once per database file (a removed one is made again
by the next request).
Checked in a fresh process (one pygeoapi config per process) on the app, counting the calls with
a profile hook.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from api_server import CITY_HALL, REPO
from test_live import KEY, LIVE_CATALOG, collection, item, write_live_project

SCRIPT = r"""
import json, sys, threading, warnings
warnings.simplefilter('ignore')
from pathlib import Path
from starlette.testclient import TestClient
from api.app import create_app
import pipelines.catalog as catalog_module

root, key = Path(sys.argv[1]), sys.argv[2]
steps = json.loads(sys.argv[3])
counts = {'validate': 0, 'schema': 0}
VALIDATE = catalog_module._validate.__code__

def hook(frame, event, arg):
    if event == 'call' and frame.f_code is VALIDATE:
        counts['validate'] += 1
    elif event == 'c_call' and getattr(arg, '__name__', '') == 'executescript':
        counts['schema'] += 1

client = TestClient(create_app(str(root), '127.0.0.1', 8000))
threading.setprofile(hook)
sys.setprofile(hook)
out = []
for step in steps:
    before = dict(counts)
    if step['do'] == 'post':
        r = client.post('/live/incidents/items', json=step['body'], headers={'X-API-Key': key})
        assert r.status_code == 201, r.text
    elif step['do'] == 'write':
        path = root / step['path']
        path.write_text(step['text'], encoding='utf-8')
    elif step['do'] == 'remove':
        for suffix in ('', '-wal', '-shm'):
            Path(str(root / step['path']) + suffix).unlink(missing_ok=True)
    ids = []
    for _ in range(step.get('reads', 1)):
        r = client.get('/collections/incidents/items', params={'f': 'json', 'limit': 1000})
        assert r.status_code == 200, r.text
        ids.append(sorted(f['id'] for f in r.json()['features']))
    out.append({'ids': ids, 'validate': counts['validate'] - before['validate'],
                'schema': counts['schema'] - before['schema']})
sys.setprofile(None)
print(json.dumps(out))
"""


def test_items_requests_open_the_layer_once_per_catalog_version_and_the_schema_once_per_database(tmp_path: Path):
    root = write_live_project(tmp_path / "project")
    lon, lat = CITY_HALL
    watched = collection(item("file-1", lon + 0.001, lat))
    with_source = LIVE_CATALOG.replace("    title: Traffic incidents\n",
                                       "    title: Traffic incidents\n    source: data/incidents.geojson\n")
    assert with_source != LIVE_CATALOG
    (root / "data" / "incidents.geojson").write_text(json.dumps(watched), encoding="utf-8")
    steps = [
        {"do": "read", "reads": 1},  # the layer may be opened here (or already by create_app)
        {"do": "read", "reads": 10},
        {"do": "post", "body": item("posted-1", lon, lat)},
        {"do": "write", "path": "citytwin.yaml", "text": with_source, "reads": 5},
        {"do": "remove", "path": "build/live/incidents.sqlite", "reads": 5},
    ]
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(root), KEY, json.dumps(steps)], capture_output=True,
                       text=True, timeout=300, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-3000:]
    first, repeated, posted, catalog_changed, removed = json.loads(r.stdout.strip().splitlines()[-1])

    assert first["ids"] == [[]]
    # ten more requests: nothing opened again (before: one validation and one schema script each)
    assert repeated["ids"] == [[]] * 10
    assert (repeated["validate"], repeated["schema"]) == (0, 0)
    # a new write shows in the next request, with nothing opened again
    assert posted["ids"] == [["posted-1"]]
    assert (posted["validate"], posted["schema"]) == (0, 0)
    # the catalog now watches a file: the next request reloads the catalog once and reads the file
    assert catalog_changed["ids"] == [["file-1", "posted-1"]] * 5
    assert catalog_changed["validate"] == 1 and catalog_changed["schema"] == 0
    # the database removed: the next request makes it again (its tables once) and re-reads the file,
    # with the catalog as it was
    assert removed["ids"] == [["file-1"]] * 5
    assert removed["schema"] == 1 and removed["validate"] == 0
