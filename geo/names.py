"""Safe identifiers: layer names become table names, file names and URL segments."""
from __future__ import annotations

import re

from geo.errors import LayerNameError

LAYER_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_layer_name(name: str) -> str:
    """Return ``name`` if it is a safe layer name, else raise LayerNameError.

    Only lower-case ASCII letters, digits and underscores, starting with a letter,
    at most 63 characters (PostgreSQL's identifier limit). This keeps the name
    safe to use as a SQL identifier, a file name and a URL path segment.
    """
    if not isinstance(name, str) or not LAYER_NAME_RE.match(name):
        raise LayerNameError(
            f"layer name {name!r} is not allowed: use 1-63 lower-case letters, digits "
            "or underscores, starting with a letter (e.g. 'buildings' or 'gu_2015')"
        )
    return name
