"""Live tiles: the tiles themselves (checked against positions and values computed here with
morecantile and plain Python), the cache's rules (one read per layer version, one pass per zoom,
bounded in bytes), the version every write bumps, and a real server that never serves a kept
tile after a write or past an item's expiry."""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import httpx
import mapbox_vector_tile
import pytest

from api_server import CITY_HALL, serve, wait_for
from pipelines.catalog import load_catalog
from pipelines.live import LiveLayer, parse_items
from test_live import TMS, collection, item, post, write_live_project
from tiles.live_mvt import ZOOM_COST, LiveFrame, encode
from tiles.live_tile_cache import LiveTileCache


def pixel(lon: float, lat: float, z: int, x: int, y: int) -> tuple[float, float]:
    """Tile units, y up (mapbox_vector_tile.decode's default)."""
    b = TMS.xy_bounds(x, y, z)
    mx, my = TMS.xy(lon, lat)
    return (mx - b.left) / (b.right - b.left) * 4096, (my - b.bottom) / (b.top - b.bottom) * 4096


def points(n: int, **props) -> tuple[list, list, list, list]:
    """``n`` points in a 0.02-degree grid around City Hall: ids, GeoJSON texts, properties, expiries."""
    pts = [(CITY_HALL[0] + 0.002 * (i % 10), CITY_HALL[1] + 0.002 * (i // 10)) for i in range(n)]
    return ([f"p{i}" for i in range(n)], [json.dumps({"type": "Point", "coordinates": p}) for p in pts],
            [{"n": i, **props} for i in range(n)], [1000.0 + i for i in range(n)])


def decoded(data: bytes) -> dict[str, dict]:
    layer = mapbox_vector_tile.decode(data)["live"] if data else {"features": []}
    return {f["properties"]["id"]: f for f in layer["features"]}


def test_every_tile_of_a_zoom_holds_its_items_where_and_as_they_are():
    props = [{"name": "Main St", "lanes": -2, "speed": 12.5, "closed": True, "where": {"km": [1, 2]},
              "note": None},
             {"name": 7, "lanes": 3},  # one key, another type: kept as that item's own type
             {"speed": float("nan")}]
    lonlat = [CITY_HALL, (CITY_HALL[0] + 0.01, CITY_HALL[1]), (CITY_HALL[0], 89.5)]  # the last past Mercator's edge
    frame = LiveFrame.of("live", ["a", "b", "c"], [json.dumps({"type": "Point", "coordinates": p}) for p in lonlat],
                         props, [50.0, 40.0, 30.0])
    z = 14
    tiles = encode(frame, z)
    want = {}
    for fid, (lon, lat), p in zip("abc", lonlat, props):
        t = TMS.tile(lon, min(lat, 85.0511), z)  # the top row for a latitude past the grid
        want.setdefault((t.x, t.y), {})[fid] = (pixel(lon, min(lat, 85.05112878), z, t.x, t.y), p)
    assert set(tiles) == set(want)
    for xy, items in want.items():
        got = decoded(tiles[xy].data)
        assert set(got) == set(items)
        assert tiles[xy].valid_until == min(frame.expires[ord(f) - ord("a")] for f in items)
        layer = mapbox_vector_tile.decode(tiles[xy].data)["live"]
        used = {k for f in layer["features"] for k in f["properties"]}
        for fid, ((px, py), p) in items.items():
            assert got[fid]["geometry"]["coordinates"] == pytest.approx([px, py], abs=0.5)
            kept = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                    for k, v in p.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
            assert got[fid]["properties"] == {**kept, "id": fid}
            assert all(type(got[fid]["properties"][k]) is type(v) for k, v in kept.items())
        assert used <= {"id", "name", "lanes", "speed", "closed", "where"}
    # a tile alone is the same bytes as that tile of the whole zoom
    for (x, y), t in tiles.items():
        assert encode(frame, z, only=(x, y)) == {(x, y): t}
    assert encode(frame, z, only=(0, 0)) == {}


def test_a_zoom_is_read_once_per_version_and_made_in_one_pass_for_concurrent_requests():
    reads, clock = [], [0.0]

    def read() -> LiveFrame:  # like LiveLayer.columns: the items unexpired at the time of the read
        reads.append(1)
        ids, texts, props, expires = points(100)
        live = [i for i, e in enumerate(expires) if e > clock[0]]
        return LiveFrame.of("live", *([col[i] for i in live] for col in (ids, texts, props, expires)))

    cache = LiveTileCache()
    z = 16
    ids, texts, _, _ = points(100)
    where = {fid: TMS.tile(*json.loads(t)["coordinates"], z) for fid, t in zip(ids, texts)}
    keys = sorted({(t.x, t.y) for t in where.values()})
    got: dict = {}
    barrier = threading.Barrier(8)

    def ask(k: tuple[int, int]) -> None:
        barrier.wait()
        got[k] = cache.tile("live", "1", 0.0, read, z, *k)

    threads = [threading.Thread(target=ask, args=(k,)) for k in keys[:8]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reads) == 1  # eight requests at once after a write: one read, one pass
    got.update({k: cache.tile("live", "1", 0.0, read, z, *k) for k in keys[8:]})
    assert len(reads) == 1
    for k in keys:
        assert set(decoded(got[k].data)) >= {fid for fid, t in where.items() if (t.x, t.y) == k}
    assert cache.tile("live", "2", 0.0, read, z, *keys[0]).data and len(reads) == 2  # the next version
    clock[0] = 1000.0
    p0 = cache.tile("live", "2", 1000.0, read, z, where["p0"].x, where["p0"].y)
    assert "p0" not in decoded(p0.data) and len(reads) == 3  # p0 expired at 1000: read again
    assert cache.tile("live", "2", 1000.0, read, 0, 0, 0).data and len(reads) == 3  # another zoom, same read


def test_a_zoom_too_costly_to_make_whole_is_made_one_tile_at_a_time():
    # a polygon over a whole city covers millions of tiles at z20: only the asked ones are made
    ring = [[126.8, 37.4], [127.2, 37.4], [127.2, 37.7], [126.8, 37.7], [126.8, 37.4]]
    frame = LiveFrame.of("live", ["city"], [json.dumps({"type": "Polygon", "coordinates": [ring]})],
                         [{"kind": "alert"}], [100.0])
    assert frame.zoom_cost(20) > ZOOM_COST
    cache = LiveTileCache()
    t = TMS.tile(127.0, 37.5, 20)
    tile = cache.tile("live", "1", 0.0, lambda: frame, 20, t.x, t.y)
    layer = mapbox_vector_tile.decode(tile.data)["live"]
    (feat,) = layer["features"]
    assert feat["properties"] == {"kind": "alert", "id": "city"}
    # the tile is inside the polygon: drawn as the tile plus its 64-unit buffer
    xs = [p[0] for p in feat["geometry"]["coordinates"][0]]
    assert min(xs) == -64 and max(xs) == 4096 + 64
    assert cache.kept_bytes() == len(tile.data)


def test_kept_tiles_are_bounded_in_bytes_dropping_the_least_recently_used_zoom():
    frame = LiveFrame.of("live", *points(100))
    sizes = {z: sum(len(t.data) for t in encode(frame, z).values()) for z in (14, 15, 16)}
    reads = []
    cache = LiveTileCache(max_bytes=sizes[14] + sizes[15] + sizes[16] - 1)

    def read() -> LiveFrame:
        reads.append(1)
        return frame

    for z in (14, 15, 16):
        cache.tile("live", "1", 0.0, read, z, 0, 0)
    assert cache.kept_bytes() == sizes[15] + sizes[16]  # z14, used least recently, went
    assert len(reads) == 1


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


def served_tile(base: str, z: int, x: int, y: int) -> dict[str, dict]:
    r = httpx.get(f"{base}/live/incidents/tiles/{z}/{x}/{y}", timeout=30)
    assert r.status_code in (200, 204), r.text
    layer = mapbox_vector_tile.decode(r.content).get("incidents", {"features": []}) if r.status_code == 200 else {}
    return {f["properties"]["id"]: f for f in layer.get("features", [])}


def test_tiles_asked_after_an_update_show_every_item_where_the_update_put_it(base: str):
    # 120 items on a grid, then all of them moved in one write: the tiles of both zooms, first asked
    # before the write (so kept), show each item at its new place and none at its old one
    def grid(shift: float) -> list[dict]:
        return [item(f"grid-{i}", CITY_HALL[0] - 0.03 + 0.0041 * (i % 12) + shift,
                     CITY_HALL[1] - 0.02 + 0.0037 * (i // 12) + shift / 2, lanes=i, moved=shift > 0)
                for i in range(120)]

    def check(items: list[dict]) -> None:
        for z in (12, 16):
            where = {f["id"]: TMS.tile(*f["geometry"]["coordinates"], z) for f in items}
            tiles = {(t.x, t.y): served_tile(base, z, t.x, t.y) for t in where.values()}
            for f in items:
                t = where[f["id"]]
                got = tiles[(t.x, t.y)][f["id"]]
                assert got["geometry"]["coordinates"] == pytest.approx(
                    list(pixel(*f["geometry"]["coordinates"], z, t.x, t.y)), abs=0.5)
                assert got["properties"]["lanes"] == f["properties"]["lanes"]
                assert got["properties"]["moved"] is f["properties"]["moved"]

    before, after = grid(0.0), grid(0.0013)
    assert post(base, "incidents", collection(*before)).status_code == 201
    check(before)
    assert post(base, "incidents", collection(*after)).status_code == 201
    check(after)
