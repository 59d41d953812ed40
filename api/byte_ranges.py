"""Single byte ranges (RFC 9110, section 14): enough for clients that read a file by range
(3D Tiles content, GLB). Several ranges in one request get the whole file, which the RFC allows."""
from __future__ import annotations

import re

_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


class Unsatisfiable(ValueError):
    """A range wholly past the end of the file: 416."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte, inclusive, that ``header`` asks for in a file of ``size`` bytes; None
    for the whole file (no header, a malformed one, or several ranges)."""
    match = _RANGE.match((header or "").strip().replace(" ", ""))
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        if int(last) == 0:
            raise Unsatisfiable(f"bytes=-0 asks for no byte of a {size}-byte file")
        return max(0, size - int(last)), size - 1
    if int(first) >= size:
        raise Unsatisfiable(f"the range starts at byte {int(first)}, past the end of a {size}-byte file")
    end = size - 1 if last == "" else min(int(last), size - 1)
    if end < int(first):
        return None  # last before first: syntactically invalid, ignored
    return int(first), end
