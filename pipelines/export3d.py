"""``citytwin export-3dtiles``: footprints, CityGML or CityJSON to a 3D Tiles tileset."""
from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer

from geo.city3d import Building3D, ReadReport, SkipReason, Surface
from geo.errors import SourceError
from geo.vertex_budget import MAX_VERTICES, limit_vertices
from pipelines.catalog import load_catalog
from pipelines.project import project_store
from tiles.threed.mesh import LocalFrame, extrude_footprints, surfaces_mesh
from tiles.threed.tileset import TilesetReport, write_tileset

log = logging.getLogger(__name__)
BASE_NAMES = ("base_height", "ground_height", "base", "ground", "dem")
CORE_PROPERTIES = ("id", "name", "height", "storeys", "usage", "source")
NO_HEIGHT = SkipReason("no height", "building", "no height attribute and no floors")
OFF_DEM = SkipReason("ground outside the DEM", "building", outcome="placed at 0 m")
LOD0_NO_HEIGHT = SkipReason("LOD0 footprint without a height", "building")
DUPLICATE_ID = SkipReason("duplicate id", "building", "the first building with the id is kept")
SIMPLIFIED = SkipReason(f"footprint over {MAX_VERTICES:,} vertices", "building",
                        "simplified to fit, shape kept valid: huge rings take too long to triangulate",
                        outcome="simplified")
TOO_COMPLEX = SkipReason(f"footprint over {MAX_VERTICES:,} vertices even when simplified", "building",
                         "or invalid once simplified")
SURFACE_SIMPLIFIED = SkipReason(f"surface over {MAX_VERTICES:,} vertices", "surface",
                                "simplified in its plane to fit", outcome="simplified")
SURFACE_TOO_COMPLEX = SkipReason(f"surface over {MAX_VERTICES:,} vertices even when simplified", "surface",
                                 "or invalid once simplified")


def flat_at(lod: int) -> SkipReason:
    """Surfaces the mesh writer could not triangulate at one LOD."""
    return SkipReason(f"no area to triangulate at LOD{lod}", "surface", "collinear or repeated points")


def _ptype(values: np.ndarray) -> str:
    kind = getattr(values, "dtype", np.dtype("O")).kind
    if kind in "iu":
        return "INT32"
    if kind == "f":
        return "FLOAT32"
    return "STRING"


def _column(values) -> tuple[str, list]:
    arr = np.asarray(values)
    ptype = _ptype(arr)
    if ptype == "STRING":
        return ptype, [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in arr]
    return ptype, arr.tolist()


# -- footprints from the store -------------------------------------------------------------

def footprints_tileset(project: Path, layer: str, out: Path, *, b3dm_mode: bool = False,
                       progress: bool = True, runner=None, implicit: bool | None = None,
                       compress: bool | None = None) -> TilesetReport:
    catalog = load_catalog(project)
    cfg = catalog.layer(layer)
    gdf = project_store(catalog).read(layer)
    return footprints_to_tileset(gdf, out, source=layer, fields=cfg.fields, b3dm_mode=b3dm_mode, progress=progress,
                                 runner=runner, base_field=cfg.base_field, dem=dem_path(catalog, cfg.dem),
                                 implicit=cfg.implicit if implicit is None else implicit,
                                 compress=cfg.meshopt if compress is None else compress)


def dem_path(catalog, dem: str | None) -> Path | None:
    if dem is None:
        return None
    from pipelines.rasters import cog_path

    catalog.layer(dem)
    path = cog_path(catalog, dem)
    if not path.exists():
        raise SourceError(f"DEM layer '{dem}' has no COG at {path}; run 'citytwin build' so it is built first")
    return path


def footprints_to_tileset(gdf: gpd.GeoDataFrame, out: Path, *, source: str, fields: list[str] | None = None,
                          b3dm_mode: bool = False, progress: bool = True, max_per_tile: int = 400,
                          runner=None, base_field: str | None = None, dem: Path | None = None,
                          implicit: bool | None = None, compress: bool = True) -> TilesetReport:
    """LOD1 blocks from a buildings layer. The base height comes from ``base_field`` (or a
    column named like base_height/ground), else from the ``dem`` raster under each footprint,
    else 0. ``compress``: EXT_meshopt_compression on the meshes."""
    report = TilesetReport(Path(out))
    if "height" not in gdf.columns:
        raise SourceError(f"layer '{source}' has no 'height' column; ingest it with --kind buildings")
    height = gdf["height"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(height) & (height > 0)
    if (~ok).sum():
        report.skipped[NO_HEIGHT] = int((~ok).sum())
    base_col = base_field or next((c for c in gdf.columns if c.lower() in BASE_NAMES), None)
    if base_col and base_col not in gdf.columns:
        raise SourceError(f"layer '{source}': base_field '{base_col}' is not a column of the layer")
    if base_col:
        base = gdf[base_col].to_numpy(dtype=np.float64, na_value=0.0)
    elif dem is not None:
        from tiles.threed.ground import ground_under

        base = ground_under(gdf.geometry.to_numpy(), Path(dem))
        off_dem = ~np.isfinite(base)
        if off_dem.any():
            report.skipped[OFF_DEM] = int(off_dem.sum())
        base = np.where(off_dem, 0.0, base)
    else:
        base = np.zeros(len(gdf))
    gdf = gdf[ok]
    base, height = base[ok], height[ok]
    if gdf.empty:
        raise SourceError(f"layer '{source}': no building has a height; nothing to extrude")
    geoms, fits = _within_budget(gdf, source, report)
    gdf, base, height = gdf[fits], base[fits], height[fits]
    if gdf.empty:
        raise SourceError(f"layer '{source}': no footprint could be brought under {MAX_VERTICES:,} vertices")
    centre = shapely.point_on_surface(geoms)
    lon, lat = shapely.get_x(centre), shapely.get_y(centre)
    extra = [f for f in (fields or []) if f in gdf.columns and f not in CORE_PROPERTIES and f != "floors"]
    columns = {
        "id": gdf["id"].to_numpy(),
        "name": gdf["name"].to_numpy() if "name" in gdf.columns else np.full(len(gdf), None, dtype=object),
        "height": height,
        "storeys": (gdf["floors"].to_numpy(dtype=np.float64, na_value=np.nan) if "floors" in gdf.columns
                    else np.full(len(gdf), np.nan)),
        "usage": gdf["usage"].to_numpy() if "usage" in gdf.columns else np.full(len(gdf), None, dtype=object),
        "source": np.full(len(gdf), source, dtype=object),
        **{f: gdf[f].to_numpy() for f in extra},
    }

    def lod1(items: np.ndarray, lod: int, frame: LocalFrame):
        mesh = extrude_footprints(geoms[items], base[items], height[items], frame)
        props = {k: _column(v[items]) for k, v in columns.items()}
        st = props["storeys"][1]
        props["storeys"] = ("INT32", [None if np.isnan(x) else int(x) for x in st])
        return mesh, props, {}

    return write_tileset(Path(out), lon, lat, {1: lod1}, b3dm_mode=b3dm_mode, progress=progress, report=report,
                         max_per_tile=max_per_tile, runner=runner, implicit=implicit, compress=compress)


def _within_budget(gdf: gpd.GeoDataFrame, source: str, report: TilesetReport) -> tuple[np.ndarray, np.ndarray]:
    """Footprints brought under the vertex budget, and the mask of those kept; each change is reported."""
    counts = shapely.get_num_coordinates(gdf.geometry.to_numpy())
    budget = limit_vertices(gdf.geometry.to_numpy())
    ids = gdf["id"].to_numpy()
    for reason, which in ((SIMPLIFIED, budget.simplified), (TOO_COMPLEX, budget.dropped)):
        if len(which):
            report.skipped[reason] = len(which)
        for i in which[:5]:
            log.warning("layer '%s': building %s has %s vertices: %s", source, ids[i], f"{counts[i]:,}",
                        reason.outcome if reason is SIMPLIFIED else "left out of the 3D Tiles")
    fits = np.ones(len(gdf), dtype=bool)
    fits[budget.dropped] = False
    return budget.geoms[fits], fits


# -- CityGML / CityJSON ---------------------------------------------------------------------

def _read_lods(path: Path, crs: str | None, lods: tuple[int, ...], report: ReadReport):
    """One pass over a model file: per building, {lod: Building3D}."""
    name = path.name.lower()
    if name.endswith((".gml", ".xml")):
        from pipelines.readers.citygml import read_citygml_lods

        return read_citygml_lods(path, lods=lods, crs=crs, report=report)
    if name.endswith(".json"):
        from pipelines.readers.cityjson import read_cityjson_lods

        return read_cityjson_lods(path, lods=lods, crs=crs, report=report)
    raise SourceError(f"{path}: not a CityGML (.gml) or CityJSON (.json) file; for footprints use layer:NAME")


def _extrude_lod0(b: Building3D, rr: ReadReport) -> Building3D | None:
    """A footprint with a measured height becomes an LOD1 block in its own CRS; a footprint
    over the vertex budget is simplified first (each of its edges becomes a wall surface)."""
    height = b.attributes.get("height")
    ground = [s for s in b.surfaces if s.kind == "ground"] or b.surfaces
    if not height or not ground:
        return None
    surfaces = []
    for s in ground:
        ext = np.asarray(s.rings[0], dtype=np.float64)
        if np.array_equal(ext[0], ext[-1]):
            ext = ext[:-1]
        if len(ext) > MAX_VERTICES:
            ext = _fit_ring(ext)
            reason = SIMPLIFIED if ext is not None else TOO_COMPLEX
            rr.skipped[reason] = rr.skipped.get(reason, 0) + 1
            if ext is None:
                continue
        top = ext.copy()
        top[:, 2] += float(height)
        surfaces.append(Surface([top[::-1]] if _z_normal(top) < 0 else [top], "roof"))
        ring = ext if _z_normal(ext) > 0 else ext[::-1]
        nxt = np.roll(ring, -1, axis=0)
        for a, c in zip(ring, nxt):
            surfaces.append(Surface([np.array([a, c, c + [0, 0, height], a + [0, 0, height]])], "wall"))
    return Building3D(b.id, 1, surfaces, b.crs, b.attributes) if surfaces else None


def _fit_ring(ring: np.ndarray) -> np.ndarray | None:
    """An open x, y, z ring brought under the vertex budget (a subset of its points), or None."""
    fitted = limit_vertices(np.array([shapely.Polygon(ring)], dtype=object)).geoms[0]
    return None if fitted is None else shapely.get_coordinates(fitted.exterior, include_z=True)[:-1]


def _z_normal(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def models_to_tileset(paths: list[Path], out: Path, *, crs: str | None = None, lod: int | None = None,
                      b3dm_mode: bool = False, progress: bool = True, max_per_tile: int = 400,
                      runner=None, implicit: bool | None = None,
                      compress: bool = True) -> tuple[TilesetReport, list[str]]:
    """Tileset of CityGML/CityJSON buildings: LOD1 far refining to LOD2 near where both exist.

    LOD0 footprints with a measured height are extruded to LOD1 blocks. A building lacking
    one of the levels shows its other level there, so every building is in every level once.
    """
    report = TilesetReport(Path(out))
    messages: list[str] = []
    wanted = (0, 1, 2) if lod is None else ((0, 1) if lod == 1 else (lod,))
    found: dict[str, dict[int, Building3D]] = {}
    for path in paths:
        rr = ReadReport(str(path))
        for lods in _read_lods(Path(path), crs, wanted, rr):
            if 0 in lods:
                lod0 = lods.pop(0)
                if 1 not in lods:
                    extruded = _extrude_lod0(lod0, rr)
                    if extruded is not None:
                        lods[1] = extruded
            if not lods:
                rr.skip(LOD0_NO_HEIGHT, "a building")
                continue
            key = next(iter(lods.values())).id
            if key in found:
                rr.skip(DUPLICATE_ID, f"building {key}")
                continue
            found[key] = lods
        for why, n in rr.skipped.items():
            report.skipped[why] = report.skipped.get(why, 0) + n
        messages += rr.messages
    if not found:
        raise SourceError(f"{', '.join(map(str, paths))}: no building could be read; see the messages above")
    ids = sorted(found)
    levels = sorted({lv for lods in found.values() for lv in lods})
    if lod is not None:
        levels = [lod]
    resolved = {lv: [found[i].get(lv) or found[i][min(found[i], key=lambda o: abs(o - lv))] for i in ids]
                for lv in levels}
    lon, lat = _centres(resolved[levels[0]])

    def maker(items: np.ndarray, lv: int, frame: LocalFrame):
        chosen = [resolved[lv][i] for i in items]
        mesh, counts = surfaces_mesh(chosen, frame)
        found = ((flat_at(lv), counts.degenerate), (SURFACE_SIMPLIFIED, counts.simplified),
                 (SURFACE_TOO_COMPLEX, counts.too_complex))
        skipped = {reason: n for reason, n in found if n}
        props = {
            "id": ("STRING", [b.id for b in chosen]),
            "name": ("STRING", [b.attributes.get("name") for b in chosen]),
            "height": ("FLOAT32", [_num(b.attributes.get("height")) for b in chosen]),
            "storeys": ("INT32", [_int(b.attributes.get("storeys")) for b in chosen]),
            "usage": ("STRING", [b.attributes.get("usage") for b in chosen]),
            "source": ("STRING", [b.attributes.get("source") for b in chosen]),
            "lod": ("INT32", [b.lod for b in chosen]),
        }
        return mesh, props, skipped

    write_tileset(Path(out), lon, lat, {lv: maker for lv in levels}, b3dm_mode=b3dm_mode, progress=progress,
                  report=report, max_per_tile=max_per_tile, runner=runner, implicit=implicit,
                  compress=compress)
    report.buildings = len(ids)
    return report, messages


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _int(v):
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def _centres(buildings: list[Building3D]) -> tuple[np.ndarray, np.ndarray]:
    lon = np.empty(len(buildings))
    lat = np.empty(len(buildings))
    crs_list = np.array([b.crs for b in buildings])
    pts = np.array([np.vstack([r for s in b.surfaces for r in s.rings])[:, :2].mean(axis=0) for b in buildings])
    for crs in np.unique(crs_list):
        sel = crs_list == crs
        t = Transformer.from_crs(CRS.from_user_input(str(crs)).sub_crs_list[0] if CRS.from_user_input(str(crs)).is_compound
                                 else CRS.from_user_input(str(crs)), "EPSG:4326", always_xy=True)
        lon[sel], lat[sel] = t.transform(pts[sel, 0], pts[sel, 1])
    return lon, lat
