"""CRS registry and cached transforms, with the Korean grids handled explicitly.

The Bessel-based Korean grids (EPSG:5174, 2097 and kin) need a datum shift to reach
WGS84. PROJ applies the EPSG transformation when the CRS is declared by code; a .prj
that only names a Bessel ellipsoid gets a "ballpark" transform and lands hundreds of
metres off. ``bessel_without_shift`` finds that case; readers refuse it unless the user
accepts it explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError as ProjCRSError
from pyproj.transformer import TransformerGroup

from geo.errors import CRSError

WGS84 = "EPSG:4326"
WEB_MERCATOR = "EPSG:3857"

#: Korean CRSs we name in messages and offer on the API, with what they are used for.
KOREAN_CRS: dict[str, str] = {
    "EPSG:5186": "Korea 2000 / Central Belt 2010 (current cadastral and city maps)",
    "EPSG:5179": "Korea 2000 / Unified CS, UTM-K (national address and road data)",
    "EPSG:5174": "Korean 1985 / Modified Central Belt (legacy Bessel, Seoul maps)",
    "EPSG:2097": "Korean 1985 / Central Belt (legacy Bessel)",
}

#: Bessel-based Korean and Tokyo-datum grids to suggest for a .prj without datum shift.
_BESSEL_CANDIDATES = (
    "EPSG:5174", "EPSG:2097", "EPSG:5173", "EPSG:5175", "EPSG:5176", "EPSG:5177",
    "EPSG:2096", "EPSG:2098",
)


def parse_crs(value: str | int | CRS, *, what: str = "CRS") -> CRS:
    """Parse a user-given CRS (``EPSG:5186``, ``5186``, WKT or PROJ string)."""
    if isinstance(value, CRS):
        return value
    text = str(value).strip()
    if text.isdigit():
        text = f"EPSG:{text}"
    try:
        return _parse_cached(text)
    except ProjCRSError as exc:
        raise CRSError(
            f"{what} {text!r} is not a known CRS: give an EPSG code such as EPSG:5186, "
            f"EPSG:5179 or EPSG:4326 ({exc.__class__.__name__})"
        ) from None


@lru_cache(maxsize=256)
def _parse_cached(text: str) -> CRS:
    return CRS.from_user_input(text)


def crs_label(crs: CRS) -> str:
    """``EPSG:nnnn`` when the CRS has a code, else its name."""
    code = crs.to_epsg(min_confidence=90)
    return f"EPSG:{code}" if code else crs.name


@lru_cache(maxsize=256)
def _transformer_cached(src_wkt: str, dst_wkt: str) -> Transformer:
    return Transformer.from_crs(CRS.from_wkt(src_wkt), CRS.from_wkt(dst_wkt), always_xy=True)


@lru_cache(maxsize=64)
def authority_transformer(src_wkt: str, dst_wkt: str) -> Transformer:
    """A cached Transformer in authority axis order (always_xy=False), the order OGC API
    Features and pygeoapi's crs_transform use for crs, bbox-crs and filter-crs."""
    return Transformer.from_crs(CRS.from_wkt(src_wkt), CRS.from_wkt(dst_wkt), always_xy=False)


def transformer(src: CRS | str, dst: CRS | str) -> Transformer:
    """A cached, always_xy Transformer (x=easting/lon, y=northing/lat)."""
    s, d = parse_crs(src), parse_crs(dst)
    return _transformer_cached(s.to_wkt(), d.to_wkt())


@dataclass(frozen=True)
class DatumShift:
    """A Bessel or Tokyo datum whose transform to WGS84 is only a ballpark."""

    crs_name: str
    suggestions: tuple[str, ...]

    def refusal(self, source: str, *, declare: str = "--crs {code}",
                accept: str = "--accept-source-crs") -> str:
        """Why the CRS is refused and the two ways out, in the words of the caller (CLI or catalog)."""
        codes = " or ".join(declare.format(code=c) for c in self.suggestions or ("EPSG:5174",))
        return (
            f"{source}: its CRS '{self.crs_name}' uses a Bessel/Tokyo datum without a datum shift "
            f"(no TOWGS84), so it would land hundreds of metres off. Declare the grid by its EPSG "
            f"code, e.g. {codes}, or keep this definition anyway with {accept}."
        )

    def accepted(self, source: str) -> str:
        codes = " or ".join(self.suggestions or ("EPSG:5174",))
        return (
            f"{source}: its CRS '{self.crs_name}' has no datum shift and was kept as asked "
            f"(accept_source_crs); it may sit hundreds of metres off (its grid is likely {codes})"
        )


class DatumShiftError(CRSError):
    """A CRS refused because it lacks a datum shift; ``shift`` lets a caller reword the way out."""

    def __init__(self, source: str, shift: DatumShift):
        super().__init__(shift.refusal(source))
        self.source = source
        self.shift = shift


def bessel_without_shift(crs: CRS) -> DatumShift | None:
    """Set when the CRS sits on a Bessel ellipsoid and PROJ has no real shift."""
    ellipsoid = crs.ellipsoid.name if crs.ellipsoid else ""
    datum = crs.datum.name if crs.datum else ""
    if "bessel" not in ellipsoid.lower() and "tokyo" not in datum.lower():
        return None
    try:
        group = TransformerGroup(crs, CRS.from_epsg(4326), always_xy=True)
    except ProjCRSError:
        return DatumShift(crs.name, tuple(_suggest(crs)))
    best = group.transformers[0] if group.transformers else None
    if best is not None and "ballpark" not in best.description.lower():
        return None
    return DatumShift(crs.name, tuple(_suggest(crs)))


def check_datum_shift(crs: CRS, source: str, accept: bool) -> str | None:
    """Refuse a CRS without its datum shift (DatumShiftError) unless ``accept``; then the warning to show."""
    shift = bessel_without_shift(crs)
    if shift is None:
        return None
    if not accept:
        raise DatumShiftError(source, shift)
    return shift.accepted(source)


def _projection_params(crs: CRS) -> dict[str, float]:
    params = {}
    if crs.coordinate_operation is None:
        return params
    for p in crs.coordinate_operation.params:
        name = p.name.lower()
        if "longitude" in name:
            params["lon_0"] = p.value
        elif "latitude" in name:
            params["lat_0"] = p.value
        elif "false easting" in name:
            params["x_0"] = p.value
        elif "false northing" in name:
            params["y_0"] = p.value
        elif "scale" in name:
            params["k"] = p.value
    return params


def _suggest(crs: CRS) -> list[str]:
    """EPSG codes whose projection parameters match the given (shift-less) CRS."""
    mine = _projection_params(crs)
    if not mine:
        return []
    out = []
    for code in _BESSEL_CANDIDATES:
        theirs = _projection_params(parse_crs(code))
        if all(abs(theirs.get(k, 1e9) - v) < 1e-6 for k, v in mine.items() if k in theirs):
            out.append(code)
    return out


def check_lonlat_bounds(bounds: tuple[float, float, float, float], *, source: str, crs: CRS) -> None:
    """Raise CRSError when reprojected bounds are not valid longitude/latitude.

    This catches the most common silent misplacement: projected metres read as degrees
    (or the wrong projected grid declared), which otherwise yields a city in the ocean.
    """
    minx, miny, maxx, maxy = bounds
    finite = all(v == v and abs(v) != float("inf") for v in bounds)
    if not finite or minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise CRSError(
            f"{source}: coordinates in {crs_label(crs)} do not map to valid longitude/latitude "
            f"(got bounds {tuple(round(float(b), 3) for b in bounds)}). The declared or embedded CRS is "
            "wrong for this data: pass the right one with --crs, e.g. --crs EPSG:5186."
        )
