"""/conformance through pygeoapi, without its per-request growth.

pygeoapi 0.21's conformance handler extends its module-level CONFORMANCE_CLASSES list
in place on every call (the answer is de-duplicated, the list is not), so a long-running
server grows it by a few dozen entries per request. This route calls pygeoapi's handler
one request at a time and puts the list back afterwards.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response


def conformance_route(pygeoapi_conformance: Callable[[Request], Awaitable[Response]]):
    import pygeoapi.api as core

    base = list(core.CONFORMANCE_CLASSES)
    lock = asyncio.Lock()

    async def conformance(request: Request) -> Response:
        async with lock:
            try:
                return await pygeoapi_conformance(request)
            finally:
                core.CONFORMANCE_CLASSES[:] = base

    return conformance
