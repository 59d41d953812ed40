"""The 3D city model shared by the CityGML/CityJSON readers and the 3D Tiles writer."""
from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class Building3D:
    id: str
    lod: int
    surfaces: list[Surface]
    crs: str  # e.g. "EPSG:6697" or "EPSG:25832+5783"; horizontal axes x=easting/lon, y=northing/lat
    attributes: dict = field(default_factory=dict)  # name, height, storeys, usage, source, generic ones


@dataclass
class ReadReport:
    """What a reader did: counts and the reasons for everything it skipped."""

    source: str
    read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    messages: list[str] = field(default_factory=list)  # first few per reason, naming the object

    def skip(self, reason: str, detail: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if self.skipped[reason] <= 3:
            self.messages.append(f"{self.source}: {detail} skipped ({reason})")
