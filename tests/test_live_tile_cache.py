"""Live tiles kept per layer version: the cache's rules, the version every write bumps, and a
real server that never serves a kept tile after a write or past an item's expiry."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import mapbox_vector_tile
import pytest

from api_server import CITY_HALL, serve, wait_for
from pipelines.catalog import load_catalog
from pipelines.live import LiveLayer, parse_items
from test_live import TMS, collection, item, post, write_live_project
from tiles.live_tile_cache import CachedTile, LiveTileCache


def test_a_kept_tile_serves_only_its_version_until_its_first_expiry():
    cache = LiveTileCache(max_tiles=2)
    cache.put(("a", 1, 0, 0), CachedTile("7", b"one", valid_until=100.0))
    assert cache.get(("a", 1, 0, 0), "7", now=99.9).data == b"one"
    assert cache.get(("a", 1, 0, 0), "8", now=50.0) is None  # the layer was written since
    assert cache.get(("a", 1, 0, 0), "7", now=100.0) is None  # an item in it has expired
    assert cache.get(("a", 1, 1, 0), "7", now=50.0) is None


def test_the_cache_keeps_at_most_its_bound_dropping_the_least_recently_used():
    cache = LiveTileCache(max_tiles=2)
    for x in range(2):
        cache.put(("a", 1, x, 0), CachedTile("1", bytes([x]), valid_until=1e12))
    assert cache.get(("a", 1, 0, 0), "1", now=0) is not None  # tile 0 used last: tile 1 goes first
    cache.put(("a", 1, 2, 0), CachedTile("1", b"\x02", valid_until=1e12))
    assert len(cache) == 2
    assert cache.get(("a", 1, 1, 0), "1", now=0) is None
    assert [cache.get(("a", 1, x, 0), "1", now=0).data for x in (0, 2)] == [b"\x00", b"\x02"]


def test_every_write_of_items_bumps_the_layer_version_and_reads_do_not(tmp_path: Path):
    root = write_live_project(tmp_path)
    layer = LiveLayer(load_catalog(root), "incidents")
    seen = [layer.version()]
    layer.put(parse_items(item("a", *CITY_HALL)), "test")
    seen.append(layer.version())
    layer.features()
    assert layer.version() == seen[-1]
    layer.replace_origin("feed", parse_items(item("b", *CITY_HALL)), "test")
    seen.append(layer.version())
    congestion = LiveLayer(load_catalog(root), "congestion")
    before = congestion.version()
    (root / "data" / "congestion.geojson").write_text(json.dumps(collection(item("c", *CITY_HALL))))
    assert congestion.refresh()["stored"] == 1
    assert len(set(seen)) == 3 and congestion.version() != before


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    with serve(write_live_project(tmp_path_factory.mktemp("tilecache"))) as url:
        yield url


def tile_ids(base: str, z: int, x: int, y: int) -> set[str]:
    r = httpx.get(f"{base}/live/incidents/tiles/{z}/{x}/{y}", timeout=30)
    assert r.status_code in (200, 204), r.text
    return {f["properties"]["id"] for f in mapbox_vector_tile.decode(r.content).get("incidents", {"features": []})
            ["features"]} if r.status_code == 200 else set()


def test_a_served_tile_follows_each_post_and_drops_an_expired_item_without_a_write(base: str):
    t = TMS.tile(*CITY_HALL, 15)
    lon, lat = CITY_HALL
    assert post(base, "incidents", item("first", lon, lat)).status_code == 201
    assert tile_ids(base, 15, t.x, t.y) >= {"first"}
    assert tile_ids(base, 15, t.x, t.y) >= {"first"}  # served again, now from the cache
    assert post(base, "incidents", item("second", lon + 1e-5, lat)).status_code == 201
    assert tile_ids(base, 15, t.x, t.y) >= {"first", "second"}
    assert post(base, "incidents", item("brief", lon, lat + 1e-5, lifetime_s=2)).status_code == 201
    assert tile_ids(base, 15, t.x, t.y) >= {"first", "second", "brief"}
    wait_for(lambda: "brief" not in tile_ids(base, 15, t.x, t.y))
    assert tile_ids(base, 15, t.x, t.y) >= {"first", "second"}
