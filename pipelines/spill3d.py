"""City-model buildings spilled to disk between reading and tiling, so memory follows the tile.

A 3D export reads every building once (pass one), appends it to a spill file and keeps only
a small index row in memory: id, CRS, the centre of each LOD it has, and where its record
lies. Tiles are then written from the index (pass two): each tile loads only its own
buildings back. A record is one pickle per building holding, per LOD, what the mesh writer
reads: id, attributes, rings per surface, ring sizes and all coordinates as one float64
array (no object per ring; surface kinds are not kept, the tiles do not use them). Those three
arrays are stored as their raw bytes: pickling an array costs more than a small building's
coordinates. When the reader gave the coordinates in ECEF too, the record holds those (its CRS
then EPSG:4978), so the tiles need no PROJ; the index keeps the source CRS and centre.

The spill file is ours (written and read by this process or its Dask workers on the same
machine), so unpickling it is safe; it lives in a scratch folder removed after the export.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from geo.city3d import Building3D, FlatBuilding
from geo.ecef import ECEF


class Spilled(NamedTuple):
    """One building at one LOD as pass two reads it back."""

    id: str
    lod: int
    crs: str
    attributes: dict
    ring_counts: np.ndarray  # rings per surface
    ring_sizes: np.ndarray  # vertices per ring
    coords: np.ndarray  # (n, 3) float64, the rings in turn
    images: tuple[str, ...] = ()  # texture images (checked paths), when a surface has one
    surface_image: np.ndarray | None = None  # per surface, its index in ``images`` or -1
    uv: np.ndarray | None = None  # (n, 2) float32 texture coordinates, NaN where untextured


@dataclass
class SpillIndex:
    """Where each spilled building lies, with what pass two needs to place it."""

    path: str
    ids: list[str] = field(default_factory=list)
    crs: list[str] = field(default_factory=list)
    centres: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # lod -> x, y (NaN if absent)
    lods: list[tuple[int, ...]] = field(default_factory=list)  # per building, in the reader's order
    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


class SpillWriter:
    """Appends buildings (``{lod: Building3D}``) to one spill file."""

    def __init__(self, path: Path):
        self.index = SpillIndex(str(path))
        self._file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close(); records are a few kB
        self._at = 0

    def add(self, lods: dict[int, Building3D | FlatBuilding]) -> None:
        first = next(iter(lods.values()))
        data = pickle.dumps({lod: _pack(b) for lod, b in lods.items()}, protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(data)
        ix = self.index
        ix.ids.append(first.id)
        ix.crs.append(first.crs)
        ix.lods.append(tuple(lods))
        n = len(ix.ids) - 1
        for lod, b in lods.items():
            column = ix.centres.setdefault(lod, [])
            column += [(np.nan, np.nan)] * (n - len(column))
            column.append(_centre(b))
        ix.offsets.append(self._at)
        ix.lengths.append(len(data))
        self._at += len(data)

    def close(self) -> SpillIndex:
        self._file.close()
        n = len(self.index.ids)
        for column in self.index.centres.values():
            column += [(np.nan, np.nan)] * (n - len(column))
        return self.index


def load(path: str, offsets: np.ndarray, lengths: np.ndarray) -> list[dict[int, Spilled]]:
    """The buildings at ``offsets`` (in that order), read in file order."""
    order = np.argsort(offsets, kind="stable")
    out: list[dict[int, Spilled] | None] = [None] * len(offsets)
    with open(path, "rb") as f:
        for i in order.tolist():
            f.seek(int(offsets[i]))
            packed = pickle.loads(f.read(int(lengths[i])))  # noqa: S301 - our own spill file
            out[i] = {lod: _unpack(p) for lod, p in packed.items()}
    return out  # type: ignore[return-value]


def _centre(b: Building3D | FlatBuilding) -> tuple[float, float]:
    """Mean x, y of all ring vertices (what the tile placement uses): ``ndarray.mean``'s own sum
    and division, without its per-call overhead (two calls per building)."""
    pts = b.coords if isinstance(b, FlatBuilding) else np.vstack([r for s in b.surfaces for r in s.rings])
    return float(np.add.reduce(pts[:, 0])) / len(pts), float(np.add.reduce(pts[:, 1])) / len(pts)


def _pack(b: Building3D | FlatBuilding) -> tuple:
    if isinstance(b, FlatBuilding):  # read untextured (the export reads textures as Building3D)
        crs, coords = (b.crs, b.coords) if b.ecef is None else (ECEF, b.ecef)
        return (b.id, b.lod, crs, b.attributes, b.ring_counts.astype(np.int64, copy=False).tobytes(),
                b.ring_sizes.astype(np.int64, copy=False).tobytes(),
                np.ascontiguousarray(coords, dtype=np.float64).tobytes())
    rings = [np.asarray(r, dtype=np.float64) for s in b.surfaces for r in s.rings]
    packed = (b.id, b.lod, b.crs, b.attributes, np.array([len(s.rings) for s in b.surfaces], dtype=np.int64).tobytes(),
              np.array([len(r) for r in rings], dtype=np.int64).tobytes(), np.concatenate(rings).tobytes())
    return packed + _textures(b) if any(s.texture for s in b.surfaces) else packed


def _unpack(packed: tuple) -> Spilled:
    bid, lod, crs, attributes, counts, sizes, coords, *textures = packed
    return Spilled(bid, lod, crs, attributes, np.frombuffer(counts, dtype=np.int64),
                   np.frombuffer(sizes, dtype=np.int64), np.frombuffer(coords, dtype=np.float64).reshape(-1, 3),
                   *textures)


def _textures(b: Building3D) -> tuple:
    """The texture fields of ``Spilled``: images, each surface's image, a (u, v) per vertex."""
    images = list(dict.fromkeys(s.texture.image for s in b.surfaces if s.texture))
    surface_image = np.array([images.index(s.texture.image) if s.texture else -1 for s in b.surfaces], dtype=np.int32)
    uv = [np.asarray(t, dtype=np.float32) if s.texture else np.full((len(r), 2), np.nan, dtype=np.float32)
          for s in b.surfaces for r, t in zip(s.rings, s.texture.uv if s.texture else s.rings)]
    return tuple(images), surface_image, np.concatenate(uv)
