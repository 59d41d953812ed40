"""PostGIS tile serving survives the database, and the warm tile cache is bounded.

Each test runs a real ``citytwin serve`` on its own throw-away PostgreSQL cluster (the
session's cluster is shared, and these tests stop and start theirs). Expectations come from
the input polygons and the Web Mercator tile formulas (test_tiles' helpers), decoded with
mapbox_vector_tile, never from the code under test.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import geopandas as gpd
import httpx
import psycopg
from psycopg import sql
import pytest
import shapely

from api_server import CITY_HALL, CITYTWIN, REPO, sample_buildings, serve, serve_output, make_project
from postgis_server import ThrowawayCluster
from pipelines.store.postgis import tiling_table
from test_tiles import decode, interior_ids, lonlat_to_tile, tile_lonlat_bounds

pytestmark = pytest.mark.postgis

TILES = "/collections/buildings/tiles/WebMercatorQuad"
CACHE_MB = 0.016  # 16,000 bytes: about half of the sample city's z15-16 tiles


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    own = ThrowawayCluster()
    own.start()
    with psycopg.connect(own.url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    try:
        yield own
    finally:
        own.stop()


def pg_ctl(cluster: ThrowawayCluster, *args: str) -> None:
    """Stop or start the cluster in place (same data, same port)."""
    opts = f"-p {cluster.port} -k {cluster.root} -c listen_addresses=127.0.0.1 -c fsync=off"
    extra = ("-l", str(cluster.root / "log"), "-o", opts) if args[0] == "start" else ()
    res = cluster._run("pg_ctl", "-D", str(cluster.data_dir), "-w", "-t", "60", *extra, *args)
    assert res.returncode == 0, res.stderr


def city_tiles(zooms: range = range(13, 17)) -> list[tuple[int, int, int]]:
    """Every tile address (z, x, y) over the sample city's 1.8 km square, by zoom."""
    half_lon, half_lat = 0.0105, 0.0085  # a little past the ~900 m the buildings reach
    out = []
    for z in zooms:
        x0, y0 = lonlat_to_tile(CITY_HALL[0] - half_lon, CITY_HALL[1] + half_lat, z)
        x1, y1 = lonlat_to_tile(CITY_HALL[0] + half_lon, CITY_HALL[1] - half_lat, z)
        out += [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    return out


def names_in(data: bytes) -> set[str]:
    layer = decode(data)["buildings"]
    ids = interior_ids(layer)
    return {f["properties"]["name"] for f in layer["features"] if str(f["properties"]["id"]) in ids}


def features(data: bytes) -> list[str]:
    """The tile's features, in a canonical order."""
    return sorted(json.dumps(f, sort_keys=True) for f in decode(data)["buildings"]["features"])


def expected_names(buildings: gpd.GeoDataFrame, z: int, x: int, y: int) -> set[str]:
    tile = shapely.box(*tile_lonlat_bounds(z, x, y))
    return set(buildings.loc[shapely.intersects(buildings.geometry.values, tile), "name"])


def stats(base: str) -> dict:
    res = httpx.get(f"{base}/stats", timeout=10)
    assert res.status_code == 200 and res.headers["content-type"] == "application/json"
    return res.json()["tile_cache"]


def get_tile(client: httpx.Client, base: str, z: int, x: int, y: int, timeout: float = 30) -> httpx.Response:
    return client.get(f"{base}{TILES}/{z}/{y}/{x}", headers={"Accept-Encoding": "identity"}, timeout=timeout)


# -- 4. the warm cache ---------------------------------------------------------------
def test_cache_stays_under_its_limit_counts_and_follows_a_republish(tmp_path, cluster):
    project = tmp_path / "city"
    layers = make_project(project, database_url=cluster.url)
    catalog = project / "citytwin.yaml"
    catalog.write_text(catalog.read_text().replace("server:\n", f"server:\n  tile_cache_mb: {CACHE_MB}\n", 1))
    limit = int(CACHE_MB * 1_000_000)
    addresses = city_tiles(range(15, 17))
    with serve(project, database_url=cluster.url) as base, httpx.Client() as client:
        assert stats(base) == {"hits": 0, "misses": 0, "hit_rate": 0.0, "bytes": 0, "max_bytes": limit,
                               "entries": 0, "evictions": 0, "invalidated": 0}
        first: dict[tuple[int, int, int], bytes] = {}
        for z, x, y in addresses:
            res = client.get(f"{base}{TILES}/{z}/{y}/{x}", timeout=30)  # gzip: the form the cache holds
            assert res.status_code in (200, 204)
            if res.status_code == 200:
                first[(z, x, y)] = res.content  # httpx undoes the gzip
        assert len(first) > 20
        s = stats(base)
        assert s["misses"] == len(addresses) and s["hits"] == 0
        assert 0 < s["bytes"] <= limit
        # gzip as the server packs tiles; a tile over an eighth of the limit is served, not kept
        kept = [a for a in addresses if len(gzip.compress(first.get(a, b""), 6, mtime=0)) <= limit // 8
                or a not in first]
        assert len(kept) < len(addresses)
        assert s["evictions"] > 0 and s["entries"] + s["evictions"] == len(kept)

        # the last tile kept is still held (a hit); the first was evicted and is made again, the same
        last, oldest = kept[-1], next(a for a in kept if a in first)
        assert get_tile(client, base, *last).status_code in (200, 204)
        again = get_tile(client, base, *oldest)
        # the same bytes: the tile statement feeds ST_AsMVT in id order, not in scan order
        assert again.status_code == 200 and again.content == first[oldest]
        assert names_in(again.content) == expected_names(layers["buildings"], *oldest)
        s = stats(base)
        assert (s["hits"], s["misses"]) == (1, len(addresses) + 1)
        assert s["hit_rate"] == pytest.approx(1 / (len(addresses) + 2), abs=1e-4)
        assert s["bytes"] <= limit

        # republish changed geometry while the server runs: the next request has the new tile
        cached = next(a for a in reversed(addresses) if a in first)
        assert names_in(get_tile(client, base, *cached).content) == expected_names(layers["buildings"], *cached)
        moved = sample_buildings(seed=11)
        source = tmp_path / "moved.geojson"
        moved.to_file(source, driver="GeoJSON")
        env = {**os.environ, "CITYTWIN_DATABASE_URL": cluster.url}
        done = subprocess.run([str(CITYTWIN), "ingest", str(source), "--layer", "buildings", "--project", str(project)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        fresh = get_tile(client, base, *cached)
        assert fresh.status_code == 200
        assert names_in(fresh.content) == expected_names(moved, *cached) != expected_names(layers["buildings"], *cached)
        s = stats(base)
        assert s["invalidated"] > 0 and s["bytes"] <= limit
        hits, misses = s["hits"], s["misses"]
    # at shutdown the server writes the same counters to its log
    assert f"tile cache: {hits} hits, {misses} misses" in serve_output(project)


# -- 3. the database goes away and comes back -------------------------------------------
def test_tiles_answer_503_while_the_database_is_down_and_recover_without_restart(tmp_path, cluster):
    project = tmp_path / "city"
    layers = make_project(project, database_url=cluster.url)
    buildings = layers["buildings"]
    addresses = [a for a in city_tiles() if expected_names(buildings, *a)]
    warm, fresh, during = addresses[0], addresses[-1], addresses[1:-1]
    assert len(during) > 20
    with serve(project, database_url=cluster.url) as base, httpx.Client() as client:
        before = get_tile(client, base, *warm)
        assert before.status_code == 200
        assert client.get(f"{base}/collections/buildings/items?limit=3", timeout=30).status_code == 200
        ar_query = f"{base}/ar/view?lon={CITY_HALL[0]}&lat={CITY_HALL[1]}"
        ar_before = client.get(ar_query, timeout=30)
        side = 180 / 2 ** 15  # degrees per WorldCRS84Quad tile at level 15
        crs84 = (f"{base}/collections/buildings/tiles/WorldCRS84Quad/15/{int((90 - CITY_HALL[1]) // side)}/"
                 f"{int((CITY_HALL[0] + 180) // side)}")
        assert client.get(crs84, timeout=30).status_code == 200

        answers: list[tuple[int, dict, float]] = []
        stop = threading.Event()

        def keep_asking() -> None:
            with httpx.Client() as own:
                i = 0
                while not stop.is_set():
                    address = during[i % len(during)]
                    i += 1
                    t0 = time.monotonic()
                    res = get_tile(own, base, *address)
                    answers.append((res.status_code, dict(res.headers), time.monotonic() - t0))

        pg_ctl(cluster, "stop", "-m", "fast")
        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            time.sleep(1.0)
            # other routes while down: the fast Features path and TileJSON say 503 too; AR answers from memory
            items = client.get(f"{base}/collections/buildings/items?limit=3", timeout=30)
            assert items.status_code == 503 and "Retry-After" in items.headers, items.text
            assert items.json()["code"] == "ServiceUnavailable"
            tilejson = client.get(f"{base}{TILES}/tilejson.json", timeout=30)
            assert tilejson.status_code == 503 and int(tilejson.headers["Retry-After"]) > 0
            made = client.get(crs84, timeout=30)  # made from the store's features per request
            assert made.status_code == 503 and int(made.headers["Retry-After"]) > 0, made.text
            assert client.get(ar_query, timeout=30).status_code == ar_before.status_code
            time.sleep(3.0)
        finally:
            stop.set()
            asker.join()
        outage = list(answers)
        assert len(outage) >= 3
        for status, headers, took in outage:
            assert status in (200, 503), status
            assert took < 5.0
            if status == 503:
                assert int(headers["retry-after"]) > 0 and headers["content-type"] == "application/json"
        assert any(status == 503 for status, _, _ in outage)
        body = get_tile(client, base, *during[0])
        assert body.status_code == 503 and "not answering" in body.json()["description"]
        assert str(cluster.port) not in body.text and "127.0.0.1" not in body.text  # the database's address stays inside

        pg_ctl(cluster, "start")
        restarted = time.monotonic()
        while True:
            res = get_tile(client, base, *fresh)
            if res.status_code == 200 or time.monotonic() - restarted > 5.0:
                break
            assert res.status_code == 503
            time.sleep(0.2)
        assert res.status_code == 200, f"still {res.status_code} 5 s after the database came back: {res.text}"
        assert names_in(res.content) == expected_names(buildings, *fresh)
        assert features(get_tile(client, base, *warm).content) == features(before.content)
        assert client.get(f"{base}/collections/buildings/items?limit=3", timeout=30).status_code == 200
        log = serve_output(project)
    assert "Traceback" not in log, log[-3000:]
    assert "is not answering" in log and "answers again" in log  # the outage, in the server's log


# -- no tile query holds a connection for long ----------------------------------------------
def test_a_tile_query_blocked_in_the_database_is_cut_by_the_statement_timeout(tmp_path, cluster):
    """A tile query that cannot finish (its table locked by someone else) is stopped by the
    server's statement_timeout (30 s, as pygeoapi's) and answered 503, instead of waiting."""
    project = tmp_path / "city"
    make_project(project, database_url=cluster.url)
    x, y = lonlat_to_tile(*CITY_HALL, 16)
    with serve(project, database_url=cluster.url) as base, httpx.Client() as client:
        with psycopg.connect(cluster.url) as locker:
            # tiles read the layer's tiling side table; lock both, whichever a tile reads
            locker.execute(sql.SQL("LOCK TABLE buildings, {} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(tiling_table("buildings"))))
            # the server's 30 s statement_timeout answers first; the client waits up to 90 s for it
            res = get_tile(client, base, 16, x, y, timeout=90)
            locker.rollback()
        assert res.status_code == 503, res.text
        assert "statement_timeout" in res.json()["description"] and int(res.headers["Retry-After"]) > 0
        assert get_tile(client, base, 16, x, y).status_code == 200


def test_store_reads_while_the_database_is_down_raise_store_unavailable(cluster):
    """The store's reads (AR, transit and WorldCRS84Quad tiles use them) fail with the typed
    error while the database is down, and work again on the same store once it is back."""
    from geo.errors import StoreUnavailableError
    from pipelines.store.postgis import PostGISStore

    store = PostGISStore(cluster.url, statement_timeout_ms=30_000)
    try:
        store.publish("probe", sample_buildings(20))
        assert len(store.read("probe")) == 20
        pg_ctl(cluster, "stop", "-m", "fast")
        try:
            for call in (lambda: store.read("probe"), lambda: store.version("probe"), lambda: store.info("probe"),
                         store.layers):
                t0 = time.monotonic()
                with pytest.raises(StoreUnavailableError, match="is not answering"):
                    call()
                assert time.monotonic() - t0 < 5.0
        finally:
            pg_ctl(cluster, "start")
        deadline = time.monotonic() + 5.0
        while True:
            try:
                rows = store.read("probe", bbox=(126.9, 37.5, 127.1, 37.7))
                break
            except StoreUnavailableError:
                assert time.monotonic() < deadline, "the store did not recover within 5 s"
                time.sleep(0.2)
        assert sorted(rows["id"]) == sorted(sample_buildings(20)["id"])
    finally:
        store.close()
