"""Landing page: pygeoapi's own, plus links to the map viewer, the 3D viewer and the AR preview.

pygeoapi 0.21 builds the landing links in code (no config hook), so this route calls
pygeoapi's landing handler and adds the links to the JSON, and one section to the HTML.
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response

# (path under the base URL, link title, text of the HTML link)
VIEWERS = [
    ("/viewer/", "Map viewer", "Open the map viewer (3D buildings, vector tiles)"),
    ("/viewer/3d/", "3D viewer (3D Tiles, CesiumJS)", "Open the 3D viewer (3D Tiles, CesiumJS)"),
    ("/viewer/ar/", "AR preview", "Open the AR preview (what a phone camera at a place would label)"),
]
_HTML_ANCHOR = re.compile(r'<section id="openapi">')


def viewer_links(base_url: str) -> list[dict]:
    return [{"rel": "alternate", "type": "text/html", "title": title, "href": f"{base_url}{path}"}
            for path, title, _ in VIEWERS]


def _add_to_html(text: str, base_url: str) -> str:
    items = "".join(f'\n      <p><a href="{html.escape(base_url + path)}">{html.escape(label)}</a></p>'
                    for path, _, label in VIEWERS)
    section = f'<section id="viewer">\n      <h2>Viewers</h2>{items}\n  </section>\n  '
    if _HTML_ANCHOR.search(text):
        return _HTML_ANCHOR.sub(lambda m: section + m.group(0), text, count=1)
    return text.replace("</body>", section + "</body>", 1)


def landing_route(pygeoapi_landing: Callable[[Request], Awaitable[Response]], base_url: str,
                  extra_links: Sequence[dict] = ()):
    """A Starlette endpoint wrapping pygeoapi's landing page handler; ``extra_links`` (e.g. the
    Records catalog) join the viewer links in the JSON."""

    async def landing(request: Request) -> Response:
        resp = await pygeoapi_landing(request)
        if resp.status_code != 200:
            return resp
        ctype = resp.headers.get("content-type", "")
        body = resp.body.decode(resp.charset or "utf-8")
        if ctype.startswith("text/html"):
            body = _add_to_html(body, base_url)
        elif ctype.startswith("application/json"):
            doc = json.loads(body)
            doc.setdefault("links", []).extend([*viewer_links(base_url), *extra_links])
            body = json.dumps(doc, ensure_ascii=False)
        else:
            return resp  # JSON-LD and anything else: pygeoapi's document as is
        headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
        return Response(body, status_code=200, headers=headers)

    return landing
