"""Embedded store: one GeoPackage file (SQLite with an R-tree per layer).

Atomic publish: the layer is written into a copy of the file next to it, then the
copy replaces the original with os.replace. Open readers keep the old file; new
readers see the new one; a failure leaves the original untouched. Writers are
serialised with an advisory lock.
"""
from __future__ import annotations

import fcntl
import math
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing, contextmanager
from pathlib import Path

import geopandas as gpd
import pyogrio

from geo.errors import StoreError
from geo.names import check_layer_name
from pipelines.store.base import (STORE_CRS, LayerInfo, as_dates, check_publishable, field_type, is_date_column,
                                   row_slice)


class GeoPackageStore:
    kind = "gpkg"

    def __init__(self, path: Path):
        self.path = Path(path)

    # -- writing -------------------------------------------------------------
    @contextmanager
    def _write_lock(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def publish(self, name: str, gdf: gpd.GeoDataFrame) -> LayerInfo:
        check_layer_name(name)
        if gdf.crs is None or gdf.crs.to_epsg() != 4326:
            raise StoreError(f"layer {name!r}: the store takes EPSG:4326 data, got {gdf.crs}")
        check_publishable(name, gdf)
        with self._write_lock():
            fd, tmp = tempfile.mkstemp(prefix=".publish-", suffix=".gpkg", dir=self.path.parent)
            os.close(fd)
            tmp_path = Path(tmp)
            try:
                if self.path.exists():
                    shutil.copyfile(self.path, tmp_path)
                else:
                    tmp_path.unlink()
                pyogrio.write_dataframe(
                    gdf, tmp_path, layer=name, driver="GPKG", promote_to_multi=False,
                    layer_options={"SPATIAL_INDEX": "YES", "FID": "fid"},
                    # only the arrow writer makes DATE columns (of date32); the other writes text
                    use_arrow=any(is_date_column(gdf[c]) for c in gdf.columns if c != gdf.geometry.name),
                )
                os.replace(tmp_path, self.path)
            except Exception as exc:
                tmp_path.unlink(missing_ok=True)
                # pyogrio/GDAL errors (un-encodable text, unsupported dtypes) as one clear line.
                raise StoreError(f"layer {name!r}: could not write it to {self.path}: {exc}; "
                                 "the previously published layer is unchanged") from exc
            except BaseException:
                tmp_path.unlink(missing_ok=True)
                raise
        return self.info(name)

    # -- reading -------------------------------------------------------------
    @staticmethod
    def _layer_names(path: Path) -> list[str]:
        if not path.exists():
            return []
        return [str(n) for n, _ in pyogrio.list_layers(path)]

    def layers(self) -> list[str]:
        return self._layer_names(self.path)

    def _require(self, name: str) -> None:
        check_layer_name(name)
        if name not in self.layers():
            raise StoreError(f"layer {name!r} is not in the store {self.path}; ingest it first")

    def read(self, name: str, bbox=None, rows: tuple[int, int | None] | None = None) -> gpd.GeoDataFrame:
        self._require(name)
        window = {}
        if rows is not None:
            start, stop = row_slice(rows, bbox)
            # max_features=0 would read every row: an empty slice reads one and drops it
            window = {"skip_features": start, "max_features": None if stop is None else max(stop - start, 1)}
        gdf = pyogrio.read_dataframe(self.path, layer=name, bbox=bbox, fid_as_index=bbox is not None, **window)
        if rows is not None and stop == start:
            gdf = gdf.iloc[:0]
        if bbox is not None:  # the R-tree returns rows in its own order; builds rely on the file's
            gdf = gdf.sort_index().reset_index(drop=True)
        meta = pyogrio.read_info(self.path, layer=name)
        gdf = as_dates(gdf, meta["fields"], meta["dtypes"])
        if gdf.crs is None:
            gdf = gdf.set_crs(STORE_CRS)
        return gdf

    def count(self, name: str, bbox) -> int:
        """Features whose envelope meets the lon/lat ``bbox``, from the R-tree alone: a bbox read
        returns these or fewer. Cheap enough to size partitions before reading any row."""
        self._require(name)
        minx, miny, maxx, maxy = _finite_bbox(bbox)
        with closing(self.sqlite()) as con:
            row = con.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (name,)).fetchone()
            rtree = f"rtree_{name}_{row[0]}" if row else None
            if rtree is None or not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                                (rtree,)).fetchone():
                raise StoreError(f"layer {name!r} in {self.path} has no spatial index; publish it again "
                                 "(citytwin ingest) to make one")
            quoted = '"' + rtree.replace('"', '""') + '"'
            return int(con.execute(f"SELECT count(*) FROM {quoted} WHERE maxx >= ? AND minx <= ? "
                                   "AND maxy >= ? AND miny <= ?", (minx, maxx, miny, maxy)).fetchone()[0])

    def info(self, name: str) -> LayerInfo:
        self._require(name)
        meta = pyogrio.read_info(self.path, layer=name, force_feature_count=True, force_total_bounds=True)
        fields = {str(f): field_type(_np_dtype(t)) for f, t in zip(meta["fields"], meta["dtypes"])}
        return LayerInfo(
            name=name,
            count=int(meta["features"]),
            # An empty layer has no extent: NaN bounds, as the PostGIS store reports.
            bounds=tuple(float(b) for b in meta["total_bounds"] or (float("nan"),) * 4),
            geometry_type=str(meta["geometry_type"]),
            fields=fields,
        )

    def sqlite(self) -> sqlite3.Connection:
        """A read-only SQLite connection (used by the API's feature provider)."""
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def close(self) -> None:
        pass


def _finite_bbox(bbox) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise StoreError(f"bbox {bbox!r} must be four numbers: minlon, minlat, maxlon, maxlat") from None
    if len(vals) != 4 or not all(map(math.isfinite, vals)) or vals[0] > vals[2] or vals[1] > vals[3]:
        raise StoreError(f"bbox {bbox!r} must be four finite numbers: minlon, minlat, maxlon, maxlat")
    return vals


def _np_dtype(name: str):
    import numpy as np

    try:
        return np.dtype(name)
    except TypeError:
        return np.dtype("O")
