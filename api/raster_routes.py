"""titiler under /cog: tiles, TileJSON, point query, statistics and colormaps for raster layers.

Clients name a catalog raster layer (``?name=flood_depth``); the path dependency maps that
name to its COG under ``<build>/cog``. No file path or URL from the client ever reaches
GDAL, so the tiler cannot be pointed at other files or at remote servers. Every route checks
its parameters against the limits in ``raster_limits`` first, and reads through
``raster_reader.LimitedReader``, so no request can ask for an image larger than those limits.
Errors are ``{type, code, description}`` like on our other routes, and name the layer, never
the COG's path on the server.
"""
# No "from __future__ import annotations": FastAPI resolves the dependency's annotations at runtime.
import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from rio_tiler.colormap import cmap as default_cmap
from rio_tiler.errors import PointOutsideBounds
from rio_tiler.models import ImageData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from titiler.core.dependencies import create_colormap_dependency
from titiler.core.errors import DEFAULT_STATUS_CODES
from titiler.core.factory import ColorMapFactory, TilerFactory
from titiler.core.utils import render_image

from api.bodies import BodyError, read_limited
from api.errors import error
from api.params import BadParameter
from api.raster_limits import MAX_BODY_BYTES, MAX_CONCURRENT, RasterLimitError, check_request
from api.raster_reader import LimitedReader
from pipelines.catalog import Catalog
from pipelines.rasters import COG_DIR, cog_path, raster_layers

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


def render(image: ImageData, rescale: list | None = None, color_formula: str | None = None,
           **kwargs) -> tuple[bytes, str]:
    """titiler's renderer; a colour formula the image cannot take is the client's error (a 400).
    Rescaling comes first, as in titiler."""
    if color_formula:
        if rescale:
            image.rescale(rescale)
            rescale = None
        try:
            image.apply_color_formula(color_formula)
        except (IndexError, ValueError):
            raise RasterLimitError(f"color_formula {color_formula!r} cannot apply to this image ({image.count} "
                                   f"band(s) of {image.array.dtype}); it works on 8-bit red, green and blue bands "
                                   "(rescale=min,max makes 8-bit bands of other data)") from None
    return render_image(image, rescale=rescale, **kwargs)


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


class _Slots:
    """At most MAX_CONCURRENT raster requests are computed at once (each may hold a few hundred
    MB); the others wait here, holding nothing but their connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.slots.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.slots.release()

        async def send_then_release(message: Message) -> None:
            # The answer is computed once it starts: a client slow to read it holds no slot.
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_then_release)
        finally:
            release()


class _BodyLimit:
    """POST bodies (GeoJSON for /feature and /statistics) are refused past MAX_BODY_BYTES, before
    FastAPI reads them whole into memory."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return

        async def chunks() -> AsyncIterator[bytes]:
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                yield message.get("body", b"")
                more = message.get("more_body", False)

        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        try:
            body = await read_limited(chunks(), MAX_BODY_BYTES, "send fewer or simpler features", declared)
        except BodyError as exc:
            await error(exc.status, _CODES[exc.status], str(exc))(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


_CODES = {400: "InvalidParameterValue", 404: "NotFound", 413: "PayloadTooLarge", 422: "InvalidParameterValue"}


def _error_handlers(app: FastAPI, catalog: Catalog) -> None:
    """titiler's exception-to-status map plus ours, every answer in the shape of our other routes
    ({type, code, description}); a COG's path in a message becomes its layer name."""
    cog_dir = re.escape(str(catalog.build_path / COG_DIR))
    cog = re.compile(f"'?{cog_dir}" + r"/\.?([\w-]+?)(\.[0-9a-f]{32}\.tmp)?\.tif'?")

    def answer(status: int, message: str) -> JSONResponse:
        message = cog.sub(lambda m: f"raster layer '{m.group(1)}'", message)
        return error(status, _CODES.get(status, "ServerError"), message)

    def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(422, "; ".join(f"parameter '{e['loc'][-1]}': {e['msg']}" for e in exc.errors()))

    for exc_class, status in {**DEFAULT_STATUS_CODES, BadParameter: 400, PointOutsideBounds: 404}.items():
        app.add_exception_handler(exc_class, lambda request, exc, status=status: answer(status, str(exc)))
    app.add_exception_handler(StarletteHTTPException, lambda request, exc: answer(exc.status_code, str(exc.detail)))
    app.add_exception_handler(RequestValidationError, invalid)


def raster_app(catalog: Catalog) -> ASGIApp:
    """The titiler app to mount at PREFIX."""
    cmaps = colormaps()
    tiler = TilerFactory(
        reader=LimitedReader,
        render_func=render,
        path_dependency=cog_dependency(catalog),
        colormap_dependency=create_colormap_dependency(cmaps),
        router_prefix=PREFIX.strip("/"),
        add_viewer=False,
    )
    app = FastAPI(title="citytwin rasters", openapi_url="/api", docs_url="/api.html")
    limits = [Depends(check_request)]
    app.include_router(tiler.router, tags=["Raster layers"], dependencies=limits)
    app.include_router(ColorMapFactory(supported_colormaps=cmaps, router_prefix=PREFIX.strip("/")).router,
                       tags=["Colormaps"], dependencies=limits)
    _error_handlers(app, catalog)

    @app.get("/layers", tags=["Raster layers"], summary="The raster layers this server publishes")
    def layers() -> dict:
        # Lets a client (the viewer) skip an unpublished raster without provoking a 404.
        return {"layers": [{"name": n, "title": catalog.layers[n].title or n}
                           for n in sorted(raster_layers(catalog)) if cog_path(catalog, n).is_file()]}

    return _CacheControl(_BodyLimit(_Slots(app)))
