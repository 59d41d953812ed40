"""TileSource over a PostGIS store table: MVT made per request with ST_AsMVT.

The table read is the store's tiling side table of the layer (its id and attributes, see
pipelines.store.postgis): rows are found with ``<Web Mercator geometry> && <tile envelope>``,
which its GiST index answers, and ``<first drawn zoom> <= z``, so nothing is transformed and
features the PMTiles build finds too small to draw at z are never read. A table published
before the side table is read as before: ``geometry`` (EPSG:4326) against the envelope in
lon/lat, and only those rows transformed.
Identifiers go through psycopg.sql.Identifier; z/x/y are bound parameters of a
statement psycopg prepares on each pooled connection. Every read goes through a PoolAccess,
so a database outage is a StoreUnavailableError (the server answers 503), never a hang.
``tile`` and ``info`` read on a thread; ``tile_on`` and ``version_on`` run the same statements
on an AsyncConnection the caller holds, so the tile route reads on the event loop without a
worker-thread hop per tile (see benchmarks/notes.md).

A tile over MAX_TILE_BYTES (uncompressed) is made again from the largest features only
(by Mercator area, or length for lines, as the PMTiles build ranks them; ties by id), with the count cut in proportion until it fits: the
same rule as the PMTiles build, so a low zoom over a dense city stays a usable tile. The first
cut is made in the statement that found the tile too big, from the rows it already clipped.
Every tile's features are in id order, so a tile is the same bytes whatever order the rows are
stored or scanned in.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from typing import TypeVar

import psycopg

from psycopg import sql
from psycopg_pool import ConnectionPool

from geo.errors import StoreError
from geo.names import check_layer_name
from pipelines.store.base import GEOMETRY_COLUMN, ID_COLUMN
from pipelines.store.postgis import HIDDEN_COLUMNS, MERCATOR_COLUMN, MINZOOM_COLUMN, tiling_table
from pipelines.store.pg_access import PoolAccess
from tiles.mvt_zoom import zoom_tolerance
from tiles.source import MAX_TILE_BYTES, TileSetInfo

log = logging.getLogger(__name__)
T = TypeVar("T")

EXTENT = 4096
BUFFER = 64
META_TABLE = "citytwin_layers"
_MVT_FIELD_TYPES = {"text": "String", "double precision": "Number", "bigint": "Number",
                    "integer": "Number", "smallint": "Number", "real": "Number", "numeric": "Number",
                    "boolean": "Boolean"}
_MAX_THINNING_ROUNDS = 6
_SIMPLIFY_BELOW_ZOOM = 14


class PostGISTileSource:
    """Dynamic vector tiles of one PostGIS store layer."""

    def __init__(self, pool: ConnectionPool, layer: str, minzoom: int, maxzoom: int,
                 fields: list[str] | None = None, *, schema: str = "public", max_tile_bytes: int = MAX_TILE_BYTES,
                 access: PoolAccess | None = None):
        """``access`` is the store's shared PoolAccess over ``pool`` (one is made when not given)."""
        self.pool = pool
        self.access = access or PoolAccess(pool, "the store")
        self.layer = check_layer_name(layer)
        self.schema = check_layer_name(schema)
        if not 0 <= minzoom <= maxzoom <= 24:
            raise StoreError(f"layer {layer!r}: zooms {minzoom}-{maxzoom} are invalid")
        self.minzoom, self.maxzoom = minzoom, maxzoom
        self._table = sql.Identifier(self.schema, self.layer)
        self._tiling = sql.Identifier(self.schema, tiling_table(self.layer))
        columns = self._columns(self._table)
        if not columns:
            raise StoreError(f"layer {layer!r} has no table {self.schema}.{layer}; ingest it first")
        # an older publish may have left the tiling columns inside the layer table: never fields
        available = {c: t for c, t in columns if c != GEOMETRY_COLUMN and c not in HIDDEN_COLUMNS}
        self.stored_mercator = set(HIDDEN_COLUMNS) <= {c for c, _ in self._columns(self._tiling)}
        if ID_COLUMN not in available:
            raise StoreError(f"layer {layer!r}: table has no {ID_COLUMN!r} column; re-ingest it")
        wanted = list(available) if fields is None else [ID_COLUMN] + [f for f in fields if f != ID_COLUMN]
        missing = [f for f in wanted if f not in available]
        if missing:
            raise StoreError(
                f"layer {layer!r}: fields {missing} are listed to publish but the table has only "
                f"{', '.join(available)}; fix 'fields' in citytwin.yaml"
            )
        self.fields = {f: _MVT_FIELD_TYPES.get(available[f], "String") for f in wanted}
        self.max_tile_bytes = max_tile_bytes
        # rendered once: a Composed statement is rendered again on every execution (5 % of the
        # event loop's busy time under load, benchmarks/notes.md)
        self._query, self._thinned_query = self.access.run(lambda conn: tuple(
            self._tile_query(list(self.fields), thinned=thinned).as_bytes(conn) for thinned in (False, True)))
        self._bounds_cache: tuple[int, tuple[float, float, float, float]] | None = None
        self._lock = threading.Lock()
        self._version_query = sql.SQL("SELECT version FROM {} WHERE name = %s").format(
            sql.Identifier(self.schema, META_TABLE))

    def _read(self, work: Callable[[psycopg.Connection], T]) -> T:
        return self.access.run(lambda conn: _autocommit(conn, work))

    def _columns(self, table: sql.Identifier) -> list[tuple[str, str]]:
        q = ("SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
             "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")
        return self.access.run(
            lambda conn: [(r[0], r[1]) for r in conn.execute(q, [table.as_string(conn)]).fetchall()])

    def _tile_query(self, fields: list[str], *, thinned: bool) -> sql.Composed:
        """The tile, how many features it holds and how many the whole tile held.

        Not ``thinned``: every feature; a tile over %(budget)s bytes is made again in the same
        statement from the largest features only, from the rows already clipped (the count cut
        in proportion, as _fitting does), so the heaviest tiles are not scanned and clipped twice.
        ``thinned`` keeps only the %(keep)s largest features, chosen before any of them is clipped."""
        attrs = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(f)) for f in fields)
        if self.stored_mercator:
            geom = sql.SQL("t.{}").format(sql.Identifier(MERCATOR_COLUMN))
            where = sql.SQL("{geom} && env.box AND t.{minzoom} <= %(z)s::int").format(
                geom=geom, minzoom=sql.Identifier(MINZOOM_COLUMN))
            box = sql.SQL("ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int, margin => %(margin)s::float8)")
            size = sql.SQL("GREATEST(ST_Area({g}), ST_Length({g}))").format(g=geom)
        else:  # a table published before the tiling columns
            lonlat = sql.SQL("t.{}").format(sql.Identifier(GEOMETRY_COLUMN))
            geom = sql.SQL("ST_Transform({}, 3857)").format(lonlat)
            where = sql.SQL("{} && env.box").format(lonlat)
            box = sql.SQL("ST_Transform(ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int, "
                          "margin => %(margin)s::float8), 4326)")
            size = sql.SQL("ST_Area({g}) + ST_Length({g})").format(g=lonlat)
        table = self._tiling if self.stored_mercator else self._table
        source = sql.SQL("{table} t, env WHERE {where}").format(table=table, where=where)
        id_ = sql.Identifier(ID_COLUMN)
        if thinned:
            source = sql.SQL("(SELECT t.* FROM {source} ORDER BY {size} DESC, t.{id} LIMIT %(keep)s::bigint) t, env"
                             ).format(source=source, size=size, id=id_)
        # tol is 0 at high zooms, where the CASE skips ST_Simplify. Casts keep one prepared plan.
        head = sql.SQL(
            "WITH env AS (SELECT ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int) AS merc, {box} AS box), "
            "rows AS MATERIALIZED (SELECT {attrs}, {rank}ST_AsMVTGeom("
            "CASE WHEN %(tol)s::float8 > 0 THEN ST_SimplifyPreserveTopology({geom}, %(tol)s::float8) ELSE {geom} END, "
            "env.merc, {extent}, {buffer}, true) AS mvt_geom "
            "FROM {source})"
        ).format(attrs=attrs, rank=sql.SQL("") if thinned else sql.SQL("{} AS mvt_rank, ").format(size), geom=geom,
                 box=box, source=source, extent=sql.Literal(EXTENT), buffer=sql.Literal(BUFFER))
        # fed by id: ST_AsMVT's feature order and value dictionary follow its input, and the whole
        # tile's size sets how many features a thinned one keeps, so the scan order must not count.
        # Byte order ("C"): the same on every server, and cheaper than a language's collation.
        mvt = sql.SQL("ST_AsMVT(q, %(layer)s::text, {extent}, 'mvt_geom' ORDER BY q.{id}::text COLLATE \"C\")").format(
            extent=sql.Literal(EXTENT), id=id_)
        if thinned:
            return sql.SQL("{head} SELECT {mvt}, count(*), NULL::bigint FROM rows q WHERE mvt_geom IS NOT NULL"
                           ).format(head=head, mvt=mvt)
        named = sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(f)) for f in fields)

        def drawn(rows: sql.Composable) -> sql.Composed:  # the fields and geometry of rows with a geometry left
            return sql.SQL("SELECT {}, r.mvt_geom FROM {} r WHERE r.mvt_geom IS NOT NULL").format(named, rows)

        largest = sql.SQL("(SELECT * FROM rows ORDER BY mvt_rank DESC, {} LIMIT (SELECT keep FROM cut))").format(id_)
        return sql.SQL(
            "{head}, whole AS MATERIALIZED (SELECT {mvt} AS tile, count(*) AS n FROM ({all_rows}) q), "
            "cut AS (SELECT length(tile) > %(budget)s::int AND n > 1 AS over, GREATEST(1, LEAST(n - 1, "
            "floor(n::float8 * %(budget)s::int / NULLIF(length(tile), 0) * 0.9)))::bigint AS keep FROM whole), "
            "thinned AS (SELECT {mvt} AS tile, count(*) AS n FROM ({largest}) q WHERE (SELECT over FROM cut)) "
            "SELECT CASE WHEN c.over THEN h.tile ELSE w.tile END, CASE WHEN c.over THEN h.n ELSE w.n END, w.n "
            "FROM whole w, cut c, thinned h"
        ).format(head=head, mvt=mvt, all_rows=drawn(sql.SQL("rows")), largest=drawn(largest))

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """Uncompressed MVT bytes of tile z/x/y (at most ``max_tile_bytes``), or None when no
        feature falls in it."""
        def read(conn: psycopg.Connection) -> bytes | None:
            steps = self._fitting(z, x, y)
            try:
                query, params = next(steps)
                while True:
                    query, params = steps.send(_row(conn.execute(query, params, prepare=True, binary=True).fetchone()))
            except StopIteration as done:
                return done.value
        return None if self._params(z, x, y) is None else self._read(read)

    async def tile_on(self, conn: psycopg.AsyncConnection, z: int, x: int, y: int) -> bytes | None:
        """``tile(z, x, y)`` read on ``conn`` (autocommit), from a coroutine."""
        if self._params(z, x, y) is None:
            return None
        steps = self._fitting(z, x, y)
        try:
            query, params = next(steps)
            while True:
                cur = await conn.execute(query, params, prepare=True, binary=True)
                query, params = steps.send(_row(await cur.fetchone()))
        except StopIteration as done:
            return done.value

    def _params(self, z: int, x: int, y: int) -> dict | None:
        """The tile query's parameters, or None for an address outside the layer's zooms or the grid."""
        if not (self.minzoom <= z <= self.maxzoom and 0 <= x < (1 << z) and 0 <= y < (1 << z)):
            return None
        # below z14 simplified as the PMTiles build does (about a tile pixel); from z14 the saving
        # in bytes is ~0 and ST_SimplifyPreserveTopology costs a third of the floor (benchmarks/notes.md)
        tol = zoom_tolerance(z, self.maxzoom) if z < _SIMPLIFY_BELOW_ZOOM else 0.0
        return {"z": z, "x": x, "y": y, "margin": BUFFER / EXTENT, "layer": self.layer, "tol": tol,
                "budget": self.max_tile_bytes}

    def _fitting(self, z: int, x: int, y: int) -> Generator[tuple[bytes, dict], tuple[bytes, int, int], bytes | None]:
        """The statements that make the tile under ``max_tile_bytes``: yields each (query, params),
        is sent its (MVT bytes, feature count, whole tile's count), returns the tile. One rule for
        both drivers; the first statement already made the first cut of an over-budget tile."""
        params = self._params(z, x, y)
        data, count, full = yield self._query, params
        rounds = int(count < full)
        while len(data) > self.max_tile_bytes and count > 1 and rounds < _MAX_THINNING_ROUNDS:
            # keep a share of the features in proportion to the overshoot, a little under
            params["keep"] = max(1, min(count - 1, int(count * self.max_tile_bytes / len(data) * 0.9)))
            data, count, _ = yield self._thinned_query, params
            rounds += 1
        if rounds:
            log.info("tile %s/%d/%d/%d: kept the %d largest of %d features to stay under %d kB (%d kB)",
                     self.layer, z, x, y, count, full, self.max_tile_bytes // 1000, len(data) // 1000)
        return data or None

    def _version(self) -> int:
        return self._checked(self._read(lambda conn: conn.execute(
            self._version_query, [self.layer], prepare=True).fetchone()))

    async def version_on(self, conn: psycopg.AsyncConnection) -> int:
        """The layer's version (it grows with every publish), read on ``conn``."""
        cur = await conn.execute(self._version_query, [self.layer], prepare=True)
        return self._checked(await cur.fetchone())

    def _checked(self, row: tuple | None) -> int:
        if row is None:
            raise StoreError(f"layer {self.layer!r} is not in the store; ingest it first")
        return int(row[0])

    def _bounds(self, version: int) -> tuple[float, float, float, float]:
        with self._lock:
            if self._bounds_cache and self._bounds_cache[0] == version:
                return self._bounds_cache[1]
        q = sql.SQL("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                    "(SELECT ST_Extent({}) AS e FROM {}) s").format(sql.Identifier(GEOMETRY_COLUMN), self._table)
        row = self._read(lambda conn: conn.execute(q).fetchone())
        bounds = (-180.0, -85.0511287798066, 180.0, 85.0511287798066) if row[0] is None else \
            tuple(float(v) for v in row)
        with self._lock:
            self._bounds_cache = (version, bounds)
        return bounds

    def info(self) -> TileSetInfo:
        version = self._version()
        bounds = self._bounds(version)
        center = ((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2,
                  min(max(self.minzoom, 14), self.maxzoom))
        vector_layers = [{"id": self.layer, "fields": dict(self.fields),
                          "minzoom": self.minzoom, "maxzoom": self.maxzoom}]
        return TileSetInfo(layer=self.layer, minzoom=self.minzoom, maxzoom=self.maxzoom, bounds=bounds,
                           center=center, vector_layers=vector_layers, etag_seed=self.etag_seed(version))

    def etag_seed(self, version: int) -> str:
        """What the tiles' ETags follow: this table at ``version``."""
        return f"postgis-{self.schema}.{self.layer}-v{version}"


def _row(row: tuple | None) -> tuple[bytes, int, int]:
    """(MVT bytes, feature count, the whole tile's feature count) of a tile query's row."""
    data = bytes(row[0]) if row and row[0] is not None else b""
    count = int(row[1]) if row and row[1] is not None else 0
    return data, count, count if not row or row[2] is None else int(row[2])


def _autocommit(conn: psycopg.Connection, work: Callable[[psycopg.Connection], T]) -> T:
    """``work(conn)`` outside a transaction: tile reads are single statements, and the COMMIT the
    pool would send after them is one more round trip per tile, waiting for a busy server."""
    conn.autocommit = True
    try:
        return work(conn)
    finally:
        if not conn.broken:
            conn.autocommit = False
