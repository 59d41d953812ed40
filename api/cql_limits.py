"""Refuse an oversized CQL2 filter on .../items before pygeoapi parses it.

pygeoapi parses a ``filter`` (GET query string, or a POST body of cql2-json) whatever its
size, for every backend. A filter longer than MAX_FILTER_CHARS answers 400 here instead,
with the size and the limit, so parsing cost stays small. Sits outside CQL2CompatMiddleware,
which parses what passes.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.bodies import body_once
from api.cql2.parse import MAX_FILTER_CHARS
from api.cql_compat import ITEMS_PATH


class CQLSizeLimit:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not ITEMS_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        too_big = None
        if scope["method"] == "GET":
            params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            size = max((len(v) for k, v in params if k == "filter"), default=0)
            if size > MAX_FILTER_CHARS:
                too_big = f"the filter has {size:,} characters"
        elif scope["method"] == "POST" and _content_type(scope) != "application/geo+json":
            body, whole = await _read_at_most(receive, MAX_FILTER_CHARS)
            if not whole:
                too_big = f"the filter body has over {MAX_FILTER_CHARS:,} bytes"
            receive = body_once(body, receive)
        if too_big:
            await JSONResponse({"code": "InvalidParameterValue", "type": "InvalidParameterValue",
                                "description": f"{too_big}; at most {MAX_FILTER_CHARS:,} are accepted: "
                                              "split it into simpler requests or narrow them with a bbox"},
                               status_code=400)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _content_type(scope: Scope) -> str:
    value = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    return value.split(";")[0].strip().lower()


async def _read_at_most(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body, or its first ``limit + 1`` bytes; the flag says whether it is whole."""
    chunks, size = [], 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True  # disconnected: let the app see an empty remainder
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return b"".join(chunks)[:limit + 1], False
        if not message.get("more_body", False):
            return b"".join(chunks), True
