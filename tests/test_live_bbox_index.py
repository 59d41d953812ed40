"""Bbox reads of a live layer go through an R*Tree of the items' envelopes, for new databases and
for ones made before the index; the answers are those of an exact test done here with shapely."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import mapping

from api_server import CITY_HALL
from pipelines.catalog import load_catalog
from pipelines.live import LiveLayer, parse_items
from test_live import write_live_project

OLD_SCHEMA = """
CREATE TABLE items (id TEXT PRIMARY KEY, origin TEXT NOT NULL,
    minx REAL NOT NULL, miny REAL NOT NULL, maxx REAL NOT NULL, maxy REAL NOT NULL,
    geometry TEXT NOT NULL, properties TEXT NOT NULL, timestamp TEXT NOT NULL, expires TEXT NOT NULL,
    expires_at REAL NOT NULL, written_by TEXT, written_at TEXT NOT NULL);
CREATE INDEX items_expires_at ON items (expires_at);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def random_items(rng: np.random.Generator, n: int, prefix: str) -> dict[str, shapely.Geometry]:
    """Points, short lines and small boxes within ~2 km of City Hall, ids ``prefix0``..."""
    lon0, lat0 = CITY_HALL
    out: dict[str, shapely.Geometry] = {}
    for i in range(n):
        x, y = lon0 + rng.uniform(-0.02, 0.02), lat0 + rng.uniform(-0.02, 0.02)
        dx, dy = rng.uniform(0.0001, 0.003, 2)
        out[f"{prefix}{i}"] = [shapely.Point(x, y), shapely.LineString([(x, y), (x + dx, y - dy)]),
                               shapely.box(x, y, x + dx, y + dy)][i % 3]
    return out


def payload(geoms: dict[str, shapely.Geometry]) -> dict:
    now = datetime.now(timezone.utc)
    times = {"timestamp": now.isoformat(), "expires": (now + timedelta(hours=1)).isoformat()}
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": fid, "geometry": mapping(g), "properties": dict(times)} for fid, g in geoms.items()]}


def check_boxes(layer: LiveLayer, geoms: dict[str, shapely.Geometry], rng: np.random.Generator) -> None:
    lon0, lat0 = CITY_HALL
    for size in (0.001, 0.004, 0.01, 0.05):
        for _ in range(10):
            w, s = lon0 + rng.uniform(-0.025, 0.02), lat0 + rng.uniform(-0.025, 0.02)
            box = (w, s, w + size, s + size)
            expected = {fid for fid, g in geoms.items() if g.intersects(shapely.box(*box))}
            assert {f["id"] for f in layer.features(box)} == expected, box


def uses_rtree(layer: LiveLayer) -> bool:
    with sqlite3.connect(layer.path) as con:
        plan = con.execute("EXPLAIN QUERY PLAN SELECT id FROM items WHERE expires_at > 0 AND rowid IN "
                           "(SELECT id FROM items_box WHERE maxx >= 0 AND minx <= 1 AND maxy >= 0 AND miny <= 1)"
                           ).fetchall()
    return any("items_box" in row[-1] and "VIRTUAL TABLE" in row[-1] for row in plan)


def test_bbox_answers_follow_writes_replacements_and_deletes(tmp_path: Path):
    rng = np.random.default_rng(17)
    layer = LiveLayer(load_catalog(write_live_project(tmp_path)), "incidents")
    geoms = random_items(rng, 300, "a")
    layer.put(parse_items(payload(geoms)), "test")
    assert uses_rtree(layer)
    check_boxes(layer, geoms, rng)
    # the same ids moved (INSERT OR REPLACE): the index follows, no old envelope answers
    moved = random_items(np.random.default_rng(99), 150, "a")
    layer.put(parse_items(payload(moved)), "test")
    geoms.update(moved)
    check_boxes(layer, geoms, rng)
    # a feed replaces its whole origin: the posted ones stay, the feed's earlier set goes
    feed_one, feed_two = random_items(rng, 200, "f"), random_items(rng, 50, "f")
    layer.replace_origin("feed", parse_items(payload(feed_one)), "test")
    check_boxes(layer, {**geoms, **feed_one}, rng)
    layer.replace_origin("feed", parse_items(payload(feed_two)), "test")
    check_boxes(layer, {**geoms, **feed_two}, rng)
    with sqlite3.connect(layer.path) as con:
        assert con.execute("SELECT count(*) FROM items_box").fetchone()[0] == len(geoms) + len(feed_two)


def test_a_database_from_before_the_index_is_indexed_at_its_first_read(tmp_path: Path):
    root = write_live_project(tmp_path)
    rng = np.random.default_rng(5)
    geoms = random_items(rng, 240, "old")
    rows = LiveLayer._rows(parse_items(payload(geoms)), "post", "test", "2026-01-01T00:00:00Z")
    path = root / "build" / "live" / "congestion.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        con.executescript(OLD_SCHEMA)
        con.executemany(LiveLayer._INSERT, rows)
    (root / "data" / "congestion.geojson").unlink(missing_ok=True)  # nothing watched replaces the items
    layer = LiveLayer(load_catalog(root), "congestion")
    check_boxes(layer, geoms, rng)  # the first read sets the database up (every connection checks it)
    assert uses_rtree(layer)
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM items_box").fetchone()[0] == 240
