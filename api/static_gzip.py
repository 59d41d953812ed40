"""Static files gzip-compressed for clients that accept it.

The viewer's libraries are text: CesiumJS alone is 6 MB of JavaScript, 1.8 MB gzipped, and an AR
phone on a mobile network pays for every byte of the first view. Each file is compressed once
(off the event loop) and kept in a cache bounded in bytes; a Range request, a small file or a type
that is already compressed (images, GLB, PMTiles) goes as it is.
"""
from __future__ import annotations

import gzip
import os
import threading
from collections import OrderedDict

import anyio
from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

COMPRESSIBLE = ("text/", "application/javascript", "application/json", "application/xml", "image/svg+xml",
                "application/wasm")
MIN_BYTES = 1024  # below this the gzip header costs more than it saves
MAX_BYTES = 32 << 20  # larger files go uncompressed rather than pin that much memory
CACHE_BYTES = 64 << 20
LEVEL = 6


def accepts_gzip(headers: Headers) -> bool:
    """True when Accept-Encoding lists gzip (or *) without q=0."""
    for part in headers.get("accept-encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            if not (q.startswith("q=") and _q_is_zero(q[2:])):
                return True
    return False


def _q_is_zero(value: str) -> bool:
    try:
        return float(value) == 0
    except ValueError:
        return False


class GzipStaticFiles(StaticFiles):
    """StaticFiles whose text files are sent gzip-encoded to clients that accept it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if not isinstance(response, FileResponse) or response.status_code != 200:
            return response
        st = response.stat_result
        media = response.headers.get("content-type", "")
        if st is None or not media.startswith(COMPRESSIBLE) or not MIN_BYTES <= st.st_size <= MAX_BYTES:
            return response
        response.headers["vary"] = "Accept-Encoding"  # a cache must not hand this copy to a gzip client
        request = Headers(scope=scope)
        if "range" in request or not accepts_gzip(request):
            return response
        etag = response.headers["etag"].rstrip('"') + '-gzip"'  # another representation, another tag
        if etag in [t.strip() for t in request.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={"etag": etag, "vary": "Accept-Encoding"})
        body = await anyio.to_thread.run_sync(self._compressed, str(response.path), st)
        headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "etag")}
        return Response(body, headers={**headers, "etag": etag, "content-encoding": "gzip"})

    def _compressed(self, path: str, st: os.stat_result) -> bytes:
        key = (path, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        with open(path, "rb") as f:
            body = gzip.compress(f.read(), LEVEL, mtime=0)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = body
                self._cached_bytes += len(body)
                while self._cached_bytes > CACHE_BYTES and len(self._cache) > 1:
                    self._cached_bytes -= len(self._cache.popitem(last=False)[1])
        return body
