"""A gazetteer geocoder for Korean addresses: forward (text -> point) and reverse (point -> areas).

Built from GeoDataFrames in EPSG:4326 that the caller passes in (no store access here):
address points, buildings carrying addresses, and admin boundaries (gu, 법정동, 행정동).

Forward matching is tiered, and every result says which tier it reached:

    address   an address point with the same road + building number (or dong + lot number)
    building  a building whose address matches; placed on the footprint (point_on_surface)
    dong      the 법정동 / 행정동 the address names (or its "(여의도동)" hint)
    gu        the 시군구 the address names
    none      nothing recognised

Area tiers place the point inside the area with shapely's point_on_surface, never at a
centroid that can fall outside a concave dong. Lookups go through dicts keyed by
normalised names; fuzzy matching (rapidfuzz) only runs over the candidates inside the
recognised gu, so the cost per address does not grow with the size of the gazetteer.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace

import geopandas as gpd
import numpy as np
import shapely
from rapidfuzz import fuzz, process

from geo.address import LOT, ROAD, ParsedAddress, name_key, parse_address
from geo.admin_codes import (
    ADMIN_DONG, DONG_LEVELS, LEGAL_DONG, SIDO, SIDO_BY_CODE, SIGUNGU, ReferenceFields, detect_reference_fields,
)
from geo.errors import SourceError

TIER_ADDRESS = "address"
TIER_BUILDING = "building"
TIER_DONG = "dong"
TIER_GU = "gu"
TIER_SIDO = "sido"
TIER_NONE = "none"
TIERS = (TIER_ADDRESS, TIER_BUILDING, TIER_DONG, TIER_GU, TIER_SIDO, TIER_NONE)
FUZZY_CUTOFF = 85.0
_EARTH_R = 6_371_008.8


@dataclass(frozen=True)
class AreaRef:
    """One admin area of the gazetteer."""

    level: str
    code: str | None
    name_ko: str
    name_en: str | None
    source: str
    lon: float  # a point inside the area
    lat: float
    sido: str | None = None
    gu: int = -1  # index of the parent gu, -1 when unknown or itself a gu


@dataclass(frozen=True)
class AddressRef:
    """One address point or addressed building."""

    address: str
    source: str
    lon: float
    lat: float
    ref_id: str | None
    gu: int = -1


@dataclass
class GeocodeResult:
    query: str
    tier: str
    score: float  # 0-100: how well the matched reference fits the text
    lon: float | None = None
    lat: float | None = None
    matched: str | None = None  # the reference's address or area name
    matched_code: str | None = None
    matched_en: str | None = None
    source: str | None = None  # the reference layer
    area_level: str | None = None  # legal_dong / admin_dong / sigungu for area tiers
    gu: str | None = None  # the gu the address was placed in
    gu_code: str | None = None
    note: str = ""
    parsed: ParsedAddress | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("parsed")
        if self.parsed is not None:
            d["recognised"] = self.parsed.recognised
            d["unrecognised"] = self.parsed.unrecognised
        return d


@dataclass
class ReverseResult:
    lon: float
    lat: float
    areas: list[dict]  # one per admin layer containing the point: level, code, name_ko, name_en, source
    nearest: dict | None  # address, source, ref_id, distance_m


@dataclass
class AreaLayer:
    """A boundary layer handed to the geocoder; fields are detected when not given."""

    name: str
    gdf: gpd.GeoDataFrame
    fields: ReferenceFields | None = None


@dataclass
class AddressLayer:
    """Address points or buildings with one or more address text columns (road and/or lot)."""

    name: str
    gdf: gpd.GeoDataFrame
    address_fields: list[str]
    id_field: str | None = None


def haversine_m(lon1, lat1, lon2, lat2):
    """Great-circle distance in metres (numpy-friendly)."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype="float64")) for v in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_R * np.arcsin(np.sqrt(a))


def _jamo(key: str) -> str:
    """Hangul syllables split into jamo, so one wrong vowel (세종데로) costs one letter, not a syllable."""
    return unicodedata.normalize("NFD", key)


class _Fuzzy:
    """rapidfuzz over a small candidate set, compared on jamo."""

    def __init__(self) -> None:
        self.by_jamo: dict[str, str] = {}

    def add(self, key: str) -> None:
        self.by_jamo.setdefault(_jamo(key), key)

    def best(self, key: str) -> tuple[str, float] | None:
        found = process.extractOne(_jamo(key), self.by_jamo.keys(), scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF)
        return (self.by_jamo[found[0]], float(found[1])) if found else None

    def __len__(self) -> int:
        return len(self.by_jamo)


def _dong_variants(name: str) -> list[str]:
    """Keys to try for a dong name: as written, then the 법정동 an admin dong belongs to."""
    key = name_key(name)
    out = [key]
    legal = re.sub(r"제?\d+동$", "동", key)  # 역삼1동 / 신림9동 -> 역삼동 / 신림동
    if legal != key:
        out.append(legal)
    return out


class _AddressIndex:
    """Road and lot keys of one tier (address points or buildings) -> references."""

    def __init__(self) -> None:
        self.refs: list[AddressRef] = []
        self.road: dict[tuple, list[int]] = defaultdict(list)  # (gu, road, main, sub)
        self.lot: dict[tuple, list[int]] = defaultdict(list)  # (gu, dong, san, main, sub)
        self.roads_in_gu: dict[int, _Fuzzy] = defaultdict(_Fuzzy)
        self.dongs_in_gu: dict[int, _Fuzzy] = defaultdict(_Fuzzy)

    def add(self, ref: AddressRef, parsed: ParsedAddress) -> None:
        i = len(self.refs)
        self.refs.append(ref)
        for gu in {ref.gu, -1}:
            if parsed.kind == ROAD:
                road = name_key(parsed.road)
                self.road[(gu, road, parsed.building_main, parsed.building_sub or 0)].append(i)
                self.roads_in_gu[gu].add(road)
            elif parsed.kind == LOT:
                dong = name_key(parsed.dong)
                self.lot[(gu, dong, parsed.san, parsed.lot_main, parsed.lot_sub or 0)].append(i)
                self.dongs_in_gu[gu].add(dong)

    def lookup(self, p: ParsedAddress, gus: list[int]) -> tuple[AddressRef, float] | None:
        if not self.refs:
            return None
        scopes = gus or [-1]
        if p.kind == ROAD:
            name, rest, table, names = name_key(p.road), (p.building_main, p.building_sub or 0), self.road, self.roads_in_gu
        elif p.kind == LOT:
            name, rest, table, names = name_key(p.dong), (p.san, p.lot_main, p.lot_sub or 0), self.lot, self.dongs_in_gu
        else:
            return None
        for gu in scopes:
            hit = table.get((gu, name, *rest))
            if hit:
                return self.refs[hit[0]], 100.0
        for gu in scopes:
            if gu == -1:
                continue  # fuzzy only inside a recognised gu: never a scan over everything
            found = names[gu].best(name) if gu in names else None
            if found:
                hit = table.get((gu, found[0], *rest))
                if hit:
                    return self.refs[hit[0]], float(found[1])
        return None


class Geocoder:
    """Forward and reverse geocoding over a gazetteer of areas and addresses."""

    def __init__(self, areas: list[AreaLayer] = (), address_points: list[AddressLayer] = (),
                 buildings: list[AddressLayer] = ()) -> None:
        self.areas: list[AreaRef] = []
        self._geoms: list = []  # polygon per area, same order
        self._by_level: dict[str, list[int]] = defaultdict(list)
        self._trees: dict[str, tuple[shapely.STRtree, np.ndarray]] = {}
        self.sources: list[str] = []
        for layer in sorted(areas, key=lambda l: self._level_rank(l)):
            self._add_area_layer(layer)
        self._build_area_trees()
        self._link_parents()
        self._index_areas()
        self.points = _AddressIndex()
        self.buildings = _AddressIndex()
        self._seeds: list[tuple[str, AddressRef, ParsedAddress, str]] = []
        for layer in address_points:
            self._add_address_layer(layer, self.points, polygons=False)
        for layer in buildings:
            self._add_address_layer(layer, self.buildings, polygons=True)
        self._exact = self._build_exact()
        self._near_tree, self._near_refs = self._build_near_tree()

    # --- building the gazetteer -------------------------------------------------

    @staticmethod
    def _level_rank(layer: AreaLayer) -> int:
        fields = layer.fields or detect_reference_fields(layer.gdf, layer.name)
        layer.fields = fields
        return [SIDO, SIGUNGU, LEGAL_DONG, ADMIN_DONG].index(fields.level) if fields.level in (
            SIDO, SIGUNGU, LEGAL_DONG, ADMIN_DONG) else 9

    def _add_area_layer(self, layer: AreaLayer) -> None:
        f = layer.fields
        gdf = layer.gdf
        if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
            gdf = gdf.to_crs(4326)
        geoms = gdf.geometry.to_numpy()
        ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        gdf, geoms = gdf[ok], geoms[ok]
        pts = shapely.point_on_surface(geoms)
        xs, ys = shapely.get_x(pts), shapely.get_y(pts)
        names = gdf[f.name_ko_field].astype(str).str.strip().to_numpy()
        codes = _codes(gdf[f.code_field]) if f.code_field else [None] * len(gdf)
        en = gdf[f.name_en_field].astype(str).to_numpy() if f.name_en_field else [None] * len(gdf)
        for i in range(len(gdf)):
            code = codes[i]
            sido = SIDO_BY_CODE.get(code[:2]) if code and len(code) in (5, 8, 10) else None
            self._by_level[f.level].append(len(self.areas))
            self.areas.append(AreaRef(level=f.level, code=code, name_ko=names[i], name_en=en[i], source=layer.name,
                                      lon=float(xs[i]), lat=float(ys[i]), sido=sido))
            self._geoms.append(geoms[i])
        self.sources.append(layer.name)

    def _build_area_trees(self) -> None:
        for level, idx in self._by_level.items():
            arr = np.asarray(idx, dtype="int64")
            geoms = np.array([self._geoms[i] for i in idx], dtype=object)
            shapely.prepare(geoms)  # point-in-polygon tests below run on prepared polygons
            self._trees[level] = (shapely.STRtree(geoms), arr, geoms)

    def _within(self, level: str, lon, lat) -> np.ndarray:
        """For each point, the index (into self.areas) of the ``level`` area holding it, else -1.

        The tree gives bounding-box candidates; each candidate polygon then tests all its
        points at once with intersects_xy on the prepared polygon (a loop over polygons,
        not points: STRtree's own predicate would test each point against an unprepared
        polygon).
        """
        lon = np.atleast_1d(np.asarray(lon, dtype="float64"))
        lat = np.atleast_1d(np.asarray(lat, dtype="float64"))
        out = np.full(len(lon), -1, dtype="int64")
        if level not in self._trees or not len(lon):
            return out
        tree, idx, geoms = self._trees[level]
        finite = np.isfinite(lon) & np.isfinite(lat)
        pts = shapely.points(np.where(finite, lon, 0.0), np.where(finite, lat, 0.0))
        pts[~finite] = None
        inp, cand = tree.query(pts)
        if not len(inp):
            return out
        hit = np.zeros(len(inp), dtype=bool)
        order = np.argsort(cand, kind="stable")
        starts = np.flatnonzero(np.r_[True, cand[order][1:] != cand[order][:-1]])
        for a, b in zip(starts, np.r_[starts[1:], len(order)]):
            sel = order[a:b]
            hit[sel] = shapely.intersects_xy(geoms[cand[sel[0]]], lon[inp[sel]], lat[inp[sel]])
        inp, cand = inp[hit], cand[hit]
        # first hit per point, in the tree's order for that point (as the predicate query gave)
        first = np.unique(inp, return_index=True)
        out[first[0]] = idx[cand[first[1]]]
        return out

    def _link_parents(self) -> None:
        """Each dong gets its gu: the gu that holds its inside point, else the gu of its code prefix."""
        gus = self._by_level.get(SIGUNGU, [])
        gu_by_code = {self.areas[g].code: g for g in gus if self.areas[g].code}
        for level in DONG_LEVELS:
            idx = self._by_level.get(level, [])
            if not idx:
                continue
            parents = self._within(SIGUNGU, [self.areas[i].lon for i in idx], [self.areas[i].lat for i in idx])
            for i, parent in zip(idx, parents):
                a = self.areas[i]
                if parent < 0 and a.code and len(a.code) in (8, 10):
                    parent = gu_by_code.get(a.code[:5], -1)
                sido = self.areas[parent].sido if parent >= 0 else a.sido
                self.areas[i] = AreaRef(**{**asdict(a), "gu": int(parent), "sido": sido})

    def _index_areas(self) -> None:
        self._gu_by_key: dict[str, list[int]] = defaultdict(list)
        self._sido_by_name: dict[str, int] = {}
        for g in self._by_level.get(SIGUNGU, []):
            a = self.areas[g]
            keys = {name_key(a.name_ko), name_key(a.name_ko.split()[-1])}
            if a.name_en:
                keys.add(name_key(a.name_en).lower())
            for k in keys:
                self._gu_by_key[k].append(g)
        for s in self._by_level.get(SIDO, []):
            self._sido_by_name[self.areas[s].name_ko] = s
        self._gu_fuzzy = _Fuzzy()
        for k in self._gu_by_key:
            self._gu_fuzzy.add(k)
        # dongs: (gu, key) -> [area]; legal dongs before admin dongs (the address names 법정동)
        self._dong_by_key: dict[tuple[int, str], list[int]] = defaultdict(list)
        self._dong_names_in_gu: dict[int, _Fuzzy] = defaultdict(_Fuzzy)
        for level in DONG_LEVELS:
            for i in self._by_level.get(level, []):
                a = self.areas[i]
                k = name_key(a.name_ko)
                for gu in {a.gu, -1}:
                    if not self._dong_by_key[(gu, k)]:
                        self._dong_names_in_gu[gu].add(k)
                    self._dong_by_key[(gu, k)].append(i)

    def _add_address_layer(self, layer: AddressLayer, index: _AddressIndex, polygons: bool) -> None:
        gdf = layer.gdf
        missing = [c for c in layer.address_fields if c not in gdf.columns]
        if missing:
            raise SourceError(f"{layer.name}: address field(s) {', '.join(missing)} not found "
                              f"(fields: {', '.join(map(str, gdf.columns))})")
        if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
            gdf = gdf.to_crs(4326)
        geoms = gdf.geometry.to_numpy()
        ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        gdf, geoms = gdf[ok], geoms[ok]
        pts = shapely.point_on_surface(geoms) if polygons else shapely.centroid(geoms)
        xs, ys = shapely.get_x(pts), shapely.get_y(pts)
        parents = self._within(SIGUNGU, xs, ys)
        ids = gdf[layer.id_field].astype(str).to_numpy() if layer.id_field else gdf.index.astype(str).to_numpy()
        for col in layer.address_fields:
            texts = gdf[col].to_numpy()
            for i, text in enumerate(texts):
                if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
                    continue
                p = parse_address(str(text))
                gu = int(parents[i])
                if gu < 0 and p.sigungu:
                    cands = self._resolve_gu(p)[0]
                    gu = cands[0] if len(cands) == 1 else -1
                ref = AddressRef(address=p.normalised(), source=layer.name, lon=float(xs[i]), lat=float(ys[i]),
                                 ref_id=ids[i], gu=gu)
                index.add(ref, p)
                if p.kind in (ROAD, LOT):
                    self._seeds.append((_exact_key(str(text)), ref, p, TIER_BUILDING if polygons else TIER_ADDRESS))
        self.sources.append(layer.name)

    def _build_exact(self) -> dict[str, tuple[AddressRef, ParsedAddress, str]]:
        """Reference address text (whitespace-normalised) -> its reference: the exact-match fast path.

        A text is kept only when the full tiered lookup of its own parse returns that very
        reference, so the fast path can never answer differently from the slow one.
        """
        exact: dict[str, tuple[AddressRef, ParsedAddress, str]] = {}
        for key, ref, p, tier in self._seeds:
            if key in exact:
                continue
            gus = self._resolve_gu(p)[0]
            hit = self.points.lookup(p, gus)
            if hit is None and tier == TIER_BUILDING:
                hit = self.buildings.lookup(p, gus)
            if hit is not None and hit[0] is ref and hit[1] == 100.0:
                exact[key] = (ref, p, tier)
        self._seeds = []
        return exact

    def _build_near_tree(self):
        refs = self.points.refs + self.buildings.refs
        if not refs:
            return None, []
        return shapely.STRtree(shapely.points([r.lon for r in refs], [r.lat for r in refs])), refs

    # --- forward -----------------------------------------------------------------

    def _resolve_gu(self, p: ParsedAddress) -> tuple[list[int], float]:
        """Candidate gu indices for the parsed address, and how well the name matched."""
        if not p.sigungu:
            return [], 0.0
        keys = [name_key(p.sigungu), name_key(p.sigungu.split()[-1])]
        cands: list[int] = []
        score = 100.0
        for k in keys:
            cands = self._gu_by_key.get(k, [])
            if cands:
                break
        if not cands and len(self._gu_fuzzy):
            found = self._gu_fuzzy.best(keys[0])
            if found:
                cands, score = self._gu_by_key[found[0]], float(found[1])
        if p.sido and len(cands) > 1:
            same = [g for g in cands if self.areas[g].sido in (None, p.sido)]
            cands = same or cands
        return list(cands), score

    def geocode(self, text: str) -> GeocodeResult:
        hit = self._exact.get(_exact_key(text)) if self._exact else None
        if hit is not None:  # the text of a reference address: two dict lookups, no parsing
            ref, p, tier = hit
            if p.raw != text:
                p = replace(p, raw=text)
            return self._result(text, p, tier, 100.0, ref.lon, ref.lat, ref.address, ref.ref_id, None, ref.source,
                                None, ref.gu)
        p = parse_address(text)
        gus, gu_score = self._resolve_gu(p)
        for tier, index in ((TIER_ADDRESS, self.points), (TIER_BUILDING, self.buildings)):
            hit = index.lookup(p, gus)
            if hit:
                ref, score = hit
                return self._result(text, p, tier, score, ref.lon, ref.lat, ref.address, ref.ref_id, None,
                                    ref.source, None, ref.gu)
        dong = self._find_dong(p, gus)
        if dong:
            i, score, note = dong
            a = self.areas[i]
            if p.kind in (ROAD, LOT):
                note = (note + "; " if note else "") + "address not in the gazetteer, placed in its dong"
            return self._result(text, p, TIER_DONG, score, a.lon, a.lat, a.name_ko, a.code, a.name_en, a.source,
                                a.level, a.gu, note)
        if gus:
            g = gus[0]
            a = self.areas[g]
            note = "ambiguous gu name; took the first" if len(gus) > 1 else ""
            if p.kind in (ROAD, LOT) or p.dong or p.dong_hint:
                note = (note + "; " if note else "") + "nothing finer recognised, placed in its gu"
            return self._result(text, p, TIER_GU, gu_score, a.lon, a.lat, a.name_ko, a.code, a.name_en, a.source,
                                a.level, g, note)
        if p.sido and p.sido in self._sido_by_name:
            a = self.areas[self._sido_by_name[p.sido]]
            return self._result(text, p, TIER_SIDO, 100.0, a.lon, a.lat, a.name_ko, a.code, a.name_en, a.source,
                                a.level, -1, "only the 시/도 recognised")
        return GeocodeResult(query=text, tier=TIER_NONE, score=0.0, parsed=p,
                             note="no gu, dong or address of the gazetteer recognised")

    def geocode_many(self, texts) -> list[GeocodeResult]:
        """Geocode a sequence; identical texts are looked up once."""
        seen: dict[str, GeocodeResult] = {}
        out = []
        for t in texts:
            t = "" if t is None else str(t)
            if t not in seen:
                seen[t] = self.geocode(t)
            out.append(seen[t])
        return out

    def _find_dong(self, p: ParsedAddress, gus: list[int]) -> tuple[int, float, str] | None:
        names = [n for n in (p.dong, p.dong_hint) if n]
        if not names:
            return None
        scopes = gus or [-1]
        for name in names:
            for key in _dong_variants(name):
                for gu in scopes:
                    hit = self._dong_by_key.get((gu, key))
                    if hit:
                        note = "" if key == name_key(name) else f"'{name}' taken as its legal dong"
                        if gu == -1 and len({self.areas[h].gu for h in hit}) > 1:
                            note = f"dong '{name}' exists in several gu and no gu was given; took the first"
                        return hit[0], 100.0, note
        for name in names:
            for gu in scopes:
                if gu == -1:
                    continue
                found = self._dong_names_in_gu[gu].best(name_key(name)) if gu in self._dong_names_in_gu else None
                if found:
                    return self._dong_by_key[(gu, found[0])][0], float(found[1]), f"fuzzy match of '{name}'"
        return None

    def _result(self, text, p, tier, score, lon, lat, matched, code, en, source, level, gu, note="") -> GeocodeResult:
        g = self.areas[gu] if gu is not None and gu >= 0 else None
        return GeocodeResult(query=text, tier=tier, score=round(score, 1), lon=lon, lat=lat, matched=matched,
                             matched_code=code, matched_en=en, source=source, area_level=level,
                             gu=g.name_ko if g else None, gu_code=g.code if g else None, note=note, parsed=p)

    # --- reverse and checks --------------------------------------------------------

    def gu_at(self, lon, lat) -> list[AreaRef | None]:
        """The gu holding each point (vectorised), None outside every gu."""
        return [self.areas[i] if i >= 0 else None for i in self._within(SIGUNGU, lon, lat)]

    def reverse(self, lon: float, lat: float, max_distance_m: float = 250.0) -> ReverseResult:
        areas = []
        for level in (SIDO, SIGUNGU, LEGAL_DONG, ADMIN_DONG):
            i = int(self._within(level, [lon], [lat])[0])
            if i >= 0:
                a = self.areas[i]
                areas.append({"level": a.level, "code": a.code, "name_ko": a.name_ko, "name_en": a.name_en,
                              "source": a.source})
        return ReverseResult(lon=lon, lat=lat, areas=areas, nearest=self.nearest_address(lon, lat, max_distance_m))

    def nearest_address(self, lon: float, lat: float, max_distance_m: float = 250.0) -> dict | None:
        if self._near_tree is None:
            return None
        dlat = max_distance_m / 111_320.0
        dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
        cand = self._near_tree.query(shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat))
        if len(cand) == 0:
            return None
        refs = [self._near_refs[i] for i in cand]
        d = haversine_m(lon, lat, [r.lon for r in refs], [r.lat for r in refs])
        k = int(np.argmin(d))
        if d[k] > max_distance_m:
            return None
        r = refs[k]
        return {"address": r.address, "source": r.source, "ref_id": r.ref_id, "lon": r.lon, "lat": r.lat,
                "distance_m": round(float(d[k]), 1)}

    def check_coordinates(self, results: list[GeocodeResult], lon, lat) -> list[str]:
        """'agrees' / 'disagrees' / 'unchecked' per record: is the point in the gu its address names?"""
        where = self.gu_at(lon, lat)
        out = []
        for r, g, x, y in zip(results, where, lon, lat):
            if r.gu_code is None and r.gu is None or x is None or y is None or not np.isfinite([x, y]).all():
                out.append("unchecked")
            elif g is None:
                out.append("disagrees")  # outside every gu of the gazetteer
            else:
                out.append("agrees" if (g.code, g.name_ko) == (r.gu_code, r.gu) else "disagrees")
        return out


def _exact_key(text: str) -> str:
    """Whitespace-normalised text: the key of the exact-match path."""
    return " ".join(str(text).split())


def _codes(values) -> list[str | None]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif isinstance(v, float) and v == int(v):
            out.append(str(int(v)))
        else:
            out.append(str(v).strip())
    return out
