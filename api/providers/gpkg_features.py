"""pygeoapi feature provider over the embedded GeoPackage store (read-only sqlite3).

Named in the generated pygeoapi config as ``api.providers.gpkg_features.GeoPackageProvider``.
Bbox queries use the GeoPackage R-tree (``rtree_<table>_<geom>``) for candidates, then an
exact shapely intersects test for the rows whose envelope is not wholly inside the bbox,
so ``numberMatched`` and paging count exactly the intersecting features.

Coordinates come out in the axis order of the requested CRS, as pygeoapi's own
``crs_transform`` does (pyproj with authority axis order). A CQL2 ``filter`` is evaluated over
the candidate rows (all, or the bbox's) by api.providers.cql_filter, never written into SQL.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pygeoapi.provider.base import (
    BaseProvider,
    ProviderConnectionError,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
)

from api.cql2.values import instants, kind_of
from api.providers.cql_filter import FilterError, FilterTimeout, RowSet, evaluate
from api.providers.errors import TooSlowError
from api.providers.gpkg_blob import decode
from geo.errors import LayerNameError
from geo.crs import authority_transformer
from geo.names import check_layer_name

MAX_FILTER_ROWS = 200_000  # candidates a CQL2 filter may hold in memory (about 200 MB of rows)
_INTEGER_TYPES = ("INT", "TINYINT", "SMALLINT", "MEDIUMINT", "INTEGER", "BIGINT")
_NUMBER_TYPES = ("REAL", "FLOAT", "DOUBLE", "NUMERIC")


@dataclass(frozen=True)
class _LayerMeta:
    pk: str
    geom: str
    rtree: str | None
    fields: dict[str, dict]  # published columns (not pk, not geometry) -> JSON schema type


def _quote(identifier: str) -> str:
    """SQL identifier quoting; callers only pass names read from the file's own schema."""
    return '"' + identifier.replace('"', '""') + '"'


def _json_type(declared: str) -> dict:
    t = (declared or "").upper().split("(")[0].strip()
    if t in _INTEGER_TYPES:
        return {"type": "integer"}
    if t in _NUMBER_TYPES:
        return {"type": "number"}
    if t == "BOOLEAN":
        return {"type": "boolean"}
    if t == "DATE":
        return {"type": "string", "format": "date"}
    if t == "DATETIME":
        return {"type": "string", "format": "date-time"}
    return {"type": "string"}


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection, closed on exit (sqlite3's own context manager does not close)."""
    if not path.is_file():
        raise ProviderConnectionError(user_msg=f"store {path} is missing; run 'citytwin build'")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        yield con
    finally:
        con.close()


@lru_cache(maxsize=64)
def _layer_meta(path: str, table: str, stamp: tuple[int, int]) -> _LayerMeta:
    """Schema facts of one layer; cached per file version (inode, mtime)."""
    del stamp  # only part of the cache key: a republished file has a new inode
    with _connect(Path(path)) as con:
        row = con.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)
        ).fetchone()
        if row is None:
            raise ProviderConnectionError(user_msg=f"layer {table!r} is not in the store {path}")
        geom = row[0]
        cols = con.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
        rtree_name = f"rtree_{table}_{geom}"
        has_rtree = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (rtree_name,)
        ).fetchone() is not None
    pk = next((c[1] for c in cols if c[5]), "fid")
    fields = {c[1]: _json_type(c[2]) for c in cols if c[1] not in (pk, geom) and (c[2] or "").upper() != "BLOB"}
    return _LayerMeta(pk=pk, geom=geom, rtree=rtree_name if has_rtree else None, fields=fields)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ProviderConnectionError(user_msg=f"store {path} is missing; run 'citytwin build'") from None
    return st.st_ino, st.st_mtime_ns


def _filter_column(values: list, kind: str) -> np.ndarray:
    if kind in ("number", "boolean"):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    if kind == "instant":
        return instants(values)
    return np.array(values, dtype=object)


def _typed(value: str, schema: dict, name: str) -> Any:
    kind = schema["type"]
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        raise ProviderInvalidQueryError(user_msg=f"property {name!r} takes a {kind}, got {value!r}") from None
    if kind == "boolean":
        low = str(value).lower()
        if low not in ("true", "false", "1", "0"):
            raise ProviderInvalidQueryError(user_msg=f"property {name!r} takes true or false, got {value!r}")
        return 1 if low in ("true", "1") else 0
    return value


class GeoPackageProvider(BaseProvider):
    """OGC API Features over one GeoPackage layer of the citytwin store."""

    def __init__(self, provider_def: dict):
        super().__init__(provider_def)
        self.path = Path(self.data)
        try:
            self.table = check_layer_name(provider_def.get("table", ""))
        except LayerNameError as exc:
            raise ProviderConnectionError(user_msg=str(exc)) from None
        self.id_field = provider_def.get("id_field") or "id"
        self.storage_crs = provider_def.get("storage_crs")
        self._meta = _layer_meta(str(self.path), self.table, _stamp(self.path))
        self.geom = self._meta.geom
        self._fields = dict(self._meta.fields)

    def __repr__(self) -> str:
        return f"<GeoPackageProvider> {self.path}:{self.table}"

    def get_fields(self) -> dict:
        return self._fields

    # -- queries -------------------------------------------------------------
    def query(self, offset: int = 0, limit: int = 10, resulttype: str = "results",
              bbox: list | None = None, datetime_: str | None = None, properties: list | None = None,
              sortby: list | None = None, select_properties: list | None = None,
              skip_geometry: bool = False, q: str | None = None, filterq=None,
              crs_transform_spec=None, **kwargs) -> dict:
        if q:
            raise ProviderInvalidQueryError(user_msg="free-text 'q' search is not supported on this collection")
        if datetime_:
            raise ProviderInvalidQueryError(user_msg="this collection has no time field; drop 'datetime'")

        where, params = self._property_filter(properties or [])
        order = self._order_by(sortby or [])
        t = _quote(self.table)
        if filterq is not None:
            return self._filtered(filterq, offset, limit, resulttype, bbox, where, params, order,
                                  select_properties, skip_geometry, crs_transform_spec)
        with _connect(self.path) as con:
            if bbox:
                fids = self._bbox_fids(con, bbox, where, params, order)
                matched = len(fids)
                page = fids[offset:offset + limit]
                rows = self._rows_by_fid(con, page) if resulttype != "hits" else []
            else:
                sql_where = f" WHERE {' AND '.join(where)}" if where else ""
                matched = con.execute(f"SELECT count(*) FROM {t} AS t{sql_where}", params).fetchone()[0]
                rows = []
                if resulttype != "hits":
                    rows = con.execute(
                        f"SELECT {self._select_list()} FROM {t} AS t{sql_where} ORDER BY {order} LIMIT ? OFFSET ?",
                        [*params, limit, offset],
                    ).fetchall()
        features = self._features(rows, select_properties or [], skip_geometry, crs_transform_spec)
        return {
            "type": "FeatureCollection",
            "features": features,
            "numberMatched": int(matched),
            "numberReturned": len(features),
        }

    def _filtered(self, filterq, offset: int, limit: int, resulttype: str, bbox: list | None, where: list[str],
                  params: list, order: str, select_properties, skip_geometry: bool, crs_transform_spec) -> dict:
        """A CQL2 filter over the candidate rows (the bbox's, else all), in their sort order.

        The candidates are held in memory, so there are at most MAX_FILTER_ROWS of them: a
        filter over more asks for a bbox (or PostGIS) instead of filling the server's memory."""
        with _connect(self.path) as con:
            if bbox:
                fids = self._bbox_fids(con, bbox, where, params, order)
                self._check_filter_rows(len(fids))
                rows = self._rows_by_fid(con, fids)
            else:
                sql_where = f" WHERE {' AND '.join(where)}" if where else ""
                table = _quote(self.table)
                count = con.execute(f"SELECT count(*) FROM {table} AS t{sql_where}", params).fetchone()[0]
                self._check_filter_rows(count)
                rows = con.execute(f"SELECT {self._select_list()} FROM {table} AS t{sql_where} "
                                   f"ORDER BY {order}", params).fetchall()
        names = self._columns()
        kinds = {n: kind_of(self._fields[n]) for n in names}
        columns = {n: _filter_column([r[i + 2] for r in rows], kinds[n]) for i, n in enumerate(names)}
        candidates = RowSet(columns, kinds, len(rows), lambda: decode([r[1] for r in rows]))
        try:
            keep = evaluate(filterq, candidates) if rows else np.zeros(0, dtype=bool)
        except FilterError as exc:
            raise ProviderInvalidQueryError(user_msg=str(exc)) from None
        except FilterTimeout as exc:
            raise TooSlowError(user_msg=f"{exc} over {len(rows):,} candidate features of {self.table!r}; "
                                        "add a bbox or simplify the filter, or serve from PostGIS "
                                        "(set CITYTWIN_DATABASE_URL)") from None
        matched = [r for r, k in zip(rows, keep) if k]
        page = matched[offset:offset + limit] if resulttype != "hits" else []
        features = self._features(page, select_properties or [], skip_geometry, crs_transform_spec)
        return {"type": "FeatureCollection", "features": features, "numberMatched": len(matched),
                "numberReturned": len(features)}

    def _check_filter_rows(self, n: int) -> None:
        if n > MAX_FILTER_ROWS:
            raise ProviderInvalidQueryError(
                user_msg=f"a CQL2 filter on the embedded store looks at most {MAX_FILTER_ROWS:,} features and "
                         f"{self.table!r} has {n:,} to look at; add a bbox, or serve from PostGIS "
                         "(set CITYTWIN_DATABASE_URL) for filters over the whole layer")

    def get(self, identifier, crs_transform_spec=None, **kwargs) -> dict:
        with _connect(self.path) as con:
            rows = con.execute(
                f"SELECT {self._select_list()} FROM {_quote(self.table)} AS t WHERE t.{_quote(self.id_field)} = ?",
                (str(identifier),),
            ).fetchall()
        if not rows:
            raise ProviderItemNotFoundError(user_msg=f"no feature with id {identifier!r} in {self.table!r}")
        return self._features(rows, [], False, crs_transform_spec)[0]

    # -- SQL pieces ----------------------------------------------------------
    def _columns(self) -> list[str]:
        return list(self._fields)

    def _select_list(self) -> str:
        cols = [f"t.{_quote(c)}" for c in self._columns()]
        return ", ".join([f"t.{_quote(self._meta.pk)}", f"t.{_quote(self.geom)}", *cols])

    def _property_filter(self, properties: list[tuple[str, str]]) -> tuple[list[str], list]:
        where, params = [], []
        for name, value in properties:
            if name not in self._fields:
                continue  # pygeoapi only passes known fields; ignore anything else
            where.append(f"t.{_quote(name)} = ?")
            params.append(_typed(value, self._fields[name], name))
        return where, params

    def _order_by(self, sortby: list[dict]) -> str:
        parts = []
        for s in sortby:
            prop = s.get("property")
            if prop not in self._fields:
                raise ProviderInvalidQueryError(user_msg=f"cannot sort by unknown property {prop!r}")
            parts.append(f"t.{_quote(prop)} {'DESC' if s.get('order') == '-' else 'ASC'}")
        parts.append(f"t.{_quote(self._meta.pk)} ASC")  # stable paging
        return ", ".join(parts)

    def _bbox_fids(self, con: sqlite3.Connection, bbox: list, where: list[str], params: list,
                   order: str) -> list[int]:
        if len(bbox) == 6:  # 3D bbox: minx, miny, minz, maxx, maxy, maxz
            bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
        minx, miny, maxx, maxy = (float(v) for v in bbox)
        t, g = _quote(self.table), _quote(self.geom)
        if self._meta.rtree:
            sql = (
                f"SELECT t.{_quote(self._meta.pk)}, "
                f"CASE WHEN r.minx >= ? AND r.maxx <= ? AND r.miny >= ? AND r.maxy <= ? THEN NULL ELSE t.{g} END "
                f"FROM {t} AS t JOIN {_quote(self._meta.rtree)} AS r ON r.id = t.{_quote(self._meta.pk)} "
                f"WHERE r.minx <= ? AND r.maxx >= ? AND r.miny <= ? AND r.maxy >= ?"
            )
            args = [minx, maxx, miny, maxy, maxx, minx, maxy, miny]
        else:  # no spatial index: test every non-empty geometry
            sql = f"SELECT t.{_quote(self._meta.pk)}, t.{g} FROM {t} AS t WHERE t.{g} IS NOT NULL"
            args = []
        if where:
            sql += " AND " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        rows = con.execute(sql, [*args, *params]).fetchall()
        if not rows:
            return []
        fids = np.array([r[0] for r in rows], dtype=np.int64)
        blobs = [r[1] for r in rows]
        check = np.array([b is not None for b in blobs], dtype=bool)
        keep = ~check
        if check.any():
            geoms = decode([b for b in blobs if b is not None])
            keep[check] = shapely.intersects(geoms, shapely.box(minx, miny, maxx, maxy))
        return fids[keep].tolist()

    def _rows_by_fid(self, con: sqlite3.Connection, fids: list[int]) -> list[tuple]:
        if not fids:
            return []
        marks = ",".join("?" * len(fids))
        rows = con.execute(
            f"SELECT {self._select_list()} FROM {_quote(self.table)} AS t "
            f"WHERE t.{_quote(self._meta.pk)} IN ({marks})", fids,
        ).fetchall()
        by_fid = {r[0]: r for r in rows}
        return [by_fid[f] for f in fids if f in by_fid]

    # -- GeoJSON -------------------------------------------------------------
    def _features(self, rows: list[tuple], select_properties: list[str], skip_geometry: bool,
                  crs_transform_spec) -> list[dict]:
        if not rows:
            return []
        names = self._columns()
        wanted = [n for n in names if n != self.id_field and (not select_properties or n in select_properties)]
        index = {n: i + 2 for i, n in enumerate(names)}
        booleans = {n for n in wanted if self._fields[n]["type"] == "boolean"}
        geometries: list[dict | None] = [None] * len(rows)
        if not skip_geometry:
            geometries = self._geojson([r[1] for r in rows], crs_transform_spec)
        out = []
        for row, geometry in zip(rows, geometries):
            props = {}
            for n in wanted:
                v = row[index[n]]
                props[n] = bool(v) if n in booleans and v is not None else v
            fid = row[index[self.id_field]] if self.id_field in index else row[0]
            out.append({"type": "Feature", "id": fid, "geometry": geometry, "properties": props})
        return out

    def _geojson(self, blobs: list[bytes | None], crs_transform_spec) -> list[dict | None]:
        geoms = decode(blobs)
        if crs_transform_spec is not None:
            tr = authority_transformer(crs_transform_spec.source_crs_wkt, crs_transform_spec.target_crs_wkt)

            def project(coords: np.ndarray) -> np.ndarray:
                x, y = tr.transform(coords[:, 0], coords[:, 1])
                return np.column_stack([x, y, *coords[:, 2:].T])  # heights pass through

            geoms = shapely.transform(geoms, project, include_z=None)
        texts = shapely.to_geojson(geoms)
        return [json.loads(s) if s is not None else None for s in texts]
