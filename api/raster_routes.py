"""titiler under /cog: tiles, TileJSON, point query, statistics and colormaps for raster layers.

Clients name a catalog raster layer (``?name=flood_depth``); the path dependency maps that
name to its COG under ``<build>/cog``. No file path or URL from the client ever reaches
GDAL, so the tiler cannot be pointed at other files or at remote servers.
"""
# No "from __future__ import annotations": FastAPI resolves the dependency's annotations at runtime.
from typing import Annotated

import numpy as np
from fastapi import FastAPI, HTTPException, Query
from rio_tiler.colormap import cmap as default_cmap
from starlette.types import ASGIApp, Receive, Scope, Send
from titiler.core.dependencies import create_colormap_dependency
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import ColorMapFactory, TilerFactory

from pipelines.catalog import Catalog
from pipelines.rasters import cog_path, raster_layers

PREFIX = "/cog"
CACHE_CONTROL = "public, max-age=300"

# Flood depth in metres, for use without rescaling: dry (< 1 cm) stays transparent,
# deeper water gets a darker blue. Bands follow common flood-map classes.
FLOOD_INTERVALS = [
    ((0.01, 0.25), (198, 219, 239, 200)),
    ((0.25, 0.5), (158, 202, 225, 215)),
    ((0.5, 1.0), (107, 174, 214, 225)),
    ((1.0, 2.0), (49, 130, 189, 235)),
    ((2.0, 3.0), (8, 81, 156, 245)),
    ((3.0, 1.0e6), (8, 48, 107, 255)),
]


def flood_ramp() -> dict[int, tuple[int, int, int, int]]:
    """256-entry blue ramp for rescaled depth (``rescale=0,3``): 0 transparent, then light to dark."""
    t = np.linspace(0.0, 1.0, 255)
    light, dark = np.array([222, 235, 247]), np.array([8, 48, 107])
    rgb = np.rint(light + (dark - light) * t[:, None]).astype(int)
    ramp = {0: (0, 0, 0, 0)}
    for i, (r, g, b) in enumerate(rgb, start=1):
        ramp[i] = (int(r), int(g), int(b), 255)
    return ramp


def colormaps():
    return default_cmap.register({"flood": FLOOD_INTERVALS, "flood_ramp": flood_ramp()})


def cog_dependency(catalog: Catalog):
    """A titiler path dependency: ``?name=<raster layer>`` -> its COG file."""
    known = sorted(raster_layers(catalog))

    described = Query(description=f"Raster layer name, one of: {', '.join(known) or 'none'}")

    def dataset(name: Annotated[str, described]) -> str:
        if name not in known:
            raise HTTPException(404, f"no raster layer {name!r}; known: {', '.join(known) or 'none'}")
        path = cog_path(catalog, name)
        if not path.is_file():
            raise HTTPException(404, f"raster layer {name!r} has no COG yet; run 'citytwin build' for the project")
        return str(path)

    return dataset


class _CacheControl:
    """Successful GETs may be cached a few minutes; a rebuild replaces the COG atomically."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return

        async def send_with_cache(message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers.append((b"cache-control", CACHE_CONTROL.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cache)


def raster_app(catalog: Catalog) -> ASGIApp:
    """The titiler app to mount at PREFIX."""
    cmaps = colormaps()
    tiler = TilerFactory(
        path_dependency=cog_dependency(catalog),
        colormap_dependency=create_colormap_dependency(cmaps),
        router_prefix=PREFIX.strip("/"),
        add_viewer=False,
    )
    app = FastAPI(title="citytwin rasters", openapi_url="/api", docs_url="/api.html")
    app.include_router(tiler.router, tags=["Raster layers"])
    app.include_router(ColorMapFactory(supported_colormaps=cmaps, router_prefix=PREFIX.strip("/")).router,
                       tags=["Colormaps"])
    add_exception_handlers(app, DEFAULT_STATUS_CODES)

    @app.get("/layers", tags=["Raster layers"], summary="The raster layers this server publishes")
    def layers() -> dict:
        # Lets a client (the viewer) skip an unpublished raster without provoking a 404.
        return {"layers": [{"name": n, "title": catalog.layers[n].title or n}
                           for n in sorted(raster_layers(catalog)) if cog_path(catalog, n).is_file()]}

    return _CacheControl(app)
