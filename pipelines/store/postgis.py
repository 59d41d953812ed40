"""PostGIS store: one table per layer, bulk-loaded with binary COPY, swapped atomically.

Table shape: ``id text primary key``, the attributes (text, double precision, bigint,
boolean, from the pandas dtypes), ``geometry geometry(<type>, 4326)`` with a GiST index: the
plain shape that tipg, pygeoapi, QGIS and ogr2ogr read. Beside it, the tile server's side table
``_citytwin_tiling_<layer>`` (tiling_table) holds the id and attributes again with the geometry
in Web Mercator (GiST index), so a tile transforms nothing, and the first zoom at which the
PMTiles engine draws the feature (tiles.mvt_zoom.first_drawn_zoom, b-tree index), so a tile skips
what it would not draw. They are kept out of the layer table because third-party tools take a
second geometry column for a property or the layer's geometry; the attributes are repeated so
that a tile reads one table, with no join (the extra space is the attributes' once more). Tables published before the side table (none, or the same
columns inside the layer table, HIDDEN_COLUMNS) still serve; no read, info or API answer shows them.
``citytwin_layers`` records each layer's geometry type, update time and a version that
grows with every publish (the tile server uses it in ETags); a publish NOTIFYs servers at commit.

Atomic publish: the whole publish is one transaction. The data goes into a staging
table ``_stage_<layer>_<random>`` in the same schema, gets its primary key, GiST index
and statistics, and only then is the old table dropped and the staging table (and its
indexes) renamed into place. Readers keep reading the old table until the commit; any
failure rolls back, which removes the staging table and leaves the old one untouched,
even when the process dies mid-load.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import decimal
import hashlib
import math
import os
import secrets
import threading
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import shapely
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from geo.errors import StoreError
from geo.names import check_layer_name
from pipelines.store.base import (GEOMETRY_COLUMN, ID_COLUMN, STORE_CRS, LayerInfo, check_publishable,
                                   is_date_column, row_slice)
from pipelines.store.pg_access import AsyncPoolAccess, DbState, PoolAccess
from pipelines.store.pg_versions import LayerVersions, notify_sql

META_TABLE = "citytwin_layers"
STAGE_PREFIX = "_stage_"
PG_IDENT_MAX = 63  # bytes; PostgreSQL silently truncates longer identifiers
CONNECT_TIMEOUT_S = 10
# The pool of the threaded reads (items, TileJSON, publishes): as many connections as a map
# client opens at once (16, the benchmarks' clients). The pool grows to it only under load.
# The tile route has its own, smaller pool (default_tile_connections).
MAX_CONNECTIONS = 16
# The pool gives up re-creating a lost connection after this long, so that the next request
# tries afresh at once: its own backoff (1, 2, 4 ... s) would keep a restarted database
# unused for up to half the outage.
RECONNECT_TIMEOUT_S = 3.0
MINZOOM_COLUMN = "_citytwin_minzoom"
MERCATOR_COLUMN = "_citytwin_geom_3857"
HIDDEN_COLUMNS = (MINZOOM_COLUMN, MERCATOR_COLUMN)  # the tiling side table's; inside the layer table before
TILING_PREFIX = "_citytwin_tiling_"  # a layer name starts with a letter: no layer takes this name
DEEPEST_ZOOM = 16  # the first drawn zoom is sought up to here (pipelines.zooms.MAXZOOM); past it, never
_TILING_INDEXES = ("_geom3857_idx", "_minzoom_idx")
_REGCLASS = "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))"  # params: schema, table

# pandas dtype kind -> column type. Anything else is stored as text, except a column of dates
# (is_date_column), which is a date. Date-times without a zone are UTC (as the GeoPackage store reads them).
_PG_TYPES = {"b": "boolean", "i": "bigint", "u": "bigint", "f": "double precision", "M": "timestamptz"}
# Column type (as format_type prints it) -> field type name of the API.
_FIELD_TYPES = {"text": "string", "double precision": "number", "bigint": "integer", "boolean": "boolean",
                "timestamp with time zone": "string", "date": "string"}
# Empty-result dtypes per column type, so an empty read keeps the layer's schema.
_EMPTY_DTYPES = {"text": object, "double precision": "float64", "bigint": "int64", "boolean": "bool",
                 "timestamp with time zone": "datetime64[ns, UTC]", "date": object}
# Column types a read gathers into numpy arrays (with a NULL mask); the others stay Python objects.
_NUMPY_KINDS = {"double precision": np.dtype("float64"), "bigint": np.dtype("int64"), "boolean": np.dtype("bool")}
# Rows a read fetches per round trip (a server-side cursor's FETCH): what exists at once as tuples.
READ_BATCH_ROWS = 20_000
# shapely.get_type_id -> PostGIS/OGR type name (a LinearRing is stored as a LineString).
_TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LineString", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}


def default_tile_connections() -> int:
    """Connections of the server's tile pool unless ``server.tile_db_connections`` says otherwise:
    3 per core of this machine, 4 to MAX_CONNECTIONS. Tiles are CPU work in the database; with
    more of them at once than it has cores, the heavy ones share a core with many others and
    the slowest tiles take several times longer, for no more tiles a second (at 16 clients on 2
    cores: 6 connections gave the same throughput as 16, p99 ~185 against ~425 ms;
    benchmarks/notes.md). Requests beyond it wait in the pool's queue, on the event loop."""
    return max(4, min(MAX_CONNECTIONS, 3 * (os.cpu_count() or 1)))


def describe_url(url: str) -> str:
    """``user@host:port/dbname`` of a connection string, never its password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparseable database URL)"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"{user}{host}{port}/{params.get('dbname', '(default database)')}"


class PostGISStore:
    kind = "postgis"

    def __init__(self, url: str, *, schema: str = "public", max_connections: int = MAX_CONNECTIONS,
                 statement_timeout_ms: int | None = None, tile_connections: int | None = None):
        """``statement_timeout_ms`` bounds every statement on the pool's connections (the server
        sets it; a publish, whose COPY and index may take long, does not). ``tile_connections``
        sizes the pool of the tile route (default_tile_connections() when None)."""
        self.url = url
        self.schema = check_layer_name(schema)  # same rules keep it a safe identifier
        self.where = describe_url(url)
        self._max_connections = max_connections
        self.tile_connections = tile_connections or default_tile_connections()
        self._statement_timeout_ms = statement_timeout_ms
        self._pool: ConnectionPool | None = None
        self._access: PoolAccess | None = None
        self._async: AsyncPoolAccess | None = None
        self._versions: LayerVersions | None = None
        self._async_lock = asyncio.Lock()
        self._state = DbState(self.where)  # shared by both pools' accesses
        self._pool_lock = threading.Lock()
        self._meta_ready = False

    def __repr__(self) -> str:
        return f"PostGISStore({self.where!r}, schema={self.schema!r})"

    # -- connections ---------------------------------------------------------
    @property
    def pool(self) -> ConnectionPool:
        """The shared connection pool, opened on first use (the tile server and API reuse it)."""
        with self._pool_lock:
            if self._pool is None:
                self._probe()
                pool = ConnectionPool(
                    self.url, min_size=1, max_size=self._max_connections, open=False,
                    name="citytwin", reconnect_timeout=RECONNECT_TIMEOUT_S, kwargs=self._connect_kwargs(),
                )
                try:
                    pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
                except Exception as exc:
                    pool.close()
                    raise self._unreachable(exc) from None
                self._pool = pool
            return self._pool

    @property
    def access(self) -> PoolAccess:
        """Reads on the pool that turn an outage into StoreUnavailableError (one per store, so
        every route shares what it knows of the database's state)."""
        pool = self.pool
        with self._pool_lock:
            if self._access is None or self._access.pool is not pool:
                self._access = PoolAccess(pool, self.where, self._state)
            return self._access

    async def async_access(self) -> AsyncPoolAccess:
        """Reads from coroutines on the running event loop (the tile route): a second pool of up to
        ``tile_connections`` autocommit connections, opened on that loop at first use. Its reads
        share the database's up/down state with ``access``."""
        async with self._async_lock:
            if self._async is None:
                kwargs = {**self._connect_kwargs(), "autocommit": True}  # single statements: no COMMIT trip
                pool = AsyncConnectionPool(self.url, min_size=1, max_size=self.tile_connections, open=False,
                                           name="citytwin-async", reconnect_timeout=RECONNECT_TIMEOUT_S,
                                           kwargs=kwargs)
                await pool.open()  # no wait: while the database is down, reads time out into 503s
                self._async = AsyncPoolAccess(pool, self._state)
            return self._async

    def layer_versions(self) -> LayerVersions:
        """The layers' versions as the running loop knows them (publishes NOTIFY; see pg_versions)."""
        if self._versions is None:
            self._versions = LayerVersions(self.url, self._connect_kwargs())
            self._versions.start()
        return self._versions

    def _connect_kwargs(self) -> dict:
        # JIT compiles the tile and bbox queries (high cost estimates) on every run,
        # which costs more than the short queries themselves
        options = "-c jit=off"
        if self._statement_timeout_ms:
            options += f" -c statement_timeout={int(self._statement_timeout_ms)}"
        return {"connect_timeout": CONNECT_TIMEOUT_S, "options": options}

    def _probe(self) -> None:
        """Connect once directly: gives the server's own reason when it fails, and checks PostGIS."""
        try:
            with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
                row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone()
                if row is None:
                    try:
                        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
                    except psycopg.Error as exc:
                        raise StoreError(
                            f"the database {self.where} has no PostGIS extension and it could not be "
                            f"created ({_reason(exc)}); run 'CREATE EXTENSION postgis' there as a superuser"
                        ) from None
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"cannot connect to PostGIS at {self.where}: {_reason(exc)}. Check CITYTWIN_DATABASE_URL "
            "(postgresql://user:password@host:port/dbname), that the server is running and accepts "
            "connections from here, and that the database exists"
        )

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __enter__(self) -> PostGISStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def table(self, name: str) -> sql.Identifier:
        """The schema-qualified identifier of layer ``name`` (for the tile server's SQL)."""
        return sql.Identifier(self.schema, check_layer_name(name))

    # -- writing -------------------------------------------------------------
    def publish(self, name: str, gdf: gpd.GeoDataFrame) -> LayerInfo:
        check_layer_name(name)
        plan = _LoadPlan.from_gdf(name, gdf)
        self._ensure_meta()
        stage = f"{STAGE_PREFIX}{name[:40]}_{secrets.token_hex(4)}"
        try:
            with self.pool.connection() as conn, conn.transaction():
                # One publisher per layer at a time; other layers go on in parallel.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('citytwin.publish'), hashtext(%s))", [name])
                self._refuse_foreign_table(conn, name)
                conn.execute(sql.SQL("CREATE TABLE {} ({})").format(
                    sql.Identifier(self.schema, stage), plan.columns_sql()))
                conn.execute(sql.SQL("CREATE TABLE {} ({})").format(
                    sql.Identifier(self.schema, tiling_table(stage)), plan.columns_sql(tiling=True)))
                plan.copy_into(conn, self.schema, stage)
                self._index(conn, stage)
                for table in (stage, tiling_table(stage)):
                    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(self.schema, table)))
                self._swap(conn, stage, name, plan.geometry_label)
        except psycopg.OperationalError as exc:
            raise StoreError(f"layer {name!r}: lost the connection to {self.where} while publishing "
                             f"({_reason(exc)}); the previous layer is unchanged, run it again") from None
        except psycopg.Error as exc:
            raise StoreError(f"layer {name!r}: the database {self.where} refused the data: {_reason(exc)}; "
                             "the previous layer is unchanged") from None
        return self.info(name)

    def _ensure_meta(self) -> None:
        if self._meta_ready:
            return
        with self.pool.connection() as conn, conn.transaction():
            # Serialise the CREATE: concurrent IF NOT EXISTS can still collide in pg_type.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('citytwin.meta'))")
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, geometry_type text NOT NULL, "
                "updated_at timestamptz NOT NULL DEFAULT now(), version bigint NOT NULL DEFAULT 1)"
            ).format(sql.Identifier(self.schema, META_TABLE)))
        self._meta_ready = True

    def _refuse_foreign_table(self, conn: psycopg.Connection, name: str) -> None:
        """Never drop a table of the same name that citytwin did not publish."""
        if self._exists(conn, name) and not self._registered(conn, name):
            raise StoreError(
                f"layer {name!r}: a table {self.schema}.{name} already exists in {self.where} and was not "
                "published by citytwin; rename or drop it, or choose another layer name"
            )

    def _registered(self, conn: psycopg.Connection, name: str) -> bool:
        q = sql.SQL("SELECT 1 FROM {} WHERE name = %s").format(sql.Identifier(self.schema, META_TABLE))
        return conn.execute(q, [name]).fetchone() is not None

    def _index(self, conn: psycopg.Connection, table: str) -> None:
        t, tiling = sql.Identifier(self.schema, table), tiling_table(table)
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            t, sql.Identifier(_index_name(table, "_pkey")), sql.Identifier(ID_COLUMN)))
        conn.execute(sql.SQL("CREATE INDEX {} ON {} USING gist ({})").format(
            sql.Identifier(_index_name(table, "_geometry_idx")), t, sql.Identifier(GEOMETRY_COLUMN)))
        geom_idx, minzoom_idx = (sql.Identifier(_index_name(tiling, suffix)) for suffix in _TILING_INDEXES)
        side = sql.Identifier(self.schema, tiling)
        conn.execute(sql.SQL("CREATE INDEX {} ON {} USING gist ({})").format(
            geom_idx, side, sql.Identifier(MERCATOR_COLUMN)))
        conn.execute(sql.SQL("CREATE INDEX {} ON {} ({})").format(minzoom_idx, side, sql.Identifier(MINZOOM_COLUMN)))

    def _swap(self, conn: psycopg.Connection, stage: str, name: str, geometry_label: str) -> None:
        s = self.schema
        renames = [(stage, name, ("_pkey", "_geometry_idx")),
                   (tiling_table(stage), tiling_table(name), _TILING_INDEXES)]
        for old, new, suffixes in renames:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(s, new)))
            conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(s, old), sql.Identifier(new)))
            for suffix in suffixes:
                conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(s, _index_name(old, suffix)), sql.Identifier(_index_name(new, suffix))))
        conn.execute(sql.SQL(
            "INSERT INTO {} AS m (name, geometry_type, updated_at, version) VALUES (%s, %s, now(), 1) "
            "ON CONFLICT (name) DO UPDATE SET geometry_type = EXCLUDED.geometry_type, "
            "updated_at = EXCLUDED.updated_at, version = m.version + 1"
        ).format(sql.Identifier(s, META_TABLE)), [name, geometry_label])
        conn.execute(notify_sql(), [name])  # sent at commit: servers drop the versions they hold

    # -- reading -------------------------------------------------------------
    def _exists(self, conn: psycopg.Connection, table: str) -> bool:
        return conn.execute(_REGCLASS + " IS NOT NULL", [self.schema, table]).fetchone()[0]

    def _meta_exists(self, conn: psycopg.Connection) -> bool:
        return self._exists(conn, META_TABLE)

    def layers(self) -> list[str]:
        """Published layer names; StoreUnavailableError while the database is down."""
        return self.access.run(self._layers)

    def _layers(self, conn: psycopg.Connection) -> list[str]:
        if not self._meta_exists(conn):
            return []
        # Only layers whose table is still there (someone may have dropped one by hand).
        q = sql.SQL("SELECT name FROM {} WHERE to_regclass(format('%%I.%%I', %s::text, name)) "
                    "IS NOT NULL ORDER BY name").format(sql.Identifier(self.schema, META_TABLE))
        return [r[0] for r in conn.execute(q, [self.schema]).fetchall()]

    def _meta_row(self, conn: psycopg.Connection, name: str) -> tuple[str, int]:
        check_layer_name(name)
        row = None
        if self._meta_exists(conn):
            q = sql.SQL("SELECT geometry_type, version FROM {} WHERE name = %s").format(
                sql.Identifier(self.schema, META_TABLE))
            row = conn.execute(q, [name]).fetchone()
        if row is None:
            raise StoreError(f"layer {name!r} is not in the store {self.where}; ingest it first")
        return row

    def version(self, name: str) -> int:
        """How many times ``name`` has been published; changes whenever its data changes."""
        return int(self.access.run(lambda conn: self._meta_row(conn, name))[1])

    def _columns(self, conn: psycopg.Connection, name: str) -> list[tuple[str, str]]:
        """(column, type) of the layer's table, in table order, the hidden ones left out."""
        q = ("SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
             f"WHERE a.attrelid = ({_REGCLASS}) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")
        return [(r[0], r[1]) for r in conn.execute(q, [self.schema, name]).fetchall() if r[0] not in HIDDEN_COLUMNS]

    def info(self, name: str) -> LayerInfo:
        geometry_type, columns, (count, *bounds) = self.access.run(lambda conn: self._summary(conn, name))
        return LayerInfo(
            name=name,
            count=int(count),
            bounds=tuple(math.nan if b is None else float(b) for b in bounds),
            geometry_type=geometry_type,
            fields={c: _FIELD_TYPES.get(t, "string") for c, t in columns if c != GEOMETRY_COLUMN},
        )

    def _summary(self, conn: psycopg.Connection, name: str) -> tuple[str, list[tuple[str, str]], tuple]:
        """Geometry type, columns, and (count, xmin, ymin, xmax, ymax) of the layer."""
        geometry_type, _ = self._meta_row(conn, name)
        columns = self._columns(conn, name)
        q = sql.SQL("SELECT n, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                    "FROM (SELECT count(*) AS n, ST_Extent({}) AS e FROM {}) AS s").format(
            sql.Identifier(GEOMETRY_COLUMN), self.table(name))
        return geometry_type, columns, conn.execute(q).fetchone()

    def count(self, name: str, bbox: Sequence[float]) -> int:
        """Features whose envelope meets the lon/lat ``bbox``, from the GiST index: a bbox read
        returns these or fewer."""
        params = _check_bbox(bbox)

        def query(conn: psycopg.Connection) -> int:
            self._meta_row(conn, name)
            q = sql.SQL("SELECT count(*) FROM {} WHERE {} && ST_MakeEnvelope(%s, %s, %s, %s, 4326)").format(
                self.table(name), sql.Identifier(GEOMETRY_COLUMN))
            return int(conn.execute(q, params).fetchone()[0])

        return self.access.run(query)

    def read(self, name: str, bbox: Sequence[float] | None = None,
             rows: tuple[int, int | None] | None = None) -> gpd.GeoDataFrame:
        """Features of ``name`` (those intersecting the lon/lat ``bbox``, if given; the ``rows``
        slice of them), ordered by id so that builds do not follow the table's physical order.
        StoreUnavailableError while the database is down."""
        return self.access.run(lambda conn: self._read(conn, name, bbox, rows))

    def _read(self, conn: psycopg.Connection, name: str, bbox: Sequence[float] | None,
              rows: tuple[int, int | None] | None = None) -> gpd.GeoDataFrame:
        self._meta_row(conn, name)
        columns = self._columns(conn, name)
        select = sql.SQL(", ").join(
            sql.SQL("ST_AsBinary({}) AS {}").format(sql.Identifier(c), sql.Identifier(c))
            if c == GEOMETRY_COLUMN else sql.Identifier(c)
            for c, _ in columns
        )
        q = sql.SQL("SELECT {} FROM {}").format(select, self.table(name))
        params: list[float] = []
        if bbox is not None:
            params = _check_bbox(bbox)
            q += sql.SQL(" WHERE ST_Intersects({}, ST_MakeEnvelope(%s, %s, %s, %s, 4326))").format(
                sql.Identifier(GEOMETRY_COLUMN))
        q += sql.SQL(" ORDER BY {}").format(sql.Identifier(ID_COLUMN))
        if rows is not None:
            start, stop = row_slice(rows, bbox)
            q += sql.SQL(" OFFSET %s LIMIT %s")
            params = [*params, start, None if stop is None else stop - start]  # LIMIT NULL: no limit
        cols = [_ReadColumn(c, t) for c, t in columns]
        # A server-side cursor: only one batch at a time exists as Python tuples and WKB bytes (a
        # whole layer at once cost more than the GeoDataFrame itself). Each FETCH is its own
        # statement, so a statement_timeout bounds a batch, not the whole read.
        with conn.transaction(), conn.cursor(name="citytwin_read", binary=True) as cur:
            # every row is wanted: plan for all of them, as for a plain SELECT (by default a cursor's
            # plan favours the first 10%: the id index over the whole table, not the GiST index and a
            # sort, and a bbox read of 90,000 of 600,000 rows took 7 s instead of 0.3 s)
            conn.execute("SELECT set_config('cursor_tuple_fraction', '1', true)")
            cur.execute(q, params)
            while rows := cur.fetchmany(READ_BATCH_ROWS):
                for col, values in zip(cols, zip(*rows)):  # the batch column by column
                    col.add(values)
                del rows
        return gpd.GeoDataFrame({c.name: c.values() for c in cols}, geometry=GEOMETRY_COLUMN, crs=STORE_CRS)


class _ReadColumn:
    """One column of a read, gathered batch by batch into arrays, given at the end the dtype
    that pandas infers from the whole column's Python values (what reads returned before
    they were batched): ints with NULLs become float64 as GeoPackage reads do, booleans with
    NULLs and all-NULL columns object."""

    def __init__(self, name: str, pg_type: str):
        self.name, self.pg_type = name, pg_type
        self.kind = _NUMPY_KINDS.get(pg_type) if name != GEOMETRY_COLUMN else None
        self.parts: list[np.ndarray] = []
        self.nulls: list[np.ndarray] = []

    def add(self, values: Sequence) -> None:
        if self.name == GEOMETRY_COLUMN:
            self.parts.append(shapely.from_wkb(np.array(values, dtype=object)))
        elif self.kind is None:  # text, dates, timestamps: pandas infers from the objects at the end
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            self.parts.append(arr)
        else:
            null = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
            fill = self.kind.type(0)
            self.parts.append(np.array([fill if v is None else v for v in values], dtype=self.kind))
            self.nulls.append(null)

    def values(self) -> object:
        if self.name == GEOMETRY_COLUMN:
            geoms = np.concatenate(self.parts) if self.parts else np.array([], dtype=object)
            return gpd.GeoSeries(geoms, crs=STORE_CRS)
        if not self.parts or not sum(map(len, self.parts)):
            return pd.Series([], dtype=_EMPTY_DTYPES.get(self.pg_type, object))
        arr = np.concatenate(self.parts)
        self.parts.clear()
        if self.kind is None:
            return arr
        null = np.concatenate(self.nulls)
        if not null.any():
            return arr
        if null.all():
            return np.full(len(arr), None, dtype=object)
        if self.kind == np.bool_:
            out = np.array(arr.tolist(), dtype=object)
            out[null] = None
            return out
        out = arr.astype("float64")
        out[null] = np.nan
        return out


# -- loading -----------------------------------------------------------------
class _LoadPlan:
    """What a GeoDataFrame becomes in the database: column types, geometry type, COPY rows."""

    def __init__(self, name: str, fields: list[tuple[str, str, list]], ids: list[str],
                 wkb: np.ndarray, geometry_sql: str, geometry_label: str, tiling: tuple[list, list]):
        self.name = name
        self.fields = fields  # (column, pg type, values ready for COPY)
        self.ids = ids
        self.wkb = wkb
        self.geometry_sql = geometry_sql
        self.geometry_label = geometry_label
        self.tiling = tiling  # the hidden columns' values: first drawn zoom, Web Mercator EWKB

    @classmethod
    def from_gdf(cls, name: str, gdf: gpd.GeoDataFrame) -> _LoadPlan:
        if not isinstance(gdf, gpd.GeoDataFrame) or gdf.active_geometry_name is None:
            raise StoreError(f"layer {name!r}: publish needs a GeoDataFrame with a geometry column")
        if gdf.crs is None or gdf.crs.to_epsg() != 4326:
            raise StoreError(f"layer {name!r}: the store takes EPSG:4326 data, got {gdf.crs}")
        if gdf.columns.duplicated().any():
            dup = gdf.columns[gdf.columns.duplicated()][0]
            raise StoreError(f"layer {name!r}: the field {dup!r} appears twice; rename one of them")
        check_publishable(name, gdf)
        ids = gdf[ID_COLUMN]
        geom_col = gdf.active_geometry_name
        id_list = [str(v) for v in ids.tolist()]
        fields = []
        for col in gdf.columns:
            if col in (ID_COLUMN, geom_col):
                continue
            col_name = _check_field_name(name, col)
            series = gdf[col]
            if isinstance(series.dtype, gpd.array.GeometryDtype):
                raise StoreError(f"layer {name!r}: {col!r} is a second geometry column; drop it or make it WKT")
            pg_type = "date" if is_date_column(series) else _PG_TYPES.get(getattr(series.dtype, "kind", "O"), "text")
            fields.append((col_name, pg_type, _values(name, col_name, pg_type, series, id_list)))
        geoms = np.asarray(gdf.geometry.values, dtype=object)
        geometry_sql, label = _geometry_declaration(geoms)
        wkb = shapely.to_wkb(shapely.set_srid(geoms, 4326), include_srid=True)
        return cls(name, fields, id_list, wkb, geometry_sql, label, _tiling(geoms))

    def columns_sql(self, *, tiling: bool = False) -> sql.Composed:
        """The layer table's columns, or (``tiling``) its side table's."""
        defs = [sql.SQL("{} text NOT NULL").format(sql.Identifier(ID_COLUMN))]
        defs += [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t, _ in self.fields]
        if tiling:  # any type: clamping to the Mercator latitudes can turn a polygon into a multipolygon
            defs.append(sql.SQL("{} smallint NOT NULL, {} geometry(Geometry,3857)").format(
                *map(sql.Identifier, HIDDEN_COLUMNS)))
        else:
            defs.append(sql.SQL("{} {}").format(sql.Identifier(GEOMETRY_COLUMN), sql.SQL(self.geometry_sql)))
        return sql.SQL(", ").join(defs)

    def copy_into(self, conn: psycopg.Connection, schema: str, table: str) -> None:
        """The rows into ``table``, and again with their tiling columns into its side table."""
        # Geometry goes over as EWKB labelled bytea: the server's geometry_recv parses it.
        attributes = [(ID_COLUMN, "text", self.ids), *self.fields]
        self._copy(conn, sql.Identifier(schema, table), [*attributes, (GEOMETRY_COLUMN, "bytea", self.wkb)])
        self._copy(conn, sql.Identifier(schema, tiling_table(table)),
                   [*attributes, (MINZOOM_COLUMN, "int2", self.tiling[0]), (MERCATOR_COLUMN, "bytea", self.tiling[1])])

    def _copy(self, conn: psycopg.Connection, table: sql.Identifier, columns: list[tuple[str, str, list]]) -> None:
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            table, sql.SQL(", ").join(sql.Identifier(c) for c, _, _ in columns))
        with conn.cursor() as cur, cur.copy(stmt) as copy:
            copy.set_types([t for _, t, _ in columns])
            i = 0
            try:
                for i, row in enumerate(zip(*(values for _, _, values in columns))):
                    copy.write_row(row)
            except (ValueError, TypeError, OverflowError, psycopg.DataError) as exc:
                if getattr(exc, "sqlstate", None):
                    raise  # the server's own error, not this row's
                raise StoreError(f"layer {self.name!r}: feature id {self.ids[i]!r} cannot be stored: {exc}; "
                                 "the previous layer is unchanged") from None


def _tiling(geoms: np.ndarray) -> tuple[list, list]:
    """Each feature's first drawn zoom and its 2D Web Mercator EWKB, as the PMTiles build projects it."""
    from tiles.mvt_geometry import web_mercator
    from tiles.mvt_zoom import first_drawn_zoom

    merc = shapely.force_2d(web_mercator(geoms))
    minzoom = first_drawn_zoom(merc, DEEPEST_ZOOM)
    return minzoom.tolist(), shapely.to_wkb(shapely.set_srid(merc, 3857), include_srid=True).tolist()


def _values(layer: str, col: str, pg_type: str, series: pd.Series, ids: list[str]) -> list:
    """The column's values as Python objects COPY can send; missing values become None."""
    missing = series.isna().to_numpy()
    if pg_type == "double precision":
        vals = series.to_numpy(dtype="float64", na_value=np.nan).tolist()
    elif pg_type == "bigint":
        vals = [None if m else int(v) for v, m in zip(series.tolist(), missing)]
    elif pg_type == "boolean":
        vals = [None if m else bool(v) for v, m in zip(series.tolist(), missing)]
    elif pg_type == "timestamptz":
        stamps = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
        vals = [None if m else v.to_pydatetime() for v, m in zip(stamps.tolist(), missing)]
    elif pg_type == "date":
        vals = series.tolist()  # datetime.date values
    else:
        vals = [None if m else _text(layer, col, v, fid) for v, m, fid in zip(series.tolist(), missing, ids)]
    return [None if m else v for v, m in zip(vals, missing)]


def _text(layer: str, col: str, value: object, fid: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float, decimal.Decimal, np.generic)):
        return str(value)
    if isinstance(value, (_dt.date, _dt.time, pd.Timestamp)):
        return value.isoformat()
    raise StoreError(
        f"layer {layer!r}: field {col!r} of feature id {fid!r} holds a {type(value).__name__}, "
        "which cannot be stored as text; convert that field to strings first"
    )


def _check_field_name(layer: str, col: object) -> str:
    if not isinstance(col, str) or not col or "\x00" in col:
        raise StoreError(f"layer {layer!r}: field name {col!r} is not usable; rename it to a non-empty string")
    if len(col.encode("utf-8")) > PG_IDENT_MAX:
        raise StoreError(f"layer {layer!r}: field name {col!r} is longer than {PG_IDENT_MAX} bytes; shorten it")
    if col == GEOMETRY_COLUMN:
        raise StoreError(f"layer {layer!r}: a non-geometry field is named {col!r}; rename it")
    if col in HIDDEN_COLUMNS:
        raise StoreError(f"layer {layer!r}: the field name {col!r} is the store's own; rename that field")
    return col


def _geometry_declaration(geoms: np.ndarray) -> tuple[str, str]:
    """Column type (``geometry(Polygon,4326)``...) and label in pyogrio's words ('Polygon Z', 'Unknown')."""
    present = geoms[~shapely.is_missing(geoms)]
    z = shapely.has_z(present)
    if z.any() and not z.all():
        # PostGIS typmods fix the dimension; a layer mixing 2D and 3D needs an untyped column.
        return "geometry CHECK (ST_SRID(geometry) = 4326)", "Unknown"
    zs = "Z" if len(z) and z.all() else ""
    kinds = {_TYPE_NAMES[int(t)] for t in np.unique(shapely.get_type_id(present))}
    if len(kinds) == 1:
        kind = kinds.pop()
        return f"geometry({kind}{zs},4326)", f"{kind} Z" if zs else kind
    return f"geometry(Geometry{zs},4326)", "Unknown"


def tiling_table(table: str) -> str:
    """The side table holding ``table``'s tiling columns, within 63 bytes (a hash when shortened)."""
    full = TILING_PREFIX + table
    if len(full) <= PG_IDENT_MAX:
        return full
    return f"{full[:PG_IDENT_MAX - 9]}_{hashlib.sha1(full.encode()).hexdigest()[:8]}"


def _index_name(table: str, suffix: str) -> str:
    """``table + suffix`` kept within 63 bytes, made unique by a hash when shortened."""
    full = table + suffix
    if len(full) <= PG_IDENT_MAX:
        return full
    digest = hashlib.sha1(full.encode()).hexdigest()[:8]
    return f"{table[:PG_IDENT_MAX - len(suffix) - 9]}_{digest}{suffix}"


def _check_bbox(bbox: Sequence[float]) -> list[float]:
    try:
        vals = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise StoreError(f"bbox {bbox!r} must be four numbers: minlon, minlat, maxlon, maxlat") from None
    if len(vals) != 4 or not all(map(math.isfinite, vals)) or vals[0] > vals[2] or vals[1] > vals[3]:
        raise StoreError(f"bbox {bbox!r} must be four finite numbers: minlon, minlat, maxlon, maxlat")
    return vals


def _reason(exc: BaseException) -> str:
    """The first line of a database error, which is the useful part."""
    text = str(exc).strip().splitlines()
    diag = getattr(exc, "diag", None)
    context = getattr(diag, "context", None) if diag is not None else None
    detail = getattr(diag, "message_detail", None) if diag is not None else None
    first = text[0] if text else type(exc).__name__
    extra = "; ".join(x.strip() for x in (detail, context) if x)
    return f"{first} ({extra})" if extra else first

