"""Landing page: pygeoapi's own, plus links to the map viewer and the 3D viewer.

pygeoapi 0.21 builds the landing links in code (no config hook), so this route calls
pygeoapi's landing handler and adds one link to the JSON, and one section to the HTML.
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

VIEWER_TITLE = "Map viewer"
VIEWER3D_TITLE = "3D viewer (3D Tiles, CesiumJS)"
_HTML_ANCHOR = re.compile(r'<section id="openapi">')


def viewer_link(base_url: str) -> dict:
    return {"rel": "alternate", "type": "text/html", "title": VIEWER_TITLE, "href": f"{base_url}/viewer/"}


def viewer3d_link(base_url: str) -> dict:
    return {"rel": "alternate", "type": "text/html", "title": VIEWER3D_TITLE, "href": f"{base_url}/viewer/3d/"}


def _add_to_html(text: str, link: dict) -> str:
    section = (
        '<section id="viewer">\n      <h2>Map viewer</h2>\n      <p><a href="'
        + html.escape(link["href"]) + '">Open the map viewer (3D buildings, vector tiles)</a></p>\n'
        '      <p><a href="' + html.escape(link["href"]) + '3d/">Open the 3D viewer (3D Tiles, CesiumJS)</a></p>'
        '\n  </section>\n  '
    )
    if _HTML_ANCHOR.search(text):
        return _HTML_ANCHOR.sub(lambda m: section + m.group(0), text, count=1)
    return text.replace("</body>", section + "</body>", 1)


def landing_route(pygeoapi_landing: Callable[[Request], Awaitable[Response]], base_url: str):
    """A Starlette endpoint wrapping pygeoapi's landing page handler."""
    link = viewer_link(base_url)

    async def landing(request: Request) -> Response:
        resp = await pygeoapi_landing(request)
        if resp.status_code != 200:
            return resp
        ctype = resp.headers.get("content-type", "")
        body = resp.body.decode(resp.charset or "utf-8")
        if ctype.startswith("text/html"):
            body = _add_to_html(body, link)
        elif ctype.startswith("application/json"):
            doc = json.loads(body)
            doc.setdefault("links", []).extend([link, viewer3d_link(base_url)])
            body = json.dumps(doc, ensure_ascii=False)
        else:
            return resp  # JSON-LD and anything else: pygeoapi's document as is
        headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
        return Response(body, status_code=200, headers=headers)

    return landing
