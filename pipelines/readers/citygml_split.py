"""A big CityGML file cut into byte ranges at city object boundaries, each readable alone.

Every range is read as its own small document: the file's opening bytes (XML declaration,
root start tag with its namespaces, the root's envelope: everything before the first
``cityObjectMember``), then the range's members, then the root's closing tag. Ranges start
where a ``<...:cityObjectMember`` tag starts, found by a byte search near each cut, so a
partition (a Dask task) needs no other partition. Cuts are deterministic for a file, so the
names given to buildings without gml:id (``<file>:part<k>:building<n>``) are stable.
A file whose root or first member cannot be found this way is read whole.
"""
from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: a file is cut into ranges of about this size
PART_BYTES = 256 * 1024 * 1024
_HEAD_BYTES = 4 * 1024 * 1024
_ROOT = re.compile(rb"<((?:[A-Za-z_][\w.-]*:)?CityModel)[\s>]")
_MEMBER = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?cityObjectMember[\s>]")
_TAG_END = b"> \t\r\n"


@dataclass(frozen=True)
class ByteRange:
    """Members in bytes [start, stop) of a file, read after its first ``header_end`` bytes and
    before ``closing`` (empty for the last range, which runs to the file's end)."""

    index: int
    start: int
    stop: int
    header_end: int
    closing: bytes


def split_ranges(path: Path, part_bytes: int = PART_BYTES) -> list[ByteRange] | None:
    """Ranges of about ``part_bytes``, or None when the file is small or cannot be cut."""
    size = path.stat().st_size
    if size < 2 * part_bytes:
        return None
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
        root, member = _ROOT.search(head), _MEMBER.search(head)
        if root is None or member is None or member.start() < root.end():
            return None
        needle = head[member.start():member.end() - 1]
        return cut_ranges(size, member.start(), part_bytes, lambda at: _next_tag(f, needle, at, size),
                          b"</" + root.group(1) + b">")


def cut_ranges(size: int, first: int, part_bytes: int, next_cut: Callable[[int], int | None],
               closing: bytes) -> list[ByteRange]:
    """Contiguous ranges from ``first`` (the end of the file's header) to the file's end, cut
    where ``next_cut`` finds a record start at or after each multiple of ``part_bytes``."""
    cuts = [first]
    for k in range(1, size // part_bytes):
        at = next_cut(max(k * part_bytes, cuts[-1] + 1))
        if at is None:
            break
        if at > cuts[-1]:
            cuts.append(at)
    return [ByteRange(k, a, b, first, closing) for k, (a, b) in enumerate(zip(cuts, cuts[1:]))] + \
        [ByteRange(len(cuts) - 1, cuts[-1], size, first, b"")]


def _next_tag(f, needle: bytes, at: int, size: int, window: int = 1 << 20) -> int | None:
    """Offset of the first ``needle`` (followed by '>' or a space) at or after ``at``."""
    while at < size:
        f.seek(at)
        chunk = f.read(window + len(needle))
        i = chunk.find(needle)
        while i >= 0:
            nxt = chunk[i + len(needle):i + len(needle) + 1]
            if nxt and nxt in _TAG_END:
                return at + i
            i = chunk.find(needle, i + 1)
        at += window
    return None


class RangeReader(io.RawIOBase):
    """A file-like view of one range as a document: opening bytes, members, closing tag."""

    def __init__(self, path: Path, part: ByteRange):
        self._file = open(path, "rb")  # noqa: SIM115 - closed with the reader
        self._segments = [(0, part.header_end), (part.start, part.stop)]
        self._tail = part.closing

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = size if size is not None and size >= 0 else 1 << 62
        while self._segments:
            start, stop = self._segments[0]
            if start >= stop:
                self._segments.pop(0)
                continue
            self._file.seek(start)
            data = self._file.read(min(size, stop - start))
            self._segments[0] = (start + len(data), stop)
            return data
        data, self._tail = self._tail[:size], self._tail[size:]
        return data

    def readinto(self, buffer) -> int:  # what io.BufferedReader calls
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()
