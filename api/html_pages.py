"""Small HTML pages for the resources pygeoapi does not render (3D-only collections)."""
from __future__ import annotations

import html

from starlette.requests import Request


def wants_html(request: Request) -> bool:
    """f=html, or no f and a browser's Accept header (as pygeoapi decides)."""
    fmt = request.query_params.get("f")
    if fmt is not None:
        return fmt == "html"
    return "text/html" in request.headers.get("accept", "")


def collection_html(doc: dict) -> str:
    """A collection description (id, title, description, links) as a page."""
    esc = html.escape
    links = "".join(f'<li><a href="{esc(lk["href"])}">{esc(lk.get("title") or lk["href"])}</a> '
                    f'({esc(lk.get("type", ""))})</li>' for lk in doc.get("links", []))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(doc.get("title", ""))}</title>'
            f'</head><body><h1>{esc(doc.get("title", ""))}</h1><p>{esc(doc.get("description", ""))}</p>'
            f'<h2>Links</h2><ul>{links}</ul></body></html>\n')
