"""/openapi as HTML: Swagger UI from the npm package swagger-ui-dist (viewer/package.json), served
by this server like the viewers' libraries, so the page works offline. pygeoapi's own page loads
Swagger UI from a CDN."""
from __future__ import annotations

import html
import json

VENDOR = "/viewer/vendor/swagger-ui-dist"


def swagger_page(title: str = "API documentation", spec_url: str = "/openapi?f=json") -> str:
    """The page; ``spec_url`` is the JSON document it renders."""
    esc = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<link rel="stylesheet" href="{VENDOR}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{VENDOR}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: {json.dumps(spec_url)}, dom_id: "#swagger-ui", deepLinking: true,
                             validatorUrl: null}});
</script></body></html>
"""
