"""/conformance through pygeoapi, without its per-request growth.

pygeoapi 0.21's conformance handler extends its module-level CONFORMANCE_CLASSES list
in place on every call (the answer is de-duplicated, the list is not), so a long-running
server grows it by a few dozen entries per request. This route calls pygeoapi's handler
one request at a time and puts the list back afterwards.

It adds the CQL2 classes (OGC 21-065) and Features Part 3 filtering that api.cql2 implements
on both stores, each passing the standard's own count tables (tests/test_cql2_ats.py). It also
drops the classes pygeoapi lists whatever is configured but this server does not
implement: Features Part 4 (create, replace, delete), since no collection is editable, and
Processes callbacks, since the server does not POST to URLs a client names.
"""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response


def conformance_route(pygeoapi_conformance: Callable[[Request], Awaitable[Response]]):
    import pygeoapi.api as core

    # the filter classes join pygeoapi's own list, so its JSON and HTML answers both carry them
    base = [*core.CONFORMANCE_CLASSES, *(c for c in FILTER_CLASSES if c not in core.CONFORMANCE_CLASSES)]
    core.CONFORMANCE_CLASSES[:] = base
    lock = asyncio.Lock()

    async def conformance(request: Request) -> Response:
        async with lock:
            try:
                resp = await pygeoapi_conformance(request)
            finally:
                core.CONFORMANCE_CLASSES[:] = base
        ctype = resp.headers.get("content-type", "")
        if resp.status_code == 200 and ctype.startswith("text/html"):
            return _without_html_items(resp)
        if resp.status_code != 200 or not ctype.startswith("application/json"):
            return resp
        doc = json.loads(resp.body.decode(resp.charset or "utf-8"))
        doc["conformsTo"] = [c for c in doc.get("conformsTo", []) if not c.startswith(NOT_IMPLEMENTED)]
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return Response(json.dumps(doc, ensure_ascii=False), status_code=200, headers=headers)

    return conformance


_CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
FILTER_CLASSES = (
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    *(_CQL2 + c for c in ("cql2-text", "cql2-json", "basic-cql2", "advanced-comparison-operators",
                          "case-insensitive-comparison", "accent-insensitive-comparison",
                          "basic-spatial-functions", "basic-spatial-functions-plus", "spatial-functions",
                          "temporal-functions", "property-property", "arithmetic")),
)
NOT_IMPLEMENTED = ("http://www.opengis.net/spec/ogcapi-features-4/",
                   # execute requests naming callback URLs are refused (api/auth.py)
                   "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/callback")
# pygeoapi's HTML page lists each class as one <li> holding its URI
_HTML_ITEM = re.compile(r"<li>\s*<a[^>]*>\s*(?:" + "|".join(re.escape(c) for c in NOT_IMPLEMENTED) + r")[^<]*</a>\s*</li>\s*")


def _without_html_items(resp: Response) -> Response:
    body = _HTML_ITEM.sub("", resp.body.decode(resp.charset or "utf-8"))
    headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "content-encoding")}
    return Response(body, status_code=200, headers=headers)
