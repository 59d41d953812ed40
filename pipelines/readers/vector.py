"""Vector files through pyogrio: GeoPackage, Shapefile, GeoJSON, FlatGeobuf.

Handles the things that misplace or garble a Korean city silently: a missing or
Bessel-without-shift CRS, and CP949 text read as Latin-1.
"""
from __future__ import annotations

import glob
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from warnings import catch_warnings, simplefilter

import geopandas as gpd
import pandas as pd
import pyogrio
from pyogrio.errors import CRSError as PyogrioCRSError
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS
from tqdm import tqdm

from geo.crs import check_datum_shift, crs_label, parse_crs
from geo.errors import CRSError, EncodingError, SourceError
from pipelines.store.base import as_dates

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {".gpkg", ".shp", ".geojson", ".json", ".fgb"}
#: read in chunks with a progress bar above this many features
CHUNK = 50_000
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN1_HIGH = re.compile(r"[\u0080-\u00ff]")


@dataclass
class VectorSource:
    path: Path
    gdf: gpd.GeoDataFrame  # in the source CRS (declared or the file's own)
    crs_origin: str  # 'declared' | 'file'
    encoding: str | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class VectorFile:
    """A source opened for reading: its first layer, CRS and feature count, checked once.

    Windows of its features can then be read anywhere that sees the file (a Dask worker too)."""
    path: Path  # as given: the name in messages
    read_from: Path  # what GDAL opens (links without the .prj when a declared CRS stands in for it)
    layer: str
    info: dict  # pyogrio's read_info of the layer
    crs: CRS  # declared, else the file's own
    crs_origin: str  # 'declared' | 'file'
    encoding: str | None  # as given (None: the file's own)
    warnings: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.info["features"])

    def windows(self) -> list[tuple[int, int | None]]:
        """(first feature, how many) of the reads that cover the file; one whole read up to CHUNK."""
        if self.count <= CHUNK:
            return [(0, None)]
        return [(start, CHUNK) for start in range(0, self.count, CHUNK)]


def read_vector(path: Path, *, crs: str | None = None, encoding: str | None = None,
                accept_source_crs: bool = False, progress: bool = True) -> VectorSource:
    """Read the first layer of PATH in its CRS (``crs`` when declared, else the file's own).

    A CRS without the datum shift it needs (a Bessel .prj) is refused unless
    ``accept_source_crs``: published as is, it would sit hundreds of metres off.
    """
    with open_vector(path, crs=crs, encoding=encoding, accept_source_crs=accept_source_crs) as src:
        parts = []
        with tqdm(total=src.count, desc=f"reading {src.path.name}", unit="feat",
                  disable=not progress or src.count <= CHUNK) as bar:
            for start, size in src.windows():
                parts.append(read_window(src, start, size))
                bar.update(len(parts[-1]))
        gdf = parts[0] if len(parts) == 1 else gpd.GeoDataFrame(pd.concat(parts, ignore_index=True),
                                                                 crs=parts[0].crs)
    gdf = finish_attributes(src, gdf).set_crs(src.crs, allow_override=True)
    return VectorSource(path=src.path, gdf=gdf, crs_origin=src.crs_origin,
                        encoding=encoding or src.info.get("encoding"), warnings=src.warnings)


@contextmanager
def open_vector(path: Path, *, crs: str | None = None, encoding: str | None = None,
                accept_source_crs: bool = False) -> Iterator[VectorFile]:
    """PATH checked and opened (see ``read_vector``); valid while the context is open."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file. Check the path (relative paths start at the current folder).")
    if path.is_dir():
        raise SourceError(f"{path}: is a folder; give the file itself (e.g. buildings.shp or buildings.gpkg)")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise SourceError(
            f"{path}: unsupported file type {path.suffix or '(none)'}; use GeoPackage (.gpkg), "
            "Shapefile (.shp), GeoJSON (.geojson/.json) or FlatGeobuf (.fgb)"
        )
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes); re-export or re-download it")

    warnings: list[str] = []
    prj = _prj_of(path)
    with ExitStack() as stack:
        read_from = path
        try:
            layer, info = _layer_info(path, path, encoding, warnings)
        except PyogrioCRSError as exc:
            # GDAL took the .prj but cannot turn it into a CRS: a declared --crs stands in for it
            if not crs or prj is None:
                raise CRSError(_unreadable_crs(prj or path, f" ({_first_line(exc)})")) from None
            read_from = _without_prj(path, Path(stack.enter_context(tempfile.TemporaryDirectory())))
            layer, info = _layer_info(read_from, path, encoding, [])

        if int(info["features"]) == 0:
            raise SourceError(f"{path}: has no features; nothing to publish")

        src_crs, origin = _resolve_crs(path, prj, info.get("crs"), crs, warnings)
        _check_datum_shift(path, src_crs, origin, accept_source_crs, warnings)
        yield VectorFile(path, read_from, layer, info, src_crs, origin, encoding, warnings)


def finish_attributes(src: VectorFile, gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The whole file's attributes checked and typed (garbled Korean, booleans, dates).

    Done once on all the windows read: a window alone may type a column otherwise."""
    if src.encoding is None:
        _check_mojibake(src.path, gdf, src.info.get("encoding"))
    gdf = _source_booleans(gdf, src.info)
    return as_dates(gdf, src.info["fields"], src.info["dtypes"])


def _source_booleans(gdf: gpd.GeoDataFrame, info: dict) -> gpd.GeoDataFrame:
    """Boolean fields stay booleans: pyogrio reads one with empty values as 0.0/1.0/NaN floats,
    which would publish as numbers (and ``= true`` would not find them)."""
    for name, dtype in zip(info["fields"], info["dtypes"]):
        if dtype == "bool" and name in gdf.columns and gdf[name].dtype.kind == "f":
            gdf[name] = gdf[name].astype("boolean")
    return gdf


def _layer_info(read_from: Path, path: Path, encoding: str | None, warnings: list[str]) -> tuple[str, dict]:
    """The first layer's name and pyogrio's info on it; ``path`` is the name shown in messages."""
    try:
        layers = pyogrio.list_layers(read_from)
        if len(layers) == 0:
            raise SourceError(f"{path}: holds no vector layer")
        layer = str(layers[0][0])
        if len(layers) > 1:
            warnings.append(f"{path}: has {len(layers)} layers; reading the first, '{layer}'")
        return layer, pyogrio.read_info(read_from, layer=layer, encoding=encoding)
    except PyogrioCRSError:  # a DataLayerError too, but the caller can read past it
        raise
    except (DataSourceError, DataLayerError) as exc:
        raise SourceError(
            f"{path}: cannot be read as a vector file ({_first_line(exc)}). Check that it is complete "
            "and not corrupt (for a shapefile, the .shp, .shx and .dbf must sit together)."
        ) from None


def _prj_of(path: Path) -> Path | None:
    """The .prj beside a shapefile, in whatever letter case it was written."""
    if path.suffix.lower() != ".shp":
        return None
    return next((p for p in path.parent.glob(glob.escape(path.stem) + ".*") if p.suffix.lower() == ".prj"), None)


def _without_prj(path: Path, folder: Path) -> Path:
    """Links to the shapefile's parts except its .prj, for reading under a declared CRS."""
    for part in path.parent.glob(glob.escape(path.stem) + ".*"):
        if part.suffix.lower() != ".prj":
            (folder / part.name).symlink_to(part.resolve())
    return folder / path.name


def _unreadable_crs(where: Path, detail: str) -> str:
    what = "this .prj" if where.suffix.lower() == ".prj" else "the file's CRS definition"
    return (
        f"{where}: {what} could not be read{detail}. Declare the CRS with --crs, "
        "e.g. --crs EPSG:5186 (Korea 2000 Central Belt) or --crs EPSG:5179 (UTM-K)."
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__


def _resolve_crs(path: Path, prj: Path | None, file_crs: str | None, declared: str | None, warnings: list[str]):
    if declared:
        src = parse_crs(declared, what="--crs")
        if file_crs:
            try:
                own = parse_crs(file_crs)
                if not own.equals(src, ignore_axis_order=True):
                    log.info("%s: using declared %s instead of the file's %s", path, declared, crs_label(own))
            except CRSError:
                pass
        return src, "declared"
    if not file_crs and prj is not None:
        raise CRSError(_unreadable_crs(prj, " (not a CRS definition GDAL understands)"))
    if not file_crs:
        raise CRSError(
            f"{path}: has no CRS (no .prj or embedded definition). Declare it with --crs, "
            "e.g. --crs EPSG:5186 (Korea 2000 Central Belt) or --crs EPSG:5179 (UTM-K)."
        )
    try:
        src = parse_crs(file_crs, what=f"{path}: the file's CRS")
    except CRSError as exc:
        raise CRSError(f"{exc} Declare the right one with --crs.") from None
    return src, "file"


def _check_datum_shift(path: Path, src: CRS, origin: str, accept: bool, warnings: list[str]) -> None:
    warning = check_datum_shift(src, f"{path} (declared CRS)" if origin == "declared" else str(path), accept)
    if warning:
        warnings.append(warning)


def read_window(src: VectorFile, start: int, size: int | None) -> gpd.GeoDataFrame:
    """Features ``start`` .. ``start + size`` (all when ``size`` is None), attributes as GDAL types them.

    A geometry GEOS cannot build (a ring of two points, an unclosed ring) is closed where
    it can be and left for the repair step, which drops and counts what stays degenerate.
    """
    window = {} if size is None else {"skip_features": start, "max_features": size}
    try:
        return _read_chunk(src.read_from, src.layer, src.encoding, **window)
    except UnicodeDecodeError as exc:
        enc = src.encoding or "the file's declared encoding"
        raise EncodingError(
            f"{src.path}: text cannot be decoded as {enc} ({exc.reason} at byte {exc.start}). "
            "Pass the right one with --encoding, e.g. --encoding cp949 for legacy Korean files."
        ) from None
    except (DataSourceError, DataLayerError) as exc:
        raise SourceError(f"{src.path}: reading features failed ({_first_line(exc)}); the file may be corrupt") from None


def _read_chunk(read_from: Path, layer: str, encoding: str | None, **window) -> gpd.GeoDataFrame:
    with catch_warnings():
        # GDAL and shapely warn about each ring they close; the ingest report counts the outcome
        simplefilter("ignore")
        return pyogrio.read_dataframe(read_from, layer=layer, encoding=encoding, fid_as_index=False,
                                      on_invalid="fix", **window)


def _check_mojibake(path: Path, gdf: gpd.GeoDataFrame, used: str | None) -> None:
    """Korean text decoded as Latin-1 (no .cpg, no --encoding) turns into 'ÅÂÆò·Î'.

    A column is flagged when most of its values with Latin-1 accents read as Korean in
    CP949. Correct Latin text can decode to a stray rare syllable ('Äq' is one), so a
    value counts only when most of its accented characters pair into common Hangul.
    """
    for col in gdf.columns:
        if col == gdf.geometry.name or not (pd.api.types.is_object_dtype(gdf[col]) or pd.api.types.is_string_dtype(gdf[col])):
            continue
        accented, korean = 0, []
        for value in gdf[col].dropna().head(200):
            if not isinstance(value, str) or not _LATIN1_HIGH.search(value):
                continue
            accented += 1
            fixed = _as_cp949(value)
            if fixed is not None:
                korean.append((value, fixed))
        if korean and 2 * len(korean) >= accented:
            value, fixed = korean[0]
            raise EncodingError(
                f"{path}: field '{col}' looks like Korean text decoded as {used or 'Latin-1'} "
                f"({value!r} reads as {fixed!r} in CP949). Pass --encoding cp949, or add a .cpg "
                "file containing CP949 next to the .shp."
            )


def _as_cp949(value: str) -> str | None:
    """The value re-read as CP949 when that turns most of its accented characters into Hangul."""
    try:
        fixed = value.encode("latin-1").decode("cp949")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    high = len(_LATIN1_HIGH.findall(value))
    # each common syllable (KS X 1001) is two accented characters in the mojibake
    common = sum(1 for ch in _HANGUL.findall(fixed) if _is_ksx1001(ch))
    return fixed if common and 2 * common >= 0.6 * high else None


def _is_ksx1001(ch: str) -> bool:
    try:
        ch.encode("euc-kr")
        return True
    except UnicodeEncodeError:
        return False
