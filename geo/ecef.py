"""Earth-centred (ECEF, EPSG:4978) and local East-North-Up frames."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer

GEOGRAPHIC_3D = "EPSG:4979"  # WGS84 lon, lat, ellipsoidal height
ECEF = "EPSG:4978"


@lru_cache(maxsize=64)
def _to_ecef(src: str) -> Transformer:
    crs = CRS.from_user_input(src)
    if not crs.is_geocentric and len(crs.axis_info) < 3:
        crs = crs.to_3d()
    return Transformer.from_crs(crs, CRS.from_user_input(ECEF), always_xy=True)


@lru_cache(maxsize=8)
def _from_ecef() -> Transformer:
    return Transformer.from_crs(ECEF, GEOGRAPHIC_3D, always_xy=True)


def to_ecef(xyz: np.ndarray, src: str = GEOGRAPHIC_3D) -> np.ndarray:
    """(n, 3) coordinates in ``src`` (x=easting/lon, y=northing/lat, z=height) to ECEF metres."""
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = _to_ecef(src).transform(xyz[:, 0], xyz[:, 1], xyz[:, 2])
    return np.column_stack([x, y, z])


def ecef_to_lonlath(ecef: np.ndarray) -> np.ndarray:
    lon, lat, h = _from_ecef().transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    return np.column_stack([lon, lat, h])


def enu_rotation(lon: float, lat: float) -> np.ndarray:
    """3x3 matrix whose rows are the East, North and Up unit vectors (in ECEF) at lon/lat degrees."""
    lo, la = np.radians(lon), np.radians(lat)
    return np.array([
        [-np.sin(lo), np.cos(lo), 0.0],
        [-np.sin(la) * np.cos(lo), -np.sin(la) * np.sin(lo), np.cos(la)],
        [np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)],
    ])


def ecef_to_enu(ecef: np.ndarray, origin_ecef: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    return (np.asarray(ecef) - origin_ecef) @ rotation.T


def enu_to_ecef_matrix(origin_ecef: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """4x4 matrix taking local ENU metres to ECEF (the tile transform, before column-major flattening)."""
    m = np.eye(4)
    m[:3, :3] = rotation.T
    m[:3, 3] = origin_ecef
    return m
