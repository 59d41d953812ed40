"""Accept the standard CQL2 ``filter-lang`` values on GET .../items.

pygeoapi 0.21 only accepts ``filter-lang=cql-text`` / ``cql-json`` (pre-CQL2 names) and
parses a GET ``filter`` as text. OGC API Features Part 3 clients send ``cql2-text`` and
``cql2-json``. This ASGI middleware maps ``cql2-text`` to the name pygeoapi knows, and
turns a GET with a ``cql2-json`` filter into the POST-with-JSON-body that pygeoapi
already handles. Nothing else is touched.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ITEMS_PATH = re.compile(r"^/collections/[^/]+/items$")


class CQL2CompatMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not ITEMS_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        lang = next((v for k, v in params if k == "filter-lang"), None)
        if lang == "cql2-text":
            params = [(k, "cql-text" if k == "filter-lang" else v) for k, v in params]
            scope = dict(scope, query_string=urlencode(params).encode("latin-1"))
        elif lang == "cql2-json":
            body = next((v for k, v in params if k == "filter"), None)
            if body is not None:
                rest = [(k, v) for k, v in params if k not in ("filter", "filter-lang")]
                headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
                payload = body.encode("utf-8")
                headers += [(b"content-type", b"application/query-cql-json"),
                            (b"content-length", str(len(payload)).encode())]
                scope = dict(scope, method="POST", headers=headers, query_string=urlencode(rest).encode("latin-1"))
                receive = body_once(payload, receive)
        await self.app(scope, receive, send)


def body_once(payload: bytes, original: Receive) -> Receive:
    """Deliver ``payload`` as the request body, then defer to the real channel (disconnects)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return await original()

    return receive
