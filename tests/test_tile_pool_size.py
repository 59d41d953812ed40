"""The tile route's PostgreSQL pool: its size comes from citytwin.yaml (server.tile_db_connections),
else from the machine's cores, and no more tile statements than that run at once."""
from __future__ import annotations

import asyncio

import psycopg
import pytest
from pydantic import ValidationError

import pipelines.store.postgis as pg
from pipelines.catalog import Catalog
from pipelines.project import project_store
from pipelines.store.postgis import PostGISStore, default_tile_connections


@pytest.mark.parametrize(("cores", "expected"), [(1, 4), (2, 6), (4, 12), (64, 16), (None, 4)])
def test_default_is_three_per_core_within_4_to_16(monkeypatch, cores, expected):
    monkeypatch.setattr(pg.os, "cpu_count", lambda: cores)
    assert default_tile_connections() == expected


def test_catalog_value_is_validated():
    assert Catalog.model_validate({"server": {"tile_db_connections": 3}}).server.tile_db_connections == 3
    assert Catalog.model_validate({}).server.tile_db_connections is None
    for bad in (0, -1, 101, "many"):
        with pytest.raises(ValidationError):
            Catalog.model_validate({"server": {"tile_db_connections": bad}})


@pytest.mark.postgis
def test_the_catalog_bounds_how_many_tile_statements_run_at_once(pg_db_url, monkeypatch, tmp_path):
    monkeypatch.setenv("CITYTWIN_DATABASE_URL", pg_db_url)
    catalog = Catalog.model_validate({"server": {"tile_db_connections": 3}})
    catalog.root = tmp_path
    store = project_store(catalog)
    assert isinstance(store, PostGISStore) and store.tile_connections == 3

    async def busy(conn) -> None:
        await conn.execute("SELECT pg_sleep(0.25)")

    async def watch(aconn, done: asyncio.Event) -> int:
        most = 0
        while not done.is_set():  # how many sessions sleep in the database at once, every 20 ms
            cur = await aconn.execute("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE query = 'SELECT pg_sleep(0.25)' AND state = 'active'")
            most = max(most, (await cur.fetchone())[0])
            await asyncio.sleep(0.02)
        return most

    async def many() -> int:
        access = await store.async_access()
        async with await psycopg.AsyncConnection.connect(pg_db_url, autocommit=True) as aconn:
            done = asyncio.Event()
            watcher = asyncio.create_task(watch(aconn, done))
            await asyncio.gather(*(access.run(busy) for _ in range(12)))
            done.set()
            return await watcher

    try:
        most = asyncio.run(many())
    finally:
        store.close()
    assert most == 3  # 12 requests at once, 3 connections: the others waited in the pool
