"""CQL2 filters on .../items: parsed here (api.cql2.parse), handed to pygeoapi already parsed.

pygeoapi 0.21 parses a GET ``filter`` as ECQL (not CQL2 text) and a POST body with
pygeofilter's cql2-json reader, and knows only the pre-CQL2 ``filter-lang`` names. This ASGI
middleware parses a GET ``filter`` (``filter-lang`` cql2-text, the default, or cql2-json) or a
POST cql2-json body with the ``cql2`` package, off the event loop, and answers a filter that
does not parse or is too large with a 400 that says why. A good GET filter goes on to pygeoapi
as cql2-text in the query string (a cql2-json one in its text form), so pygeoapi's paging links
keep it; a POST filter goes on as a body of canonical cql2-json. ``install`` makes pygeoapi read
both back into the same api.cql2.parse.Filter that the providers evaluate (api.providers.cql_filter on the
embedded store, api.cql2.to_sql on PostGIS).
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.bodies import body_once
from api.cql2.crs import in_storage_crs
from api.cql2.parse import Filter, FilterError, as_text, parse_json, parse_text
from api.errors import error

ITEMS_PATH = re.compile(r"^/collections/[^/]+/items$")
TEXT_LANGS = ("cql2-text", "cql-text")
JSON_LANGS = ("cql2-json", "cql-json")
CQL_JSON = b"application/query-cql-json"


class CQL2CompatMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not ITEMS_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            await self._get(scope, receive, send)
        elif scope["method"] == "POST" and _content_type(scope) != "application/geo+json":
            await self._post(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        text = next((v for k, v in params if k == "filter"), None)
        lang = next((v for k, v in params if k == "filter-lang"), "cql2-text")
        if lang not in TEXT_LANGS + JSON_LANGS:
            await error(400, "InvalidParameterValue", f"filter-lang {lang[:40]!r} is not supported; use "
                        "cql2-text or cql2-json")(scope, receive, send)
            return
        if text is None:
            await self.app(scope, receive, send)
            return
        parser = parse_text if lang in TEXT_LANGS else parse_json
        try:
            parsed = await run_in_threadpool(parser, text)
        except FilterError as exc:
            await error(400, "InvalidParameterValue", f"filter: {exc}")(scope, receive, send)
            return
        rest = [(k, v) for k, v in params if k not in ("filter", "filter-lang")]
        if lang not in TEXT_LANGS:
            try:
                text = await run_in_threadpool(as_text, parsed)
            except FilterError:  # no text form: pygeoapi gets the body (its paging links lose the filter)
                await self._as_post(scope, rest, parsed, receive, send)
                return
        # Still a GET: pygeoapi reads the text filter with api.cql2 (install) and keeps it in the
        # self, alternate, next and prev links it builds from the query string.
        query = urlencode([*rest, ("filter", text)]).encode("latin-1")
        await self.app(dict(scope, query_string=query), receive, send)

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if not body.strip():  # an empty body is api.items_requests' 400
            await self.app(scope, body_once(body, receive), send)
            return
        try:
            parsed = await run_in_threadpool(parse_json, body)
        except FilterError as exc:
            await error(400, "InvalidParameterValue", f"filter: {exc}")(scope, receive, send)
            return
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        await self._as_post(scope, [(k, v) for k, v in params if k != "filter-lang"], parsed, receive, send)

    async def _as_post(self, scope: Scope, params: list[tuple[str, str]], parsed: Filter,
                       receive: Receive, send: Send) -> None:
        payload = parsed.to_json().encode("utf-8")
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", CQL_JSON), (b"content-length", str(len(payload)).encode())]
        scope = dict(scope, method="POST", headers=headers, query_string=urlencode(params).encode("latin-1"))
        await self.app(scope, body_once(payload, receive), send)


def install() -> None:
    """Make pygeoapi read filters with api.cql2 (its ECQL and cql2-json readers are replaced
    in the module that calls them, and the filter's CRS handling with ours)."""
    import pygeoapi.api.itemtypes as items

    items.parse_ecql_text = parse_text
    items.parse_cql2_json = parse_json
    items.modify_pygeofilter = _prepare


def _prepare(parsed: Filter, *, filter_crs_uri: str, storage_crs_uri: str | None = None,
             geometry_column_name: str | None = None) -> Filter:
    del geometry_column_name  # providers map the queryable 'geometry' to their column
    return in_storage_crs(parsed, filter_crs_uri, storage_crs_uri)


def _content_type(scope: Scope) -> str:
    value = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    return value.split(";")[0].strip().lower()


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (api.cql_limits, outside this middleware, has bounded it)."""
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
