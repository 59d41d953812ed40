"""CityJSONSeq (``.city.jsonl``) lines, streamed and cut into byte ranges at line starts.

The first non-empty line is the header (type CityJSON: transform, CRS, templates); every
further line is one CityJSONFeature with its own vertices. A range is read as the header
line followed by the range's lines (``citygml_split.RangeReader`` with no closing bytes), so
a partition (a Dask task) needs no other partition. Lines are bounded (``MAX_LINE_BYTES``)
so one hostile line cannot exhaust memory; a line's number is counted only for a message.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from geo.errors import SourceError
from pipelines.readers.citygml_split import PART_BYTES, ByteRange, RangeReader, cut_ranges

#: a feature line longer than this is refused (json.loads of it takes ~10x its size in memory)
MAX_LINE_BYTES = 32 * 1024 * 1024
#: vertices one feature may have
MAX_FEATURE_VERTICES = 1_000_000


def is_seq(path: Path) -> bool:
    return path.name.lower().endswith(".jsonl")


def split_seq_ranges(path: Path, part_bytes: int = PART_BYTES) -> list[ByteRange] | None:
    """Ranges of about ``part_bytes`` starting at line starts, or None for a small file."""
    size = path.stat().st_size
    if size < 2 * part_bytes:
        return None
    with open(path, "rb") as f:
        header_end = _header_end(f, path)
        return cut_ranges(size, header_end, part_bytes, lambda at: _next_line(f, at, size), b"")


def lines(path: Path, part: ByteRange | None = None) -> Iterator[tuple[int, bytes]]:
    """(file offset, line) for each non-empty line: the header first, then the range's lines."""
    size = path.stat().st_size
    segment = part or ByteRange(0, 0, size, 0, b"")
    raw = io.BufferedReader(RangeReader(path, segment), buffer_size=1 << 20)
    at = 0  # offset in the range's document: header bytes, then the range's
    with raw:
        while True:
            line = raw.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            offset = at if at < segment.header_end else segment.start + at - segment.header_end
            at += len(line)
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                raise SourceError(
                    f"{path}: line {line_number(path, offset)} is longer than {MAX_LINE_BYTES:,} bytes; "
                    "a CityJSONSeq line holds one feature. Split the object or check the file is CityJSONSeq.")
            if line.strip():
                yield offset, line


def line_number(path: Path, offset: int) -> int:
    """The 1-based number of the line starting at ``offset`` (counted only for messages)."""
    count = 1
    with open(path, "rb") as f:
        while offset > 0:
            chunk = f.read(min(offset, 1 << 20))
            if not chunk:
                break
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count


def _header_end(f, path: Path) -> int:
    """Offset just past the first non-empty line (the header)."""
    at = 0
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line or len(line) > MAX_LINE_BYTES:
            raise SourceError(f"{path}: no CityJSON header line within the first {MAX_LINE_BYTES >> 20} MB")
        at += len(line)
        if line.strip():
            return at


def _next_line(f, at: int, size: int, window: int = 1 << 20) -> int | None:
    """Offset of the first line start at or after ``at``."""
    pos = at - 1  # a line starts right after a newline
    while pos < size:
        f.seek(pos)
        chunk = f.read(window)
        i = chunk.find(b"\n")
        if i >= 0:
            start = pos + i + 1
            return start if start < size else None
        pos += window
    return None
