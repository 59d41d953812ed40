"""The viewer page, its npm libraries and the MapLibre styles.

- /viewer/              api/static/viewer/ (index.html and its scripts)
- /viewer/vendor/<pkg>/ viewer/node_modules/<pkg>/ for the packages viewer/package.json
                        depends on (MapLibre GL JS, pmtiles): never the whole node_modules
- /styles/<id>          styles/<id>.json at the repository root

Text files of the first two go gzip-encoded to clients that accept it (api/static_gzip.py).
"""
from __future__ import annotations

import json
import mimetypes
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from api.errors import error
from api.static_gzip import GzipStaticFiles

REPO_ROOT = Path(__file__).resolve().parents[1]
VIEWER_DIR = Path(__file__).resolve().parent / "static" / "viewer"
NODE_MODULES = REPO_ROOT / "viewer" / "node_modules"
STYLES_DIR = REPO_ROOT / "styles"
STYLE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# MapLibre ships ES modules as .mjs; browsers refuse a module served as text/plain.
mimetypes.add_type("text/javascript", ".mjs")


def _vendor_packages(viewer_root: Path = REPO_ROOT / "viewer") -> list[str]:
    try:
        deps = json.loads((viewer_root / "package.json").read_text(encoding="utf-8")).get("dependencies", {})
    except (OSError, ValueError):
        return []
    return [name for name in deps if re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name)]


async def _style(request: Request) -> Response:
    style_id = request.path_params["style_id"].removesuffix(".json")
    if not STYLE_ID.match(style_id):
        return error(404, "NotFound", f"style id {style_id!r} is not valid")
    path = STYLES_DIR / f"{style_id}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in STYLES_DIR.glob("*.json"))) or "none"
        return error(404, "NotFound", f"no style {style_id!r} (known: {known})")
    return FileResponse(path, media_type="application/json", headers={"Cache-Control": "no-cache"})


async def _to_viewer(request: Request) -> Response:
    return RedirectResponse(url="/viewer/", status_code=308)


def static_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [Route("/styles/{style_id}", _style, methods=["GET", "HEAD"])]
    for pkg in _vendor_packages():
        routes.append(Mount(f"/viewer/vendor/{pkg}",
                            app=GzipStaticFiles(directory=NODE_MODULES / pkg, check_dir=False)))
    routes += [
        Route("/viewer", _to_viewer),
        Mount("/viewer", app=GzipStaticFiles(directory=VIEWER_DIR, html=True, check_dir=False)),
    ]
    return routes
