"""The 3D city model shared by the CityGML/CityJSON readers and the 3D Tiles writer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

SURFACE_KINDS = ("roof", "wall", "ground", "closure", "other")


@dataclass
class Surface:
    """One planar polygon: exterior ring first, then holes; each ring is (n, 3) x, y, z.

    Rings are open or closed (a repeated last vertex is tolerated). Coordinates are in the
    building's CRS; z is height in metres.
    """

    rings: list[np.ndarray]
    kind: str = "other"
    texture: SurfaceTexture | None = None  # only when textures are asked for and the source has one


@dataclass
class SurfaceTexture:
    """A surface's image (as the source names it) and a (u, v) per vertex of each of its rings
    (origin at the image's lower left, as in CityGML and CityJSON)."""

    image: str
    uv: list[np.ndarray]


@dataclass
class Building3D:
    id: str
    lod: int
    surfaces: list[Surface]
    crs: str  # e.g. "EPSG:6697" or "EPSG:25832+5783"; horizontal axes x=easting/lon, y=northing/lat
    attributes: dict = field(default_factory=dict)  # name, height, storeys, usage, source, generic ones


class FlatBuilding(NamedTuple):
    """A Building3D as flat arrays (no object per ring): what a reader that checks many
    buildings at once yields, and what the 3D export spills and triangulates."""

    id: str
    lod: int
    crs: str
    attributes: dict
    ring_counts: np.ndarray  # rings per surface
    ring_sizes: np.ndarray  # vertices per ring
    coords: np.ndarray  # (n, 3) float64, the open rings in turn
    kinds: list[str]  # per surface, one of SURFACE_KINDS
    images: list[str | None] | None = None  # per surface, its texture image, when textures are read
    uv: np.ndarray | None = None  # (n, 2) a (u, v) per vertex, NaN where untextured, when textures are read
    ecef: np.ndarray | None = None  # (n, 3) ``coords`` in ECEF (EPSG:4978), when the reader transformed them

    def building(self) -> Building3D:
        cuts = np.cumsum(self.ring_sizes)[:-1]
        rings = np.split(self.coords, cuts)
        uv = np.split(self.uv, cuts) if self.uv is not None else None
        first = np.concatenate(([0], np.cumsum(self.ring_counts))).tolist()
        surfaces = []
        for k, (a, b) in enumerate(zip(first, first[1:])):
            image = self.images[k] if self.images is not None else None
            textured = image is not None and uv is not None and not np.isnan(uv[a][:1]).any()
            surfaces.append(Surface(rings[a:b], self.kinds[k], SurfaceTexture(image, uv[a:b]) if textured else None))
        return Building3D(self.id, self.lod, surfaces, self.crs, self.attributes)


class SkipReason(str):
    """Why something was left out, and what it counts ('surface', 'building').

    It is its own short text (so it reads, compares and hashes as that text); ``counted``
    names the thing and explains, so '12 degenerate polygon' cannot read as 12 buildings.
    """

    noun: str
    hint: str
    outcome: str

    def __new__(cls, text: str, noun: str, hint: str = "", outcome: str = "skipped") -> SkipReason:
        reason = super().__new__(cls, text)
        reason.noun, reason.hint, reason.outcome = noun, hint, outcome
        return reason

    def __reduce__(self):  # keep noun and hint when sent to a worker process and back
        return (SkipReason, (str(self), self.noun, self.hint, self.outcome))

    def counted(self, n: int) -> str:
        noun = self.noun if n == 1 else f"{self.noun}s"
        return f"{n} {noun} {self.outcome}: {self}" + (f" ({self.hint})" if self.hint else "")


def skip_summary(skipped: dict[SkipReason, int]) -> str:
    """'12 surfaces skipped: degenerate polygon (...); 1 building skipped: ...', or 'nothing skipped'."""
    return "; ".join(reason.counted(n) for reason, n in skipped.items()) or "nothing skipped"


@dataclass
class ReadReport:
    """What a reader did: counts and the reasons for everything it skipped."""

    source: str
    read: int = 0
    skipped: dict[SkipReason, int] = field(default_factory=dict)  # reason -> count
    messages: list[str] = field(default_factory=list)  # first few per reason, naming the object

    def skip(self, reason: SkipReason, detail: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if self.skipped[reason] <= 3:
            self.messages.append(f"{self.source}: {detail} skipped ({reason})")
