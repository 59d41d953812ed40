"""Hazard rasters (flood depth, DEM, ...) as Cloud Optimized GeoTIFFs under ``<build>/cog``.

Any GDAL raster in any CRS is translated with rio-cogeo into a tiled, compressed GeoTIFF
with internal overviews, validated with ``cog_validate`` and only then swapped into place,
so the tile server never sees half a file. The COG keeps the source CRS: titiler warps to
the tile grid on the fly, and exposure sampling reprojects the vector side instead.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS as RioCRS
from rasterio.errors import RasterioIOError

from geo.crs import check_datum_shift, crs_label, parse_crs
from geo.errors import CatalogError, CRSError, SourceError
from geo.names import check_layer_name
from pipelines.catalog import Catalog, edit_catalog

COG_DIR = "cog"


@dataclass(frozen=True)
class CogReport:
    name: str
    path: Path
    width: int
    height: int
    bands: int
    dtype: str
    crs: str
    overviews: int
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "\n".join([f"raster '{self.name}': COG {self.path} ({self.width} x {self.height} px, {self.bands} "
                          f"band(s) {self.dtype}, {self.crs}, {self.overviews} overview level(s))",
                          *(f"  warning: {w}" for w in self.warnings)])


def cog_path(catalog: Catalog, name: str) -> Path:
    """Where the COG of raster layer ``name`` lives (the name is checked, never a free path)."""
    return catalog.build_path / COG_DIR / f"{check_layer_name(name)}.tif"


def build_cog(src: Path, dst: Path, name: str, crs: str | None = None, accept_source_crs: bool = False) -> CogReport:
    """Translate ``src`` into a validated COG at ``dst`` (atomically replaced).

    ``crs`` declares the source CRS when the file has none (or overrides a wrong one). A CRS
    without the datum shift it needs (a Bessel grid without TOWGS84) is refused unless
    ``accept_source_crs``, as for vector sources: served as is, it would sit hundreds of metres off.
    """
    from rio_cogeo.cogeo import cog_translate, cog_validate
    from rio_cogeo.profiles import cog_profiles

    src = Path(src)
    if not src.is_file():
        raise SourceError(f"raster source {src} does not exist; check the path in the catalog or on the command line")
    try:
        with rasterio.open(src) as ds:
            own = ds.crs.to_wkt() if ds.crs is not None else None
            if ds.count < 1:
                raise SourceError(f"{src}: the raster has no bands")
    except RasterioIOError as exc:
        raise SourceError(f"{src}: not a raster GDAL can read ({exc})") from None
    if crs is None and own is None:
        raise CRSError(f"{src}: the raster has no CRS; declare it with --crs (e.g. --crs EPSG:5186) "
                       "or 'crs:' on the layer in citytwin.yaml")
    warning = check_datum_shift(parse_crs(crs) if crs is not None else parse_crs(own),
                                f"{src} (declared CRS)" if crs is not None else str(src), accept_source_crs)
    if not has_valid_cells(src):
        raise SourceError(f"{src}: the raster holds no valid cell (every cell is NaN or nodata); "
                          "check the model run that wrote it, or its nodata value")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.{uuid.uuid4().hex}.tmp.tif")
    profile = cog_profiles.get("deflate")
    config = {"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_TIFF_OVR_BLOCKSIZE": "256"}
    try:
        with rasterio.open(src) as ds:
            if crs is not None:
                declared = RioCRS.from_wkt(parse_crs(crs).to_wkt())
                with rasterio.MemoryFile() as mem:
                    meta = ds.profile | {"crs": declared, "driver": "GTiff"}
                    with mem.open(**meta) as fixed:
                        fixed.write(ds.read())
                    with mem.open() as fixed:
                        cog_translate(fixed, str(tmp), profile, overview_resampling="nearest",
                                      config=config, in_memory=True, quiet=True)
            else:
                cog_translate(ds, str(tmp), profile, overview_resampling="nearest",
                              config=config, in_memory=True, quiet=True)
        valid, errors, _warnings = cog_validate(str(tmp), quiet=True)
        if not valid:
            raise SourceError(f"{src}: the COG written for it does not validate: {'; '.join(errors)}")
        with rasterio.open(tmp) as out:
            report = CogReport(name, dst, out.width, out.height, out.count, out.dtypes[0],
                               crs_label(parse_crs(out.crs.to_wkt())), len(out.overviews(1)),
                               [warning] if warning else [])
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def has_valid_cells(src: Path) -> bool:
    """True once any block of band 1 holds a finite value that is not nodata (stops at the first)."""
    with rasterio.open(src) as ds:
        for _, window in ds.block_windows(1):
            block = ds.read(1, window=window, masked=True)
            if np.isfinite(block.astype("float64").filled(np.nan)).any():
                return True
    return False


def build_raster_layer(catalog: Catalog, name: str) -> CogReport:
    """Build the COG of catalog raster layer ``name`` from its (single) source."""
    cfg = catalog.layer(name)
    if cfg.kind != "raster":
        raise CatalogError(f"layer {name!r} is a {cfg.kind} layer, not a raster")
    sources = catalog.source_paths(name)
    if len(sources) != 1:
        raise CatalogError(f"raster layer {name!r} needs exactly one source file in citytwin.yaml, "
                           f"got {len(sources)}")
    return build_cog(sources[0], cog_path(catalog, name), name, crs=cfg.crs, accept_source_crs=cfg.accept_source_crs)


def add_raster(project: Path, path: Path, name: str, crs: str | None = None,
               title: str | None = None, accept_source_crs: bool = False) -> CogReport:
    """``citytwin raster``: record PATH as raster layer NAME in the catalog and build its COG."""
    check_layer_name(name)
    with edit_catalog(project) as edit:  # written only once the COG is built, and as the next build reads it
        catalog = edit.catalog
        if name in catalog.layers and catalog.layers[name].kind != "raster":
            raise CatalogError(f"layer {name!r} already exists as a {catalog.layers[name].kind} layer; "
                               "choose another --name")
        path = Path(path).resolve()
        try:
            source = os.path.relpath(path, catalog.root)
        except ValueError:  # another drive on Windows
            source = str(path)
        entry: dict = {"kind": "raster"}
        if name not in catalog.layers or catalog.source_paths(name) != [path]:
            entry["source"] = source
        if crs:
            entry["crs"] = crs
        if accept_source_crs:  # as ingest writes it: the file's own CRS, kept without its datum shift
            entry["accept_source_crs"] = True
            if not crs:
                entry["crs"] = None
        elif crs and name in catalog.layers and catalog.layers[name].accept_source_crs:
            entry["accept_source_crs"] = None  # that acceptance was for the file's own CRS, no longer used
        if title:
            entry["title"] = title
        edit.set_layer(name, entry)
        catalog = edit.check()
        cfg = catalog.layers[name]
        report = build_cog(path, cog_path(catalog, name), name, crs=cfg.crs, accept_source_crs=cfg.accept_source_crs)
    return report


def write_geotiff(path: Path, array: np.ndarray, transform, crs: str, nodata: float | None = None) -> None:
    """Write a single-band GeoTIFF (plain, not COG): the form a hazard model hands over."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp.tif")
    profile = {
        "driver": "GTiff", "width": array.shape[1], "height": array.shape[0], "count": 1,
        "dtype": str(array.dtype), "crs": RioCRS.from_wkt(parse_crs(crs).to_wkt()),
        "transform": transform, "nodata": nodata, "compress": "deflate",
    }
    try:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(array, 1)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def raster_layers(catalog: Catalog) -> list[str]:
    return [n for n, cfg in catalog.layers.items() if cfg.kind == "raster"]

