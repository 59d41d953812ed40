"""Error answers: one JSON shape on every route, as OGC API exceptions are ({type, code, description}).

Descriptions reach clients, so server paths are cut to their last part: a message built for
the command line ("layer 'x' is not in /srv/city/citytwin.yaml") names the file, not the folder.
"""
from __future__ import annotations

import re

from starlette.responses import JSONResponse

from geo.errors import StoreUnavailableError

# An absolute path of two or more parts, not inside a URL or a relative path.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s'\"/,;()]+/)+([^\s'\"/,;()]+)")


def public(text: str) -> str:
    """``text`` with every absolute server path replaced by its last part (a file or folder name)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), text)


def error_body(code: str, description: str) -> dict[str, str]:
    return {"type": code, "code": code, "description": public(description)}


def error(status: int, code: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, description), status_code=status, headers=headers)


def unavailable(exc: StoreUnavailableError) -> JSONResponse:
    """503 with Retry-After for a database that is down or too slow: the client may try again."""
    return error(503, "ServiceUnavailable", str(exc), headers={"Retry-After": str(exc.retry_after_s)})
