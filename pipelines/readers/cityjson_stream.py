"""A plain CityJSON file too big to parse whole, read member by member with ijson's C parser.

Each pass parses the whole file but builds only what it asks for: the small top-level members
(``header``), the ``vertices`` written to a scratch file as float64 and read back through a
memory map (``VertexFile``: a building's rows are gathered, the map is reopened every few
batches so its pages leave the process), and the ``CityObjects`` one at a time (``objects``).
A Building with children and every BuildingPart are set aside in a scratch file (``Held``)
until the end, since a part may come before or after its parent; only their ids stay in memory.

Bounds: a city object over ``MAX_OBJECT_BYTES`` of the file, more than ``MAX_VERTICES``
vertices, and attributes or header members nested deeper than ``MAX_DEPTH`` are refused, each
in one line (geometry is bounded where numpy reads it).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import ijson
import numpy as np
import orjson

from geo.errors import SourceError

#: the members read before the city objects; anything else top-level is skipped
HEADER_MEMBERS = ("type", "version", "transform", "metadata", "geometry-templates")
MAX_OBJECT_BYTES = 64 * 1024 * 1024
MAX_VERTICES = 500_000_000
MAX_DEPTH = 64
_CHUNK = 1 << 16


def header(path: Path) -> dict:
    """The top-level members of ``HEADER_MEMBERS`` that the file has."""
    out = {}
    for name in HEADER_MEMBERS:
        with _parsing(path) as f:
            for value in ijson.items(f, name, use_float=True):
                out[name] = _checked_depth(path, value, name)
                break
    return out


class VertexFile:
    """The file's ``vertices`` (transformed) in a scratch file, gathered by row."""

    def __init__(self, path: Path, transform: dict | None, scratch: Path):
        self.path = scratch
        scale, translate = _transform(path, transform)
        rows = 0
        with _parsing(path) as f, open(scratch, "wb") as out:
            chunk: list = []
            for v in ijson.items(f, "vertices.item", use_float=True):
                chunk.append(v)
                if len(chunk) == _CHUNK:
                    rows += _write(path, chunk, scale, translate, out)
                    chunk = []
                    if rows > MAX_VERTICES:
                        raise SourceError(f"{path}: has over {MAX_VERTICES:,} vertices; split the file")
            rows += _write(path, chunk, scale, translate, out)
        self.rows = rows
        self.array = self._open()

    def _open(self) -> np.ndarray:
        if not self.rows:
            return np.zeros((0, 3))
        return np.memmap(self.path, dtype=np.float64, mode="r", shape=(self.rows, 3))

    def reopen(self) -> None:
        """A fresh map, so the pages read so far stop counting against the process."""
        self.array = self._open()


def objects(path: Path) -> Iterator[tuple[str, dict]]:
    """(id, city object) in file order, each bounded in bytes and depth."""
    with _parsing(path) as f:
        before = f.tell()
        for key, obj in ijson.kvitems(f, "CityObjects", use_float=True):
            at = f.tell()  # the parser reads ahead in chunks, so this is an upper bound per object
            if at - before > MAX_OBJECT_BYTES + (1 << 20):
                raise SourceError(f"{path}: city object {key} takes over {MAX_OBJECT_BYTES >> 20} MB; "
                                  "split it, or check the file")
            before = at
            if isinstance(obj, dict):  # geometry goes through numpy, which bounds its own depth
                _checked_depth(path, {k: v for k, v in obj.items() if k != "geometry"}, f"city object {key}")
            yield key, obj


class Held:
    """City objects set aside in a scratch file until every object has been seen."""

    def __init__(self, path: Path, scratch: Path):
        self.path = path
        self._file = open(scratch, "w+b")  # noqa: SIM115 - closed in close()
        self._where: dict[str, tuple[int, int]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def keys(self) -> list[str]:
        return list(self._where)

    def put(self, key: str, obj: dict) -> None:
        try:
            data = orjson.dumps(obj)
        except orjson.JSONEncodeError:  # nested deeper than orjson writes
            raise SourceError(f"{self.path}: city object {key} nests arrays over 255 levels deep; "
                              "no CityJSON nests like that. The file is damaged; re-export it.") from None
        self._file.seek(0, os.SEEK_END)
        self._where.setdefault(key, (self._file.tell(), len(data)))
        self._file.write(data)

    def get(self, key: str) -> dict:
        at, size = self._where[key]
        self._file.seek(at)
        return orjson.loads(self._file.read(size))

    def close(self) -> None:
        self._file.close()


class _parsing:
    """The file opened for ijson, its errors turned into one-line SourceErrors."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "rb")  # noqa: SIM115 - closed in __exit__
        return self.f

    def __exit__(self, kind, exc, tb) -> bool:
        self.f.close()
        if isinstance(exc, ijson.JSONError):
            said = (str(exc).strip().splitlines() or ["cut off"])[0].strip()  # yajl adds a picture below
            raise SourceError(f"{self.path}: broken JSON ({said}); the file is cut off "
                              "or not valid JSON. Re-export or re-download it.") from None
        if isinstance(exc, RecursionError):
            raise SourceError(f"{self.path}: arrays or objects nest thousands of levels deep; "
                              "no CityJSON nests like that. The file is damaged; re-export it.") from None
        return False


def _checked_depth(path: Path, value, what: str):
    todo = [(value, 0)]
    while todo:
        v, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise SourceError(f"{path}: {what} nests arrays or objects over {MAX_DEPTH} levels deep; "
                              "no CityJSON nests like that. The file is damaged; re-export it.")
        if isinstance(v, dict):
            todo += [(x, depth + 1) for x in v.values() if isinstance(x, (dict, list))]
        elif isinstance(v, list):
            todo += [(x, depth + 1) for x in v if isinstance(x, (dict, list))]
    return value


def _transform(path: Path, transform: dict | None) -> tuple[np.ndarray, np.ndarray]:
    if not transform:
        return np.ones(3), np.zeros(3)
    try:
        return (np.asarray(transform["scale"], dtype=np.float64).reshape(3),
                np.asarray(transform["translate"], dtype=np.float64).reshape(3))
    except (KeyError, TypeError, ValueError):
        raise SourceError(f"{path}: 'transform' needs 'scale' and 'translate', three numbers each") from None


def _write(path: Path, chunk: list, scale: np.ndarray, translate: np.ndarray, out) -> int:
    if not chunk:
        return 0
    try:
        rows = np.asarray(chunk, dtype=np.float64).reshape(-1, 3)
    except (ValueError, TypeError):
        raise SourceError(f"{path}: 'vertices' is not a list of [x, y, z] numbers") from None
    out.write((rows * scale + translate).tobytes())
    return len(rows)
