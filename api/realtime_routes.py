"""GTFS-Realtime in the server: the poller's life (started and stopped with the app) and
GET /transit/realtime, the state of each feed: what was last loaded and the last refusal."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pipelines.catalog import Catalog
from pipelines.gtfs_rt.decode import FEED_TYPES
from pipelines.gtfs_rt.poller import Poller
from pipelines.gtfs_rt.store import read_status, state_path


def realtime_lifespan(catalog: Catalog):
    """The app's lifespan: poll the catalog's realtime URLs while the server runs."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        poller = Poller(catalog)
        poller.start()
        try:
            yield
        finally:
            await run_in_threadpool(poller.stop)

    return lifespan


def realtime_status(catalog: Catalog) -> dict:
    feeds = {}
    for feed, cfg in catalog.realtime.items():
        path = state_path(catalog.build_path, feed)
        kinds = {}
        for kind in FEED_TYPES:
            url = getattr(cfg, kind)
            status = read_status(path, kind) if path.is_file() else None
            if url is None and (status is None or status.ok_at is None and status.error is None):
                continue
            kinds[kind] = {"url": url, "layer": {"vehicle_positions": cfg.vehicles_layer,
                                                  "alerts": cfg.alerts_layer}.get(kind),
                           **(asdict(status) if status else {})}
        feeds[feed] = {"interval_s": cfg.interval_s, "max_age_s": cfg.max_age_s, "feeds": kinds}
    return {"realtime": feeds}


def realtime_routes(catalog: Catalog) -> list[BaseRoute]:
    async def status(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(realtime_status, catalog), headers={"Cache-Control": "no-cache"})

    return [Route("/transit/realtime", status, methods=["GET", "HEAD"])]
