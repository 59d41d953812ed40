"""``citytwin serve``: run the app with uvicorn, in one or several processes."""
from __future__ import annotations

import gc
import json
import os
import socket
from pathlib import Path

import click
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.app import create_app
from api.errors import error_body
from api.pygeoapi_config import base_url
from api.tile_cache import summary as tile_cache_summary
from pipelines.catalog import load_catalog

_PROJECT_ENV = "CITYTWIN_SERVE_PROJECT"
_HOST_ENV = "CITYTWIN_SERVE_HOST"
_PORT_ENV = "CITYTWIN_SERVE_PORT"


class NoDelayHttpTools(HttpToolsProtocol):
    """httptools with TCP_NODELAY on every connection, and JSON for requests it cannot parse.

    asyncio sets TCP_NODELAY only on sockets made
    with proto=IPPROTO_TCP, and the listening socket uvicorn shares between worker processes
    has proto 0: there Nagle's algorithm held each response ~40 ms for the client's delayed
    ACK (p50 44 ms at 16 connections on the AR benchmark, against 15 ms with one process)."""

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser refuses (a URL over about 64 kB, a malformed line) answered
        with the JSON error every route gives, not uvicorn's plain text."""
        body = json.dumps(error_body("InvalidRequest", "the request is not HTTP this server can read: a malformed "
                                     "request line or header, or a URL over about 64 kB; send "
                                     "long inputs in a POST body")).encode()
        head = [STATUS_LINE[400], *(b"%s: %s\r\n" % (k, v) for k, v in self.server_state.default_headers),
                b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


# Measured on the AR benchmark: httptools parses faster than h11, and the stock asyncio loop
# kept p99 latency lower than uvloop at 16 connections.
_UVICORN = {"http": NoDelayHttpTools, "loop": "asyncio", "log_level": "warning", "access_log": False}
# uvicorn kills a worker that does not answer its supervisor's ping within this time; at its
# default of 5 s, workers still building their app on a busy machine were killed and
# restarted over and over, and the server never answered.
WORKER_HEALTHCHECK_S = 120


def settle_heap() -> None:
    """Collect once, then exclude everything built so far (libraries, the app, its in-memory
    indexes) from later garbage collections: a full collection walks every tracked object,
    and over a loaded server that is a pause of many milliseconds in the middle of a request."""
    gc.collect()
    gc.freeze()


def report_at_shutdown(app: ASGIApp) -> ASGIApp:
    """``app`` that writes the tile cache's counters to the log when the server shuts down."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def watched() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and (line := tile_cache_summary()):
                click.echo(f"[pid {os.getpid()}] {line}", err=True)
            return message

        await app(scope, watched, send)

    return wrapped


def app_from_env():
    """uvicorn factory for worker processes: each builds its own app for the same project."""
    app = report_at_shutdown(create_app(Path(os.environ[_PROJECT_ENV]), host=os.environ[_HOST_ENV],
                                        port=int(os.environ[_PORT_ENV])))
    settle_heap()
    return app


def run(project: Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve ``project`` until interrupted. Raises CitytwinError when nothing is built.

    The app is stateless over the store, so ``workers`` > 1 runs that many processes on one
    port (uvicorn's supervisor), which is how serving scales on one machine.
    """
    app = report_at_shutdown(create_app(project, host=host, port=port))  # fails early, in this process, if nothing is built
    url = base_url(load_catalog(project), host, port)
    click.echo(f"serving {url} (viewer at /viewer/) with {workers} process{'es' if workers > 1 else ''}")
    if workers <= 1:
        settle_heap()
        uvicorn.run(app, host=host, port=port, **_UVICORN)
        return
    os.environ.update({_PROJECT_ENV: str(Path(project).resolve()), _HOST_ENV: host, _PORT_ENV: str(port)})
    uvicorn.run("api.server:app_from_env", factory=True, workers=workers, host=host, port=port,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_S, **_UVICORN)
