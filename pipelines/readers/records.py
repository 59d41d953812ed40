"""Administrative records: CSV (UTF-8 or CP949/EUC-KR), XLSX and JSON, read as text tables.

Every value is read as text, so codes, phone numbers and RRNs keep their leading zeros
(and so the privacy scan sees them as written). An XLSX number shown through a
zero-padding format (000-0000-0000, 000000-0000000, 00000) is read as shown: stored as a
number, 010-1234-5678 is 1012345678, which no detector would take for a phone number.
Address and lon/lat columns are taken from the configuration, else found by their names.
"""
from __future__ import annotations

import codecs
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from geo.errors import EncodingError, SourceError
from geo.geometry import clamp_lonlat_xy

SUPPORTED = {".csv", ".tsv", ".txt", ".xlsx", ".json", ".geojson"}
ADDRESS_NAMES = ("address", "addr", "road_address", "jibun_address", "주소", "도로명주소", "지번주소", "소재지",
                 "소재지도로명주소", "소재지지번주소", "소재지주소", "위치")
LON_NAMES = ("lon", "lng", "long", "longitude", "x", "경도", "x좌표")
LAT_NAMES = ("lat", "latitude", "y", "위도", "y좌표")
ID_NAMES = ("id", "record_id", "관리번호", "번호")


@dataclass
class RecordColumns:
    """Which columns hold the address text, the coordinates and the record id."""

    address: list[str] = field(default_factory=list)
    lon: str | None = None
    lat: str | None = None
    id: str | None = None


@dataclass
class Records:
    path: Path
    table: pd.DataFrame  # all text (pandas string dtype), one row per record
    encoding: str | None  # what the text was decoded with (CSV only)
    columns: RecordColumns
    warnings: list[str] = field(default_factory=list)


def read_records(path: Path, *, encoding: str | None = None, address_columns: list[str] | None = None,
                 lon_column: str | None = None, lat_column: str | None = None,
                 id_column: str | None = None, sheet: str | int | None = None,
                 need_coordinates: bool = True) -> Records:
    """Read a records file and resolve its address / coordinate / id columns.

    ``need_coordinates=False`` (geotag by address alone) requires an address column even
    when the file has lon/lat columns.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file. Check the path (relative paths start at the current folder).")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise SourceError(f"{path}: unsupported records file {suffix or '(none)'}; use CSV, XLSX or JSON")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes)")
    warnings: list[str] = []
    used = None
    if suffix in (".csv", ".tsv", ".txt"):
        table, used = _read_csv(path, encoding, warnings)
    elif suffix == ".xlsx":
        table = _read_xlsx(path, sheet)
    else:
        table = _read_json(path)
    if table.empty:
        raise SourceError(f"{path}: has no records")
    table.columns = [str(c).strip() for c in table.columns]
    cols = resolve_columns(table, path, address_columns, lon_column, lat_column, id_column)
    if not need_coordinates and not cols.address:
        raise SourceError(f"{path}: no address column found (columns: {', '.join(table.columns)}); "
                          "name it with --address-column")
    return Records(path=path, table=table, encoding=used, columns=cols, warnings=warnings)


def _decode(data: bytes, path: Path, encoding: str | None) -> tuple[str, str]:
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise SourceError(f"{path}: unknown encoding {encoding!r}; use e.g. utf-8, cp949 or euc-kr") from None
        # files labelled EUC-KR usually hold CP949's extra syllables (똠, 펲); CP949 is its superset
        enc = "cp949" if codecs.lookup(encoding).name in ("euc_kr", "euc-kr") else encoding
        try:
            return data.decode(enc), encoding
        except UnicodeDecodeError as exc:
            raise EncodingError(f"{path}: not valid {encoding} at byte {exc.start}; check the encoding "
                                "(try --encoding utf-8 or --encoding cp949)") from None
    for enc in ("utf-8-sig", "cp949"):
        try:
            return data.decode(enc), ("utf-8" if enc == "utf-8-sig" else enc)
        except UnicodeDecodeError:
            continue
    raise EncodingError(f"{path}: neither UTF-8 nor CP949 text; give the encoding with --encoding")


def _read_csv(path: Path, encoding: str | None, warnings: list[str]) -> tuple[pd.DataFrame, str]:
    text, used = _decode(path.read_bytes(), path, encoding)
    first = text.split("\n", 1)[0]
    sep = "\t" if path.suffix.lower() == ".tsv" or first.count("\t") > first.count(",") else ","
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype="string", keep_default_na=False, na_values=[""],
                            on_bad_lines="error")
    except (pd.errors.ParserError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}); check quoting and separators") from None
    if encoding is None and used == "cp949":
        warnings.append(f"{path}: not UTF-8; read as CP949 (give --encoding to be explicit)")
    return table, used


def _read_xlsx(path: Path, sheet: str | int | None) -> pd.DataFrame:
    try:
        table = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype="string", engine="openpyxl")
        _show_zero_padding(table, path, sheet if sheet is not None else 0)
        return table
    except (ValueError, KeyError, OSError) as exc:
        raise SourceError(f"{path}: cannot be read as an XLSX workbook ({exc})") from None
    except Exception as exc:  # openpyxl raises zipfile/InvalidFileException on corrupt files
        raise SourceError(f"{path}: cannot be read as an XLSX workbook ({type(exc).__name__}: {exc})") from None


#: one number-format section of digit placeholders (0 pads, # does not) and literal separators
_ZERO_FORMAT = re.compile(r'(?:[0#]|\\.|"[^"]*"|[-\s()])+')
_FORMAT_TOKEN = re.compile(r'[0#]|\\.|"[^"]*"|.')


def _zero_padded(value: object, number_format: str | None) -> str | None:
    """The text Excel shows for a whole number under a zero-padding format (one with a 0 placeholder), else None."""
    fmt = (number_format or "").split(";")[0]
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not float(value).is_integer()
            or "0" not in fmt or not _ZERO_FORMAT.fullmatch(fmt)):
        return None
    tokens = _FORMAT_TOKEN.findall(fmt)
    digits = list(str(int(value)))
    out = []
    for t in reversed(tokens):  # digits fill the placeholders from the right
        if t in "0#":
            out.append(digits.pop() if digits else "0" if t == "0" else "")
        else:
            out.append(t[1] if t.startswith("\\") else t.strip('"') if t.startswith('"') else t)
    return "".join(digits) + "".join(reversed(out))  # digits beyond the placeholders lead, as Excel shows them


def _show_zero_padding(table: pd.DataFrame, path: Path, sheet: str | int) -> None:
    """Numbers under a zero-padding format become the text Excel shows (pandas reads the bare number).

    Rows are walked as pandas' openpyxl reader walks them: first row the header, then one row per record.
    """
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
    try:
        ws = book[sheet] if isinstance(sheet, str) else book.worksheets[sheet]
        ws.reset_dimensions()
        for i, row in enumerate(ws.rows):
            if i == 0:
                continue
            if i > len(table):
                break
            for j, cell in enumerate(row[:table.shape[1]]):
                shown = _zero_padded(cell.value, cell.number_format)
                if shown is not None:
                    table.iat[i - 1, j] = shown
    finally:
        book.close()


def _read_json(path: Path) -> pd.DataFrame:
    """A list of objects, {"records"|"data"|"items": [...]}, or a GeoJSON FeatureCollection of points."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: not valid UTF-8 JSON ({exc})") from None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        rows = []
        for f in data.get("features") or []:
            row = dict(f.get("properties") or {})
            geom = f.get("geometry") or {}
            if geom.get("type") == "Point" and len(geom.get("coordinates") or []) >= 2:
                row.setdefault("lon", geom["coordinates"][0])
                row.setdefault("lat", geom["coordinates"][1])
            rows.append(row)
    elif isinstance(data, dict):
        rows = next((data[k] for k in ("records", "data", "items", "rows") if isinstance(data.get(k), list)), None)
        if rows is None:
            raise SourceError(f"{path}: JSON object without a 'records' (or data/items/rows) list of objects")
    elif isinstance(data, list):
        rows = data
    else:
        raise SourceError(f"{path}: JSON must be a list of objects")
    if not all(isinstance(r, dict) for r in rows):
        raise SourceError(f"{path}: every JSON record must be an object")
    table = pd.DataFrame.from_records(rows)
    return table.apply(lambda s: s.map(lambda v: None if v is None else str(v))).astype("string")


def _pick(columns: list[str], given: str | None, names: tuple[str, ...], path: Path, what: str) -> str | None:
    if given:
        if given not in columns:
            raise SourceError(f"{path}: {what} column '{given}' is not in the file (columns: {', '.join(columns)})")
        return given
    lower = {re.sub(r"[\s_]", "", c.lower()): c for c in columns}
    for n in names:
        if n.replace("_", "") in lower:
            return lower[n.replace("_", "")]
    return None


def resolve_columns(table: pd.DataFrame, path: Path, address: list[str] | None, lon: str | None,
                    lat: str | None, id_col: str | None) -> RecordColumns:
    columns = list(table.columns)
    if address:
        missing = [c for c in address if c not in columns]
        if missing:
            raise SourceError(f"{path}: address column(s) {', '.join(missing)} not in the file "
                              f"(columns: {', '.join(columns)}); use --address-column")
        addr = list(address)
    else:
        found = [c for c in columns if re.sub(r"[\s_]", "", c.lower()) in {n.replace("_", "") for n in ADDRESS_NAMES}]
        addr = found
    lon_c = _pick(columns, lon, LON_NAMES, path, "longitude")
    lat_c = _pick(columns, lat, LAT_NAMES, path, "latitude")
    if (lon_c is None) != (lat_c is None):
        raise SourceError(f"{path}: found a {'longitude' if lon_c else 'latitude'} column but not the other; "
                          "name both (--lon-column / --lat-column)")
    if not addr and lon_c is None:
        raise SourceError(f"{path}: no address column and no lon/lat columns found (columns: {', '.join(columns)}); "
                          "name the address column with --address-column")
    return RecordColumns(address=addr, lon=lon_c, lat=lat_c, id=_pick(columns, id_col, ID_NAMES, path, "id"))


def coordinates(records: Records) -> tuple[pd.Series, pd.Series, int]:
    """lon/lat as floats (NaN where missing, unparseable or outside lon/lat ranges), and how many
    records lay a rounding hair past ±180/±90 and were clamped onto the limit."""
    t, c = records.table, records.columns
    if c.lon is None:
        nan = pd.Series(float("nan"), index=t.index)
        return nan, nan.copy(), 0
    lon = pd.to_numeric(t[c.lon].str.strip(), errors="coerce").astype("float64")
    lat = pd.to_numeric(t[c.lat].str.strip(), errors="coerce").astype("float64")
    xy, clamped = clamp_lonlat_xy(np.column_stack([lon.to_numpy(), lat.to_numpy()]))
    lon, lat = pd.Series(xy[:, 0], index=t.index), pd.Series(xy[:, 1], index=t.index)
    bad = ~(lon.between(-180, 180) & lat.between(-90, 90)) | ((lon == 0) & (lat == 0))
    return lon.mask(bad), lat.mask(bad), int(clamped.sum())
