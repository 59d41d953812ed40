"""``citytwin export-3dtiles``: footprints, CityGML or CityJSON to a 3D Tiles tileset."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from pyproj import CRS, Transformer

from geo.city3d import Building3D, FlatBuilding, ReadReport, SkipReason, Surface, skip_summary
from geo.errors import SourceError
from geo.vertex_budget import MAX_VERTICES, limit_vertices
from pipelines.readers.citygml_split import PART_BYTES, ByteRange, split_ranges
from pipelines.readers.cityjson_seq import is_seq, split_seq_ranges
from pipelines.spill3d import SpillIndex, Spilled, SpillWriter, load
from tiles.threed.mesh import FlatSurfaces, LocalFrame, extrude_footprints, flat_surfaces_mesh
from tiles.threed.tileset import TilesetReport, write_tileset

if TYPE_CHECKING:
    import geopandas as gpd

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
    # the catalog, the store and textures are imported where used: a model export skips their import time
    from pipelines.catalog import load_catalog
    from pipelines.project import project_store

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

def models_to_tileset(paths: list[Path], out: Path, *, crs: str | None = None, lod: int | None = None,
                      b3dm_mode: bool = False, progress: bool = True, max_per_tile: int = 400,
                      runner=None, implicit: bool | None = None, compress: bool = True,
                      part_bytes: int = PART_BYTES, textures: bool = False) -> tuple[TilesetReport, list[str]]:
    """Tileset of CityGML/CityJSON buildings: LOD1 far refining to LOD2 near where both exist.

    LOD0 footprints with a measured height are extruded to LOD1 blocks. A building lacking
    one of the levels shows its other level there, so every building is in every level once.

    Two passes, so memory follows the tile and not the files: each file (a big CityGML file:
    each byte range of about ``part_bytes``) is read as one partition on ``runner`` and spilled to disk
    (``pipelines.spill3d``) with an index row per building; tiles are then written from the
    index, each loading only its own buildings.

    ``textures``: surfaces the source textures carry their images, packed into one atlas per
    tile (``tiles.threed.atlas``); a CityGML file is then read whole (its appearance comes after
    its buildings), with a first pass for its texture coordinates (``citygml_appearance``).
    """
    from pipelines.runner import InProcessRunner
    from tiles.publish import scratch_dir

    out = Path(out)
    report = TilesetReport(out)
    runner = runner or InProcessRunner()
    wanted = (0, 1, 2) if lod is None else ((0, 1) if lod == 1 else (lod,))
    out.parent.mkdir(parents=True, exist_ok=True)
    spill = scratch_dir(out.with_name(out.name + "-spill"))
    try:
        parts = [(str(p), part, str(spill / f"{i}.spill"))
                 for i, (p, part) in enumerate(model_parts(paths, part_bytes, split_gml=not textures))]
        read = runner.map(read_part, parts, shared={"crs": crs, "wanted": wanted, "textures": textures})
        index, messages = _merge(read, report)
        if not index.ids:  # the reasons, as the tileset summary would have given them
            why = skip_summary(report.skipped) if report.skipped else "the files hold no buildings"
            raise SourceError("\n".join([*messages, f"{', '.join(map(str, paths))}: no building could be read: {why}"]))
        levels = sorted({lv for lods in index.lods for lv in lods}) if lod is None else [lod]
        lon, lat = _centres(index, levels[0])

        def maker(items: np.ndarray, lv: int, frame: LocalFrame):
            chosen = [_at_level(lods, lv) for lods in _load(index, items)]
            return _mesh_and_props(chosen, lv, frame, textures)

        write_tileset(out, lon, lat, {lv: maker for lv in levels}, b3dm_mode=b3dm_mode, progress=progress,
                      report=report, max_per_tile=max_per_tile, runner=runner, implicit=implicit,
                      compress=compress)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    report.buildings = len(index.ids)
    return report, messages


def model_parts(paths: list[Path], part_bytes: int = PART_BYTES,
                split_gml: bool = True) -> list[tuple[Path, ByteRange | None]]:
    """The partitions of the read: one per file, a big CityGML (unless not ``split_gml``) or
    CityJSONSeq file one per byte range."""
    parts: list[tuple[Path, ByteRange | None]] = []
    for path in map(Path, paths):
        gml = split_gml and path.name.lower().endswith((".gml", ".xml")) and path.is_file()
        ranges = split_ranges(path, part_bytes) if gml else None
        if is_seq(path) and path.is_file():
            ranges = split_seq_ranges(path, part_bytes)
        parts += [(path, r) for r in ranges] if ranges else [(path, None)]
    return parts


@dataclass
class _Index:
    """The merged spill index, buildings sorted by id (as the tiles list them)."""

    ids: list[str]
    crs: np.ndarray
    lods: list[tuple[int, ...]]
    centres: dict[int, np.ndarray]
    files: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    paths: list[str]


def _merge(read: list[tuple[SpillIndex, ReadReport]], report: TilesetReport) -> tuple[_Index, list[str]]:
    """One index over the partitions; a repeated id keeps the first building (in file order)."""
    seen: set[str] = set()
    keep_rows, messages = [], []
    by_source: dict[str, ReadReport] = {}
    for k, (ix, rr) in enumerate(read):
        total = by_source.setdefault(rr.source, ReadReport(rr.source))
        for why, n in rr.skipped.items():
            total.skipped[why] = total.skipped.get(why, 0) + n
        total.messages += rr.messages
        for i, bid in enumerate(ix.ids):
            if bid in seen:
                total.skip(DUPLICATE_ID, f"building {bid}")
                continue
            seen.add(bid)
            keep_rows.append((bid, k, i))
    for rr in by_source.values():
        for why, n in rr.skipped.items():
            report.skipped[why] = report.skipped.get(why, 0) + n
        messages += rr.messages
    keep_rows.sort()
    levels = sorted({lv for ix, _ in read for lv in ix.centres})
    pick = lambda values: np.array([values[k][i] for _, k, i in keep_rows])  # noqa: E731
    return _Index(
        ids=[bid for bid, _, _ in keep_rows],
        crs=pick([ix.crs for ix, _ in read]),
        lods=[read[k][0].lods[i] for _, k, i in keep_rows],
        centres={lv: np.array([read[k][0].centres[lv][i] if lv in read[k][0].centres else (np.nan, np.nan)
                               for _, k, i in keep_rows]).reshape(-1, 2) for lv in levels},
        files=np.array([k for _, k, _ in keep_rows], dtype=np.int64),
        offsets=pick([ix.offsets for ix, _ in read]).astype(np.int64),
        lengths=pick([ix.lengths for ix, _ in read]).astype(np.int64),
        paths=[ix.path for ix, _ in read]), messages


def read_part(part: tuple[str, ByteRange | None, str], crs: str | None,
              wanted: tuple[int, ...], textures: bool = False) -> tuple[SpillIndex, ReadReport]:
    """One partition of pass one: the buildings of a file (or byte range) spilled to disk."""
    path, byte_range, spill_path = part
    rr = ReadReport(str(path))
    writer = SpillWriter(Path(spill_path))
    images = None
    if textures:
        from pipelines.textures3d import ImageCheck

        images = ImageCheck(Path(path))
    try:
        for lods in _read_lods(Path(path), crs, wanted, rr, byte_range, textures):
            if images is not None:
                images.apply(lods)
            if 0 in lods:
                lod0 = lods.pop(0)
                if 1 not in lods:
                    extruded = _extrude_lod0(lod0, rr)
                    if extruded is not None:
                        lods[1] = extruded
            if not lods:
                rr.skip(LOD0_NO_HEIGHT, "a building")
                continue
            writer.add(lods)
    finally:
        index = writer.close()
    if images is not None:
        images.report(rr)
    return index, rr


def _load(index: _Index, items: np.ndarray) -> list[dict[int, Spilled]]:
    """Buildings ``items`` of the index back from their spill files."""
    out: list = [None] * len(items)
    files = index.files[items]
    for f in np.unique(files):
        sel = np.flatnonzero(files == f)
        for j, lods in zip(sel, load(index.paths[f], index.offsets[items[sel]], index.lengths[items[sel]])):
            out[j] = lods
    return out


def _at_level(lods: dict[int, Spilled], lv: int) -> Spilled:
    """The building at ``lv``, or at its nearest LOD when it lacks that one."""
    return lods.get(lv) or lods[min(lods, key=lambda o: abs(o - lv))]


def _mesh_and_props(chosen: list[Spilled], lv: int, frame: LocalFrame, textures: bool = False):
    flat = FlatSurfaces(np.concatenate([b.coords for b in chosen]), np.concatenate([b.ring_sizes for b in chosen]),
                        np.concatenate([b.ring_counts for b in chosen]),
                        np.array([len(b.ring_counts) for b in chosen], dtype=np.int64), [b.crs for b in chosen])
    images = _tile_textures(flat, chosen) if textures else []
    mesh, counts = flat_surfaces_mesh(flat, frame)
    if images:
        from tiles.threed.atlas import with_atlas

        mesh = with_atlas(mesh, images)
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


def _tile_textures(flat: FlatSurfaces, chosen: list[Spilled]) -> list[str]:
    """The images a tile's buildings use; sets ``flat``'s texture fields when there are any."""
    images: dict[str, int] = {}
    for b in chosen:
        for image in b.images:
            images.setdefault(image, len(images))
    if not images:
        return []
    flat.uv = np.concatenate([b.uv if b.uv is not None else np.full((len(b.coords), 2), np.nan) for b in chosen])
    flat.surface_image = np.concatenate([
        np.array([images[b.images[i]] if i >= 0 else -1 for i in b.surface_image], dtype=np.int64)
        if b.surface_image is not None else np.full(len(b.ring_counts), -1, dtype=np.int64) for b in chosen])
    return list(images)


def _read_lods(path: Path, crs: str | None, lods: tuple[int, ...], report: ReadReport,
               part: ByteRange | None = None, textures: bool = False):
    """One pass over a model file (or one byte range of a CityGML or CityJSONSeq file): per building,
    {lod: Building3D}; with ``textures``, surfaces keep the texture the file gives them."""
    name = path.name.lower()
    if name.endswith((".gml", ".xml")):
        from pipelines.readers.citygml import read_citygml_lods
        from pipelines.readers.citygml_appearance import read_textures

        table = read_textures(path) if textures and path.is_file() else None
        return read_citygml_lods(path, lods=lods, crs=crs, report=report, part=part, textures=table)
    if name.endswith((".json", ".jsonl")):
        from pipelines.readers.cityjson import read_cityjson_flat, read_cityjson_lods

        if textures:
            return read_cityjson_lods(path, lods=lods, crs=crs, report=report, part=part, textures=True)
        return read_cityjson_flat(path, lods=lods, crs=crs, report=report, part=part)
    raise SourceError(f"{path}: not a CityGML (.gml), CityJSON (.json) or CityJSONSeq (.jsonl) file; "
                      "for footprints use layer:NAME")


def _extrude_lod0(b: Building3D | FlatBuilding, rr: ReadReport) -> Building3D | None:
    """A footprint with a measured height becomes an LOD1 block in its own CRS; a footprint
    over the vertex budget is simplified first (each of its edges becomes a wall surface)."""
    b = b.building() if isinstance(b, FlatBuilding) else b
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


def _centres(index: _Index, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat of each building's centre at ``level`` (its nearest LOD where it lacks that one)."""
    pts = np.empty((len(index.ids), 2))
    for i, lods in enumerate(index.lods):
        pts[i] = index.centres[level if level in lods else min(lods, key=lambda o: abs(o - level))][i]
    lon, lat = np.empty(len(pts)), np.empty(len(pts))
    for crs in np.unique(index.crs):
        sel = index.crs == crs
        c = CRS.from_user_input(str(crs))
        t = Transformer.from_crs(c.sub_crs_list[0] if c.is_compound else c, "EPSG:4326", always_xy=True)
        lon[sel], lat[sel] = t.transform(pts[sel, 0], pts[sel, 1])
    return lon, lat
