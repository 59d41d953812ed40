"""Geotag administrative records and photos, scrub personal data, publish a POI layer.

records/photos -> geocode (tiered gazetteer) -> check record coordinates against the
address's gu -> privacy (whitelist, detectors, audit) -> last gate -> store.publish.

The gazetteer comes from the project's own reference layers in the store: boundary
layers (gu, 법정동, 행정동) are recognised from their codes and names, address points
and addressed buildings from their address fields; the catalog's ``reference:`` entry
overrides either.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo.address import address_flags
from geo.admin_codes import ADMIN_DONG, LEGAL_DONG, SIDO, SIGUNGU, detect_reference_fields
from geo.errors import SourceError
from geo.geocoder import TIERS, AddressLayer, AreaLayer, Geocoder, GeocodeResult, haversine_m
from geo.geometry import clamped_note
from geo.names import check_layer_name
from geo.romanize import romanize
from pipelines.catalog import Catalog, LayerConfig, add_layer_entry, load_catalog
from pipelines.project import project_store
from pipelines.readers.media import scan_media
from pipelines.readers.records import coordinates, read_records
from pipelines.steps.privacy import assert_clean, check_id_column, policy_of, scrub
from pipelines.store import Store
from pipelines.store.base import ID_COLUMN

log = logging.getLogger(__name__)
AUDIT_DIR = "audit"
REFERENCE_ADDRESS_NAMES = ("address", "addr", "road_address", "jibun_address", "road_addr", "jibun_addr", "rn_addr",
                           "도로명주소", "지번주소", "주소")
#: fields this pipeline adds; always published, never whitelisted away
GEOTAG_FIELDS = ("geocode_tier", "geocode_score", "geocode_match", "geocode_source", "geocode_note", "address_gu",
                 "address_flags", "position_source", "coord_check", "coord_offset_m")
NAME_FIELDS = ("name_ko", "name_en", "name_ja", "name_zh", "name_en_source")
#: record columns a POI's names come from, per language, tried in order
NAME_COLUMNS = {
    "name_ko": ("name_ko", "name_kor", "korean_name", "name", "명칭", "시설명", "관광지명", "장소명", "상호", "상호명", "title",
                "poi_name"),
    "name_en": ("name_en", "name_eng", "english_name", "영문명", "영문명칭"),
    "name_ja": ("name_ja", "name_jp", "japanese_name", "일본어명", "일문명"),
    "name_zh": ("name_zh", "name_cn", "chinese_name", "중국어명", "중문명"),
}
PHOTO_FIELDS = ("file", "media_type", "taken_at", "gps_time_utc", "altitude_m", "direction_deg", "direction_ref",
                "gu", "dong")


@dataclass
class GeotagReport:
    layer: str
    source: str
    read: int = 0
    published: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    coord_check: dict[str, int] = field(default_factory=dict)
    clamped: int = 0  # records a rounding hair past ±180/±90, clamped onto the limit
    unplaced: list[dict] = field(default_factory=list)  # record id + reason
    gazetteer: list[str] = field(default_factory=list)
    privacy: dict = field(default_factory=dict)
    audit_path: str | None = None
    out_path: str | None = None
    written: int = 0  # rows in --out (all of them, placed or not)
    unmatched_csv: str | None = None
    disagreements_csv: str | None = None
    flags: dict[str, int] = field(default_factory=dict)  # messy-address flags
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        order = [t for t in TIERS if t in self.tiers] + [t for t in self.tiers if t not in TIERS]
        tiers = ", ".join(f"{t} {self.tiers[t]}" for t in order)
        if self.published or not self.out_path:
            lines = [f"layer '{self.layer}' (pois): published {self.published} of {self.read} from {self.source} "
                     f"in {self.seconds:.1f}s"]
        else:
            lines = [f"geotagged {self.read} records from {self.source} in {self.seconds:.1f}s"]
        if self.out_path:
            lines.append(f"  wrote all {self.written} rows (placed or not) to {self.out_path}")
        if self.tiers:
            lines.append(f"  geocoded: {tiers or 'nothing'} [gazetteer: {', '.join(self.gazetteer) or 'empty'}]")
        if self.clamped:
            lines.append(f"  {clamped_note(self.clamped, 'record', 'records')}")
        if self.coord_check:
            lines.append("  coordinates vs address gu: " + ", ".join(f"{k} {v}" for k, v in sorted(self.coord_check.items())))
        if self.flags:
            lines.append("  messy addresses (flagged, kept): " + ", ".join(f"{k} {v}" for k, v in sorted(self.flags.items())))
        if self.unmatched_csv:
            lines.append(f"  unmatched rows: {self.unmatched_csv}")
        if self.disagreements_csv:
            lines.append(f"  coordinate disagreements: {self.disagreements_csv}")
        if self.unplaced:
            shown = ", ".join(f"{u['id']} ({u['reason']})" for u in self.unplaced[:5])
            more = f" and {len(self.unplaced) - 5} more" if len(self.unplaced) > 5 else ""
            lines.append(f"  not placed ({len(self.unplaced)}): {shown}{more}")
        if self.privacy:
            lines.append(f"  {self.privacy.get('summary', '')}; audit: {self.audit_path}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


# --- the gazetteer ---------------------------------------------------------------------

def _address_fields(columns: list[str], cfg: LayerConfig) -> list[str]:
    if cfg.reference and cfg.reference.address_fields:
        return list(cfg.reference.address_fields)
    lower = {c.lower(): c for c in columns}
    return [lower[n] for n in REFERENCE_ADDRESS_NAMES if n in lower]


def load_gazetteer(catalog: Catalog, store: Store, exclude: tuple[str, ...] = ()) -> Geocoder:
    """A Geocoder from the catalog's reference layers that are in the store.

    boundaries -> admin areas (level and name fields from codes and contents);
    buildings with an address field -> building tier; point layers marked
    ``reference: {role: address_points}`` (or plain point layers with an address field
    that were not produced by geotagging) -> address tier.
    """
    present = set(store.layers())
    areas: list[AreaLayer] = []
    points: list[AddressLayer] = []
    buildings: list[AddressLayer] = []
    for name, cfg in catalog.layers.items():
        if name in exclude or name not in present:
            continue
        ref = cfg.reference
        role = ref.role if ref and ref.role else None
        if role == "none":
            continue
        info = store.info(name)
        cols = list(info.fields)
        if role is None:
            if cfg.kind == "boundaries":
                role = "admin"
            elif cfg.kind == "buildings" and _address_fields(cols, cfg):
                role = "buildings"
            elif ("Point" in info.geometry_type and cfg.records is None and "geocode_tier" not in cols
                  and cfg.kind in ("generic",) and _address_fields(cols, cfg)):
                role = "address_points"
        if role is None:
            continue
        gdf = store.read(name)
        if role == "admin":
            try:
                fields = detect_reference_fields(
                    gdf, f"layer '{name}'", level=ref.admin_level if ref else None,
                    code_field=ref.code_field if ref else None, name_ko_field=ref.name_ko_field if ref else None,
                    name_en_field=ref.name_en_field if ref else None)
            except SourceError:
                if ref and ref.role == "admin":
                    raise
                log.warning("layer '%s': boundaries not usable as a gazetteer (no admin codes/names found)", name)
                continue
            areas.append(AreaLayer(name=name, gdf=gdf, fields=fields))
        else:
            fields = _address_fields(cols, cfg)
            if not fields:
                raise SourceError(f"layer '{name}': reference role {role} needs reference.address_fields in citytwin.yaml")
            target = points if role == "address_points" else buildings
            target.append(AddressLayer(name=name, gdf=gdf, address_fields=fields, id_field=ID_COLUMN))
    return Geocoder(areas=areas, address_points=points, buildings=buildings)


def reference_gaps(geocoder: Geocoder, project: Path) -> str | None:
    """Which reference layers the gazetteer lacks, how precise addresses can get without
    them, and the command that adds each; None when every tier has a layer."""
    levels = {a.level for a in geocoder.areas}
    has_gu, has_dong = bool(levels & {SIDO, SIGUNGU}), bool(levels & {LEGAL_DONG, ADMIN_DONG})
    has_addresses = bool(geocoder.points.refs or geocoder.buildings.refs)
    at = shlex.quote(str(project))
    missing = []
    if not has_gu:
        missing.append(f"gu boundaries: citytwin ingest GU.geojson --layer gu --kind boundaries --project {at}")
    if not has_dong:
        missing.append(f"dong boundaries: citytwin ingest DONG.geojson --layer dong --kind boundaries --project {at}")
    if not has_addresses:
        missing.append("buildings or address points with an address field (도로명주소/지번주소/address): "
                       f"citytwin ingest BUILDINGS.shp --layer buildings --kind buildings --project {at}, or "
                       f"citytwin geotag ADDRESSES.csv --layer address_points --as-reference --project {at}")
    if not missing:
        return None
    finest = ("building or address point" if has_addresses else "dong" if has_dong else "gu" if has_gu
              else "none: no address can be placed")
    return f"addresses are placed at most to {finest} level; missing reference layers: " + "; ".join(missing)


# --- records -----------------------------------------------------------------------------

_TIER_RANK = {t: i for i, t in enumerate(TIERS)}


def _best(results_per_column: list[list[GeocodeResult]]) -> list[GeocodeResult]:
    best = list(results_per_column[0])
    for col in results_per_column[1:]:
        for i, r in enumerate(col):
            if (_TIER_RANK[r.tier], -r.score) < (_TIER_RANK[best[i].tier], -best[i].score):
                best[i] = r
    return best


def geotag_records(project: Path, path: Path, layer: str | None, *, encoding: str | None = None,
                   address_columns: list[str] | None = None, lon_column: str | None = None,
                   lat_column: str | None = None, id_column: str | None = None,
                   as_reference: bool = False, out: Path | None = None, ignore_coordinates: bool = False,
                   progress: bool | None = None) -> GeotagReport:
    """``citytwin geotag``: read records, geocode, check, scrub; publish them as a pois layer and/or write OUT.

    With ``layer`` the placed records become a store layer. With ``out`` every record, placed
    or not, is written to a GeoPackage (atomically), next to it OUT.unmatched.csv and
    OUT.disagreements.csv. ``ignore_coordinates`` places records by their address alone.
    ``progress`` None shows a bar only on a terminal.
    """
    t0 = time.perf_counter()
    if layer is None and out is None:
        raise SourceError("give --layer (publish to the store), --out OUT.gpkg (write a file), or both")
    if layer is not None:
        check_layer_name(layer)
    out = Path(out) if out is not None else None
    if out is not None and out.suffix.lower() != ".gpkg":
        raise SourceError(f"{out}: --out must be a .gpkg file")
    out_layer = layer or _layer_name_from(out)
    catalog = load_catalog(project)
    cfg = catalog.layers.get(out_layer, LayerConfig(kind="pois"))
    rc = cfg.records
    recs = read_records(
        Path(path), encoding=encoding or cfg.encoding,
        address_columns=address_columns or (rc.address_columns if rc and rc.address_columns else None),
        lon_column=lon_column or (rc.lon_column if rc else None), lat_column=lat_column or (rc.lat_column if rc else None),
        id_column=id_column or (rc.id_column if rc else None), need_coordinates=not ignore_coordinates)
    table = recs.table
    report = GeotagReport(layer=out_layer, source=str(path), read=len(table), warnings=list(recs.warnings))

    ids = _record_ids(table, recs.columns.id, path)
    store = project_store(catalog)
    geocoder = load_gazetteer(catalog, store, exclude=(out_layer,))
    report.gazetteer = geocoder.sources
    if ignore_coordinates:
        nan = pd.Series(float("nan"), index=table.index)
        lon, lat = nan, nan.copy()
    else:
        lon, lat, report.clamped = coordinates(recs)
    n = len(table)
    if recs.columns.address:
        results = _best([_geocode(geocoder, table[c].fillna("").tolist(), c, progress) for c in recs.columns.address])
    else:
        results = [GeocodeResult(query="", tier="none", score=0.0, note="no address column") for _ in range(n)]
    gaps = reference_gaps(geocoder, project) if recs.columns.address else None
    if gaps:
        report.warnings.append(gaps)

    has_xy = lon.notna() & lat.notna()
    geo_lon = pd.Series([r.lon for r in results], index=table.index, dtype="float64")
    geo_lat = pd.Series([r.lat for r in results], index=table.index, dtype="float64")
    use_lon, use_lat = lon.where(has_xy, geo_lon), lat.where(has_xy, geo_lat)
    checks = np.array(["unchecked"] * n, dtype=object)
    both = (has_xy & geo_lon.notna()).to_numpy()
    if both.any():
        sel = np.flatnonzero(both)
        checks[sel] = geocoder.check_coordinates([results[i] for i in sel], lon.to_numpy()[sel], lat.to_numpy()[sel])
    offset = pd.Series(np.nan, index=table.index)
    offset[both] = haversine_m(lon[both], lat[both], geo_lon[both], geo_lat[both]).round(1)
    flags = [address_flags(r.parsed) if r.parsed is not None else (["empty"] if recs.columns.address else [])
             for r in results]

    ours = pd.DataFrame({
        "geocode_tier": [r.tier for r in results],
        "geocode_score": [r.score for r in results],
        "geocode_match": [r.matched for r in results],
        "geocode_source": [r.source for r in results],
        "geocode_note": [r.note or None for r in results],
        "address_gu": [r.gu for r in results],
        "address_flags": [",".join(f) or None for f in flags],
        "position_source": np.where(has_xy, "record", np.where(geo_lon.notna(), "geocoded", None)),
        "coord_check": checks,
        "coord_offset_m": offset.to_numpy(),
    }, index=table.index)
    report.tiers = dict(Counter(r.tier for r in results))
    report.coord_check = dict(Counter(checks.tolist()))
    report.flags = dict(Counter(f for fl in flags for f in fl))

    placed = (use_lon.notna() & use_lat.notna()).to_numpy()
    for i in np.flatnonzero(~placed):
        reason = results[i].note or "no coordinates and no recognised address"
        report.unplaced.append({"id": ids.iloc[i], "reason": reason})
    attrs = pd.concat([ours, table.astype(object)], axis=1)
    attrs = attrs.loc[:, ~attrs.columns.duplicated()]
    geometry = shapely.points(use_lon.to_numpy(), use_lat.to_numpy())
    if layer is not None:
        gdf = _publishable(attrs[placed], ids[placed], geometry[placed], cfg, layer, report, GEOTAG_FIELDS, names=True)
        _publish(catalog, store, layer, gdf, report)
        entry: dict = {"kind": "pois", "records": {k: v for k, v in {
            "address_columns": recs.columns.address or None, "lon_column": recs.columns.lon,
            "lat_column": recs.columns.lat, "id_column": recs.columns.id}.items() if v}}
        if as_reference and recs.columns.address:
            entry["reference"] = {"role": "address_points", "address_fields": recs.columns.address}
        if encoding:
            entry["encoding"] = encoding
        _add_entry(project, catalog, layer, entry)
    if out is not None:
        published = report.published
        full = _publishable(attrs, ids, np.where(placed, geometry, None), cfg, out_layer, report, GEOTAG_FIELDS,
                            names=True)
        report.published = published
        report.written = len(full)
        _write_out(full, out, out_layer, report, geocoder, lon, lat)
    report.seconds = time.perf_counter() - t0
    return report


def _layer_name_from(out: Path | None) -> str:
    """A safe layer name from OUT's file name ('Tourism POIs.gpkg' -> 'tourism_pois')."""
    stem = re.sub(r"[^a-z0-9_]+", "_", (out.stem if out else "").lower()).strip("_") or "records"
    return stem if stem[0].isalpha() else f"r_{stem}"


def _geocode(geocoder: Geocoder, texts: list, column: str, progress: bool | None) -> list[GeocodeResult]:
    """geocode_many with a progress bar over the distinct texts (a terminal only, unless forced)."""
    from tqdm import tqdm

    texts = ["" if t is None else str(t) for t in texts]
    unique = list(dict.fromkeys(texts))
    done = {t: geocoder.geocode(t) for t in tqdm(unique, desc=f"geocoding {column}", unit="addr",
                                                   disable=None if progress is None else not progress,
                                                   leave=False)}
    return [done[t] for t in texts]


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False, encoding="utf-8")
    os.replace(tmp, path)


def _write_out(gdf: gpd.GeoDataFrame, out: Path, layer: str, report: GeotagReport, geocoder: Geocoder,
               lon: pd.Series, lat: pd.Series) -> None:
    """OUT.gpkg (all rows) and its two CSV reports, each replaced atomically; values already scrubbed."""
    import pyogrio

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".gpkg", dir=out.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()
    try:
        pyogrio.write_dataframe(gdf, tmp_path, layer=layer, driver="GPKG", promote_to_multi=False,
                                layer_options={"SPATIAL_INDEX": "YES", "FID": "fid"})
        os.replace(tmp_path, out)
    except Exception as exc:
        tmp_path.unlink(missing_ok=True)
        raise SourceError(f"{out}: could not write the result ({exc}); any previous file is unchanged") from exc
    report.out_path = str(out)
    base = out.with_suffix("")
    text_cols = [c for c in gdf.columns if c not in ("geometry",) and c not in GEOTAG_FIELDS and c not in NAME_FIELDS]
    unmatched = gdf[gdf["geocode_tier"] == "none"]
    cols = ["id", *[c for c in text_cols if c != "id"], "geocode_note", "address_flags"]
    report.unmatched_csv = str(base) + ".unmatched.csv"
    _atomic_csv(pd.DataFrame(unmatched[cols]), Path(report.unmatched_csv))
    dis = gdf["coord_check"] == "disagrees"
    point_gu = [g.name_ko if g is not None else None for g in geocoder.gu_at(lon.to_numpy()[dis.to_numpy()],
                                                                            lat.to_numpy()[dis.to_numpy()])] \
        if dis.any() else []
    table = pd.DataFrame(gdf.loc[dis, ["id", *[c for c in text_cols if c != "id"], "address_gu"]])
    table["point_gu"] = point_gu
    table["coord_offset_m"] = gdf.loc[dis, "coord_offset_m"].to_numpy()
    table["lon"] = gdf.loc[dis].geometry.x.round(7).to_numpy()
    table["lat"] = gdf.loc[dis].geometry.y.round(7).to_numpy()
    report.disagreements_csv = str(base) + ".disagreements.csv"
    _atomic_csv(table, Path(report.disagreements_csv))
    audit = Path(str(base) + ".audit.json")
    if report.audit_path is None:
        report.audit_path = str(audit)
    tmp_a = audit.with_name(f".{audit.name}.tmp")
    tmp_a.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    os.replace(tmp_a, audit)


def _record_ids(table: pd.DataFrame, id_col: str | None, path) -> pd.Series:
    """The configured id column, else the record's 1-based row number: stable, and never personal."""
    if id_col is None:
        return pd.Series([str(i + 1) for i in range(len(table))], index=table.index, dtype=object)
    ids = table[id_col].astype(object)
    if ids.isna().any() or ids.duplicated().any():
        raise SourceError(f"{path}: id column '{id_col}' has empty or repeated values; fix it or omit --id-column")
    check_id_column(id_col, ids.tolist(), str(path), "use another id column or none (row numbers are used then)")
    return ids.astype(str)


def _names(clean: pd.DataFrame) -> pd.DataFrame:
    """name_ko/en/ja/zh from the (already scrubbed) record columns; name_en romanised when absent.

    Names come from published columns only, so a withheld column never reappears as a name.
    """
    lower = {str(c).lower(): c for c in clean.columns}
    out = pd.DataFrame(index=clean.index)
    for target, candidates in NAME_COLUMNS.items():
        col = next((lower[c] for c in candidates if c in lower), None)
        if col is not None:
            s = clean[col].astype(object)
            out[target] = s.where(s.notna() & (s.astype(str).str.strip() != ""), None)
    if "name_ko" not in out:
        return out
    given = out["name_en"] if "name_en" in out else pd.Series(None, index=clean.index, dtype=object)
    roman = out["name_ko"].map(lambda v: romanize(v) if isinstance(v, str) and v.strip() else None)
    out["name_en"] = given.where(given.notna(), roman)
    out["name_en_source"] = np.where(given.notna(), "record", np.where(roman.notna(), "romanized", None))
    return out


def _publishable(attrs: pd.DataFrame, ids: pd.Series, geometry: np.ndarray, cfg: LayerConfig, layer: str,
                 report: GeotagReport, keep: tuple[str, ...], names: bool = False) -> gpd.GeoDataFrame:
    """Privacy (whitelist, detectors), the last gate, then a store-ready GeoDataFrame."""
    policy = policy_of(cfg.privacy)
    attrs = attrs.drop(columns=[c for c in ("geometry",) if c in attrs.columns])
    if ID_COLUMN in attrs.columns:
        attrs = attrs.rename(columns={ID_COLUMN: "source_id"})
    clean, audit = scrub(attrs, policy, layer, ids=ids, keep=tuple(c for c in keep if c in attrs.columns))
    if names:
        extra = _names(clean)
        clean = pd.concat([clean.drop(columns=[c for c in extra.columns if c in clean.columns]), extra], axis=1)
    assert_clean(clean, layer)
    report.privacy = {**audit.as_dict(), "summary": audit.summary()}
    report.warnings += audit.warnings
    clean = clean.reset_index(drop=True)
    for col in clean.columns:  # text columns: missing is None; numbers stay numbers
        if clean[col].dtype.kind not in "fiub":
            s = clean[col].astype(object)
            clean[col] = s.where(s.notna(), None)
    clean.insert(0, ID_COLUMN, ids.to_numpy().astype(str))
    gdf = gpd.GeoDataFrame(clean, geometry=gpd.GeoSeries(geometry, crs="EPSG:4326"), crs="EPSG:4326")
    report.published = len(gdf)
    return gdf


def _publish(catalog: Catalog, store: Store, layer: str, gdf: gpd.GeoDataFrame, report: GeotagReport) -> None:
    if gdf.empty:
        raise SourceError(f"layer '{layer}': no record could be placed ({len(report.unplaced)} without a position); "
                          "nothing was published. Add lon/lat columns or ingest reference boundaries.")
    store.publish(layer, gdf)
    out = catalog.build_path / AUDIT_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{layer}.geotag.json"
    report.audit_path = str(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _add_entry(project: Path, catalog: Catalog, layer: str, entry: dict) -> None:
    if layer not in catalog.layers:
        add_layer_entry(project, layer, entry)


# --- photos and videos -------------------------------------------------------------------

def _content_id(path: Path) -> str:
    """A stable id from the file's bytes (first MiB + size): survives renames, says nothing about names in paths."""
    h = hashlib.sha1()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
    h.update(str(path.stat().st_size).encode())
    return h.hexdigest()[:16]


def geotag_photos(project: Path, directory: Path, layer: str) -> GeotagReport:
    """``citytwin photos``: positions from EXIF / MP4 atoms, admin areas by reverse geocoding, publish."""
    t0 = time.perf_counter()
    check_layer_name(layer)
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"{directory}: not a folder; give the folder that holds the photos and videos")
    catalog = load_catalog(project)
    cfg = catalog.layers.get(layer, LayerConfig(kind="pois"))
    media = scan_media(directory)
    report = GeotagReport(layer=layer, source=str(directory), read=len(media))
    if not media:
        raise SourceError(f"{directory}: no JPEG, MP4 or MOV files found")
    store = project_store(catalog)
    geocoder = load_gazetteer(catalog, store, exclude=(layer,))
    report.gazetteer = geocoder.sources
    rows, geoms, ids = [], [], []
    for m in media:
        rel = m.path.relative_to(directory).as_posix()
        if not m.located:
            report.unplaced.append({"id": rel, "reason": m.problem or "no position"})
            continue
        ids.append(_content_id(m.path))
        rev = geocoder.reverse(m.lon, m.lat)
        by_level = {a["level"]: a["name_ko"] for a in rev.areas}
        rows.append({"file": rel, "media_type": m.media_type, "taken_at": m.taken_at, "gps_time_utc": m.gps_time_utc,
                     "altitude_m": m.altitude_m, "direction_deg": m.direction_deg, "direction_ref": m.direction_ref,
                     "gu": by_level.get("sigungu"), "dong": by_level.get("legal_dong") or by_level.get("admin_dong")})
        geoms.append(shapely.Point(m.lon, m.lat))
    report.tiers = {"located": len(rows), "no position": len(report.unplaced)}
    attrs = pd.DataFrame(rows, columns=list(PHOTO_FIELDS))
    seen: Counter = Counter()
    for i, v in enumerate(ids):  # the same photo copied twice keeps two rows
        seen[v] += 1
        ids[i] = v if seen[v] == 1 else f"{v}-{seen[v]}"
    # 'file' is not in keep: file names are scanned like any record text
    gdf = _publishable(attrs, pd.Series(ids, dtype=object), np.array(geoms, dtype=object), cfg, layer, report,
                       tuple(f for f in PHOTO_FIELDS if f != "file"))
    _publish(catalog, store, layer, gdf, report)
    _add_entry(project, catalog, layer, {"kind": "pois"})
    report.seconds = time.perf_counter() - t0
    return report
