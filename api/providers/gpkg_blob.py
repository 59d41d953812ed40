"""Decode GeoPackage geometry blobs (GP header + WKB) into shapely geometries.

A blob is: magic 'GP', version byte, flags byte, int32 srs_id, an optional envelope
whose size the flags give, then standard WKB. Only the header offset differs per row,
so the WKB slices go to shapely.from_wkb in one vectorised call.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely

# Envelope indicator (flags bits 1-3) -> envelope size in bytes (GeoPackage spec 2.1.3).
_ENVELOPE_BYTES = np.array([0, 32, 48, 48, 64, -1, -1, -1], dtype=np.int64)
_HEADER_BYTES = 8


class GeometryBlobError(ValueError):
    """A blob that is not a GeoPackage geometry."""


def wkb_offsets(blobs: Sequence[bytes | None]) -> np.ndarray:
    """Byte offset of the WKB inside each blob (-1 for NULL geometries)."""
    flags = np.array([b[3] if b is not None and len(b) >= _HEADER_BYTES else 255 for b in blobs],
                     dtype=np.int64)
    null = np.array([b is None for b in blobs], dtype=bool)
    bad = (flags == 255) & ~null
    if bad.any():
        raise GeometryBlobError("geometry blob shorter than the GeoPackage header")
    magic_ok = np.array([b is None or b[:2] == b"GP" for b in blobs], dtype=bool)
    if not magic_ok.all():
        raise GeometryBlobError("geometry blob without the GeoPackage 'GP' magic")
    env = _ENVELOPE_BYTES[(flags & 0x0E) >> 1]
    if ((env < 0) & ~null).any():
        raise GeometryBlobError("geometry blob with an invalid envelope indicator")
    offsets = _HEADER_BYTES + env
    offsets[null] = -1
    return offsets


def decode(blobs: Sequence[bytes | None]) -> np.ndarray:
    """Shapely geometries (object array, None for NULL) from GeoPackage blobs."""
    if len(blobs) == 0:
        return np.empty(0, dtype=object)
    offsets = wkb_offsets(blobs)
    wkb = np.array([None if o < 0 else b[o:] for b, o in zip(blobs, offsets.tolist())], dtype=object)
    return shapely.from_wkb(wkb)
