"""In-memory indexes for the AR endpoints, built from the store once and rebuilt when it changes.

- POIs: every catalog layer of kind ``pois`` in the store (landmarks, geotagged records...),
  their ``name_<lang>`` / ``description_<lang>`` fields, category, and precomputed ECEF.
- Buildings: every layer of kind ``buildings``, as LOD1 blocks (footprint, base, top) in a
  local metric frame with an STRtree, for occlusion and rooftop heights.
- Anchors: POIs, building entrances (the midpoint of the footprint edge nearest a street),
  transit stops (``*_stops`` layers of kind ``transit``).
- Streets: layers named ``streets`` or ``*_streets`` (line geometry) as a walking graph.
- Terrain: a raster layer that is a DEM (name or title says dem/dtm/terrain/elevation) with
  its COG under ``<build>/cog``, sampled with rasterio; without one the ground is at 0.

Heights are ellipsoidal metres. Two ground models are kept: ``none`` (ground at 0, buildings
on their base_height column or 0: exactly how tiles/threed places the 3D Tiles) and ``dem``
(ground from the DEM; buildings without base_height stand on the DEM at their centre).

``IndexHolder`` builds the first index in a background thread, so the server answers its other
routes at once (on a 600,000-building city the build takes a minute or more);
until it is done ``get()`` raises IndexNotReady, which the routes answer with 503 + Retry-After.
Then ``get()`` hands out the current index and, at most every few seconds, checks a
cheap change token (store file stat or PostGIS layer versions, catalog and COG mtimes); a
changed store is re-read in a background thread while requests keep using the old index.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from geo.ecef import to_ecef
from geo.errors import CitytwinError
from geo.i18n import SUPPORTED, fallback_chain
from geo.visibility import Blocks, MetricFrame, warm_up
from geo.walking import StreetGraph
from pipelines.catalog import CATALOG_FILE, Catalog, load_catalog
from pipelines.export3d import BASE_NAMES
from pipelines.store import Store

log = logging.getLogger(__name__)

COG_DIR = "cog"
DEM_WORDS = re.compile(r"(^|[^a-z])(dem|dtm|terrain|elevation|ground)([^a-z]|$)")
STREET_LAYER = re.compile(r"^(streets|[a-z0-9_]+_streets)$")
TEXT_FIELD = re.compile(r"^(name|description)_([a-z]{2,3})$")
CHECK_EVERY_S = 2.0
GROUND_MODES = ("none", "dem")


# -- tables ---------------------------------------------------------------------------------
@dataclass
class PoiTable:
    layer: np.ndarray
    id: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    xy: np.ndarray  # (n, 2) metric frame
    category: np.ndarray
    text: dict[str, np.ndarray]  # 'name_en', 'description_ko', 'name', ... -> object arrays
    z: np.ndarray  # height from the geometry (3D points), NaN when absent
    tree: shapely.STRtree
    key: dict[str, int] = field(default_factory=dict)  # 'layer:id' and bare id -> row

    def __len__(self) -> int:
        return len(self.id)

    def props(self, i: int) -> dict:
        return {k: v[i] for k, v in self.text.items() if isinstance(v[i], str)}

    def labels(self, stem: str, lang: str, rows: np.ndarray) -> tuple[list, list]:
        """``<stem>_<lang>`` text of ``rows`` along the fallback chain, and the language each is in
        (None where no language has text)."""
        values: list = [None] * len(rows)
        langs: list = [None] * len(rows)
        for code in fallback_chain(lang):
            col = self.text.get(f"{stem}_{code}")
            if col is None:
                continue
            for k, v in enumerate(col[rows].tolist()):
                if values[k] is None and isinstance(v, str) and v.strip():
                    values[k], langs[k] = v, code
        return values, langs


@dataclass
class Ground:
    """Heights for one ground model: blocks, POI heights and ECEF, entrance heights."""

    blocks: Blocks
    poi_h: np.ndarray
    poi_roof: np.ndarray  # True where the POI stands in a footprint (height = its roof)
    poi_ecef: np.ndarray
    entrance_h: np.ndarray
    stop_h: np.ndarray
    stop_roof: np.ndarray


@dataclass
class ArIndex:
    frame: MetricFrame
    pois: PoiTable
    building_layer: np.ndarray
    building_id: np.ndarray
    building_layers: list[str]
    entrances: pd.DataFrame  # lon, lat, x, y, building (row), street
    stops: pd.DataFrame  # layer, id, name, lon, lat, x, y
    streets: StreetGraph | None
    street_names: list[dict]
    street_layers: list[str]
    dem_layer: str | None
    dem: object | None  # _Dem
    grounds: dict[str, Ground]
    token: tuple
    build_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def default_ground(self) -> str:
        return "dem" if "dem" in self.grounds else "none"


# -- terrain --------------------------------------------------------------------------------
class _Dem:
    """A DEM COG held in memory (or sampled from disk when big) for lon/lat lookups."""

    MAX_CELLS = 64_000_000

    def __init__(self, path: Path):
        import rasterio

        from geo.crs import transformer

        with rasterio.open(path) as ds:
            self.transform = ds.transform
            self.crs = ds.crs.to_wkt()
            self.nodata = ds.nodata
            self.shape = (ds.height, ds.width)
            self.data = ds.read(1, masked=True).filled(np.nan).astype(np.float64) \
                if ds.width * ds.height <= self.MAX_CELLS else None
        self.path = path
        self._tr = transformer("EPSG:4326", self.crs)

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Heights at lon/lat (nearest cell); NaN outside the raster or on nodata."""
        from rasterio.transform import rowcol

        lon, lat = np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float))
        if len(lon) == 0:
            return np.zeros(0)
        x, y = self._tr.transform(lon, lat)
        if self.data is None:
            import rasterio

            with rasterio.open(self.path) as ds:
                vals = np.array([v[0] for v in ds.sample(zip(x, y), masked=True)], dtype=object)
            return np.array([np.nan if v is np.ma.masked else float(v) for v in vals])
        rows, cols = rowcol(self.transform, np.asarray(x), np.asarray(y))
        rows, cols = np.asarray(rows), np.asarray(cols)
        ok = (rows >= 0) & (rows < self.shape[0]) & (cols >= 0) & (cols < self.shape[1])
        out = np.full(len(lon), np.nan)
        out[ok] = self.data[rows[ok], cols[ok]]
        return out


def find_dem(catalog: Catalog) -> tuple[str, Path] | None:
    for name, cfg in catalog.layers.items():
        if cfg.kind != "raster":
            continue
        words = f"{name} {cfg.title or ''}".lower()
        path = catalog.build_path / COG_DIR / f"{name}.tif"
        if DEM_WORDS.search(words) and path.is_file():
            return name, path
    return None


# -- change token ---------------------------------------------------------------------------
def _stat(path: Path) -> tuple:
    try:
        st = path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        return ()


def change_token(catalog: Catalog, store: Store) -> tuple:
    """Changes whenever something the AR index is built from may have changed."""
    parts: list = [_stat(catalog.root / CATALOG_FILE)]
    path = getattr(store, "path", None)
    if store.kind != "postgis" and path is not None:
        parts.append(_stat(Path(path)))
    else:
        names = store.layers()
        parts.append(tuple((n, store.version(n)) for n in names if n in catalog.layers))  # type: ignore[attr-defined]
    found = find_dem(catalog)
    parts.append(_stat(found[1]) if found else ())
    return tuple(parts)


# -- building the index ---------------------------------------------------------------------
def _text_columns(gdf: pd.DataFrame) -> dict[str, np.ndarray]:
    cols = {}
    for c in gdf.columns:
        m = TEXT_FIELD.match(c)
        if m or c in ("name", "description"):
            cols[c] = gdf[c].astype(object).where(gdf[c].notna(), None).to_numpy(dtype=object)
    return cols


def _read_pois(catalog: Catalog, store: Store, stored: set[str]) -> tuple[list[str], pd.DataFrame]:
    frames = []
    names = [n for n, c in catalog.layers.items() if c.kind == "pois" and n in stored]
    for name in names:
        gdf = store.read(name)
        gdf = gdf[~gdf.geometry.is_empty & gdf.geometry.notna()]
        pts = gdf.geometry.representative_point() if not (gdf.geom_type == "Point").all() else gdf.geometry
        df = pd.DataFrame(_text_columns(gdf), index=gdf.index)
        df["layer"] = name
        df["id"] = gdf["id"].astype(str).to_numpy()
        df["lon"], df["lat"] = pts.x.to_numpy(), pts.y.to_numpy()
        df["z"] = shapely.get_z(pts.to_numpy()) if shapely.has_z(pts.to_numpy()).any() else np.nan
        df["category"] = gdf["category"].astype(object).to_numpy() if "category" in gdf.columns else None
        frames.append(df)
    if not frames:
        return names, pd.DataFrame(columns=["layer", "id", "lon", "lat", "z", "category"])
    return names, pd.concat(frames, ignore_index=True)


def _poi_table(df: pd.DataFrame, frame: MetricFrame) -> PoiTable:
    x, y = frame.xy(df["lon"].to_numpy(float), df["lat"].to_numpy(float))
    xy = np.column_stack([x, y]) if len(df) else np.zeros((0, 2))
    text = {c: df[c].astype(object).where(df[c].notna(), None).to_numpy(dtype=object)
            for c in df.columns if TEXT_FIELD.match(c) or c in ("name", "description")}
    for lang in SUPPORTED:  # always present, so lookups need no checks
        text.setdefault(f"name_{lang}", np.full(len(df), None, dtype=object))
    table = PoiTable(
        layer=df["layer"].to_numpy(dtype=object), id=df["id"].to_numpy(dtype=object),
        lon=df["lon"].to_numpy(float), lat=df["lat"].to_numpy(float), xy=xy,
        category=df["category"].astype(object).where(df["category"].notna(), None).to_numpy(dtype=object),
        text=text, z=pd.to_numeric(df["z"], errors="coerce").to_numpy(float),
        tree=shapely.STRtree(shapely.points(xy)),
    )
    for i, (layer, fid) in enumerate(zip(table.layer, table.id)):
        table.key[f"{layer}:{fid}"] = i
        table.key.setdefault(str(fid), i)
    return table


def _read_buildings(catalog: Catalog, store: Store, stored: set[str]) -> tuple[list[str], pd.DataFrame]:
    names = [n for n, c in catalog.layers.items() if c.kind == "buildings" and n in stored]
    frames = []
    for name in names:
        gdf = store.read(name)
        if "height" not in gdf.columns:
            continue
        height = pd.to_numeric(gdf["height"], errors="coerce").to_numpy(float)
        base_col = next((c for c in gdf.columns if c.lower() in BASE_NAMES), None)
        base = (pd.to_numeric(gdf[base_col], errors="coerce").fillna(0.0).to_numpy(float) if base_col
                else np.full(len(gdf), np.nan))  # NaN: no base given (0 for the tiles)
        geom = gdf.geometry.to_numpy()
        ok = np.isfinite(height) & (height > 0) & ~shapely.is_empty(geom) & shapely.is_valid(geom)
        frames.append(pd.DataFrame({"layer": name, "id": gdf["id"].astype(str).to_numpy()[ok],
                                    "geometry": geom[ok], "height": height[ok], "base": base[ok]}))
    if not frames:
        return names, pd.DataFrame(columns=["layer", "id", "geometry", "height", "base"])
    return names, pd.concat(frames, ignore_index=True)


def _read_stops(catalog: Catalog, store: Store, stored: set[str], frame: MetricFrame) -> pd.DataFrame:
    rows = []
    for name, cfg in catalog.layers.items():
        if cfg.kind != "transit" or not name.endswith("_stops") or name not in stored:
            continue
        gdf = store.read(name)
        gdf = gdf[gdf.geom_type == "Point"]
        if "location_type" in gdf.columns:  # boardable stops only (GTFS location_type 0 or empty)
            lt = pd.to_numeric(gdf["location_type"], errors="coerce").fillna(0)
            gdf = gdf[lt == 0]
        name_col = next((c for c in ("stop_name", "name", "name_ko") if c in gdf.columns), None)
        rows.append(pd.DataFrame({
            "layer": name, "id": gdf["id"].astype(str).to_numpy(),
            "name": gdf[name_col].astype(object).to_numpy() if name_col else None,
            "lon": gdf.geometry.x.to_numpy(), "lat": gdf.geometry.y.to_numpy()}))
    df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["layer", "id", "name", "lon", "lat"])
    x, y = frame.xy(df["lon"].to_numpy(float), df["lat"].to_numpy(float))
    df["x"], df["y"] = np.asarray(x, float).reshape(-1), np.asarray(y, float).reshape(-1)
    return df


def _read_streets(catalog: Catalog, store: Store, stored: set[str],
                  frame: MetricFrame) -> tuple[list[str], StreetGraph | None, list[dict], np.ndarray]:
    names = [n for n, c in catalog.layers.items() if STREET_LAYER.match(n) and c.kind != "raster" and n in stored]
    lines, street, labels = [], [], []
    for name in names:
        gdf = store.read(name)
        parts = gdf.explode(index_parts=False)
        parts = parts[parts.geom_type == "LineString"]
        text = _text_columns(parts)
        for i, geom in enumerate(parts.geometry.to_numpy()):
            label = {k: v[i] for k, v in text.items() if k.startswith("name") and isinstance(v[i], str) and v[i]}
            street.append(len(labels) if label else -1)
            if label:
                labels.append(label)
            lines.append(geom)
    if not lines:
        return names, None, [], np.zeros(0, dtype=object)
    metric = frame.geoms(np.array(lines, dtype=object))
    return names, StreetGraph(metric, np.array(street)), labels, metric


def _entrances(blocks: Blocks, street_lines: np.ndarray, frame: MetricFrame) -> pd.DataFrame:
    """Per building: the midpoint of its outer-ring edge nearest a street centre line."""
    cols = ["lon", "lat", "x", "y", "building", "distance_to_street_m"]
    if len(street_lines) == 0 or len(blocks.footprints) == 0:
        return pd.DataFrame(columns=cols)
    polys = blocks.footprints.copy()  # a multipolygon's entrance is on its largest part
    multi = shapely.get_type_id(polys) == 6
    if multi.any():
        for i in np.flatnonzero(multi):
            parts = shapely.get_parts(polys[i])
            polys[i] = parts[np.argmax(shapely.area(parts))]
    rings = shapely.get_exterior_ring(polys)
    coords, owner = shapely.get_coordinates(rings, return_index=True)
    same = np.r_[owner[1:] == owner[:-1], False]  # edge i -> i+1 inside one ring
    a, b, who = coords[:-1][same[:-1]], coords[1:][same[:-1]], owner[:-1][same[:-1]]
    mids = (a + b) / 2
    tree = shapely.STRtree(street_lines)
    _, dist = tree.query_nearest(shapely.points(mids), all_matches=False, return_distance=True)
    order = np.lexsort((dist, who))
    first = order[np.r_[True, who[order][1:] != who[order][:-1]]]
    lon, lat = frame.lonlat(mids[first, 0], mids[first, 1])
    return pd.DataFrame({"lon": lon, "lat": lat, "x": mids[first, 0], "y": mids[first, 1],
                         "building": who[first], "distance_to_street_m": dist[first]})


def surface(blocks: Blocks, xy: np.ndarray, ground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roof top of the highest block a point is in, else the ground; and which were roofs."""
    out = np.asarray(ground, float).copy()
    if len(xy) == 0 or len(blocks.footprints) == 0:
        return out, np.zeros(len(out), dtype=bool)
    pts = shapely.points(xy)
    pi, bi = blocks.tree.query(pts, predicate="intersects")
    roof = np.full(len(xy), -np.inf)
    np.maximum.at(roof, pi, blocks.top[bi])
    inside = np.isfinite(roof)
    out[inside] = roof[inside]
    return out, inside


def build_index(catalog: Catalog, store: Store) -> ArIndex:
    started = time.perf_counter()
    token = change_token(catalog, store)
    stored = set(store.layers())
    notes: list[str] = []
    poi_layers, poi_df = _read_pois(catalog, store, stored)
    building_layers, bdf = _read_buildings(catalog, store, stored)
    lon_all = np.r_[poi_df["lon"].to_numpy(float),
                    shapely.get_x(shapely.centroid(bdf["geometry"].to_numpy())) if len(bdf) else []]
    lat_all = np.r_[poi_df["lat"].to_numpy(float),
                    shapely.get_y(shapely.centroid(bdf["geometry"].to_numpy())) if len(bdf) else []]
    if len(lon_all):
        frame = MetricFrame(float(np.median(lon_all)), float(np.median(lat_all)))
    else:
        frame = MetricFrame(0.0, 0.0)
    pois = _poi_table(poi_df, frame)

    footprints = frame.geoms(bdf["geometry"].to_numpy()) if len(bdf) else np.zeros(0, dtype=object)
    height = bdf["height"].to_numpy(float)
    base_given = bdf["base"].to_numpy(float)
    flat = Blocks.build(footprints, np.nan_to_num(base_given, nan=0.0), np.nan_to_num(base_given, nan=0.0) + height)

    street_layers, streets, street_names, street_lines = _read_streets(catalog, store, stored, frame)
    entrances = _entrances(flat, street_lines, frame)
    stops = _read_stops(catalog, store, stored, frame)

    grounds: dict[str, Ground] = {}
    dem = None
    dem_layer = None
    found = find_dem(catalog)
    models: dict[str, tuple[Blocks, Callable]] = {"none": (flat, flat_ground)}
    if found:
        try:
            dem = _Dem(found[1])
            dem_layer = found[0]
        except Exception as exc:  # a broken COG must not take the AR endpoints down
            notes.append(f"DEM layer '{found[0]}' could not be read ({exc}); ground is at 0")
    if dem is not None:
        def dem_ground(lon, lat, _dem=dem):
            return np.nan_to_num(_dem.sample(lon, lat), nan=0.0)  # outside the DEM: 0

        if len(footprints):
            rp = shapely.point_on_surface(bdf["geometry"].to_numpy())
            under = dem_ground(shapely.get_x(rp), shapely.get_y(rp))
        else:
            under = np.zeros(0)
        base_dem = np.where(np.isfinite(base_given), base_given, under)
        models["dem"] = (flat.with_heights(base_dem, base_dem + height), dem_ground)

    for mode, (blocks, ground_at) in models.items():
        poi_ground = ground_at(pois.lon, pois.lat)
        poi_surface, poi_roof = surface(blocks, pois.xy, poi_ground)
        poi_h = np.where(np.isfinite(pois.z), pois.z, poi_surface)
        ecef = to_ecef(np.column_stack([pois.lon, pois.lat, poi_h])) if len(pois) else np.zeros((0, 3))
        ent_h = ground_at(entrances["lon"].to_numpy(float), entrances["lat"].to_numpy(float))
        stop_h, stop_roof = surface(blocks, stops[["x", "y"]].to_numpy(float),
                                    ground_at(stops["lon"].to_numpy(float), stops["lat"].to_numpy(float)))
        grounds[mode] = Ground(blocks, poi_h, poi_roof & ~np.isfinite(pois.z), ecef, ent_h, stop_h, stop_roof)

    index = ArIndex(
        frame=frame, pois=pois, building_layer=bdf["layer"].to_numpy(dtype=object),
        building_id=bdf["id"].to_numpy(dtype=object), building_layers=building_layers,
        entrances=entrances, stops=stops, streets=streets, street_names=street_names,
        street_layers=street_layers, dem_layer=dem_layer, dem=dem, grounds=grounds, token=token, notes=notes,
    )
    index.build_seconds = time.perf_counter() - started
    log.info("AR index: %d POIs (%s), %d buildings, %d entrances, %d stops, %s street edges in %.1f s",
             len(pois), ", ".join(poi_layers) or "no pois layer", len(footprints), len(entrances), len(stops),
             len(streets) if streets else 0, index.build_seconds)
    return index


def flat_ground(lon, lat) -> np.ndarray:
    return np.zeros(len(np.atleast_1d(lon)))


def ground_function(index: ArIndex, mode: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Ground height at lon/lat for a ground model: the DEM (0 where it has no value) or 0."""
    if mode == "dem" and index.dem is not None:
        return lambda lon, lat: np.nan_to_num(index.dem.sample(lon, lat), nan=0.0)
    return flat_ground


# -- holder ---------------------------------------------------------------------------------
class IndexNotReady(CitytwinError):
    """No index to answer from yet: the first build is running (or failed and will be tried again)."""

    retry_after_s = 5


class IndexHolder:
    """The current index, built in the background; a changed store is re-read in the background."""

    def __init__(self, catalog: Catalog, store: Store):
        self.catalog = catalog
        self.store = store
        self._index: ArIndex | None = None
        self._first_done = threading.Event()
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._rebuilding = True
        self.last_error: str | None = None
        threading.Thread(target=self._first_build, name="ar-index", daemon=True).start()

    def get(self) -> ArIndex:
        """The current index; raises IndexNotReady while the first build has not finished."""
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY_S and not self._rebuilding:
            self._checked = now
            with self._lock:
                if not self._rebuilding:
                    self._rebuilding = True
                    threading.Thread(target=self._refresh, name="ar-index", daemon=True).start()
        index = self._index
        if index is None:
            why = f" (the last attempt failed: {self.last_error})" if self.last_error else ""
            raise IndexNotReady("the AR index is still being built from the store after the server started"
                                f"{why}; the other endpoints answer meanwhile; try again in a few seconds")
        return index

    def state(self) -> str:
        """For /ready: "starting" until the first build is over, then "ready" or "failed: <why>"."""
        if not self._first_done.is_set():
            return "starting"
        return "ready" if self._index is not None else f"failed: {self.last_error}"

    def wait(self, timeout: float | None = None) -> ArIndex:
        """The index once the first build is over (benchmarks, tools); IndexNotReady if it failed or
        ``timeout`` passed first."""
        self._first_done.wait(timeout)
        return self.get()

    def _first_build(self) -> None:
        try:
            warm_up()
            self._index = build_index(self.catalog, self.store)
        except Exception as exc:  # answered as 503 with the reason; the next check tries again
            self.last_error = f"AR index not built: {exc}"
            log.warning("AR index build failed: %s", exc)
        finally:
            self._checked = time.monotonic()
            self._rebuilding = False
            self._first_done.set()

    def _refresh(self) -> None:
        try:
            catalog = self.catalog
            current = self._index
            try:
                if current is None or _stat(catalog.root / CATALOG_FILE) != current.token[0]:
                    catalog = load_catalog(catalog.root)
            except CitytwinError as exc:
                self.last_error = f"catalog not reloaded: {exc}"
            if current is None or change_token(catalog, self.store) != current.token:
                self._index = build_index(catalog, self.store)
                self.catalog = catalog
                self.last_error = None
        except Exception as exc:  # keep serving the old index; say why in the responses
            self.last_error = f"AR index not rebuilt: {exc}"
            log.warning("AR index rebuild failed: %s", exc)
        finally:
            self._rebuilding = False

    def rebuild_now(self) -> ArIndex:
        """Rebuild synchronously (tests, benchmarks)."""
        self._index = build_index(load_catalog(self.catalog.root), self.store)
        return self._index
