"""The one SQL statement of the Features fast path: a page of items, its count, written by PostGIS.

Nothing the client wrote is pasted into the statement: sort keys are identifiers of the
layer's own columns (checked against them first), the selected properties and every value
are bound parameters, and a CQL2 filter is the bounded translator's clause (api.cql2.to_sql,
the one pygeoapi's provider runs) compiled with bound parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import psycopg
from psycopg import sql
from sqlalchemy import BigInteger, Boolean, Date, DateTime, Double, Text, column, table
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from api.cql2.crs import in_storage_crs
from api.cql2.parse import FilterError, parse_text
from api.cql2.to_sql import Column, to_clause
from pipelines.store.base import GEOMETRY_COLUMN, ID_COLUMN
from pipelines.store.postgis import HIDDEN_COLUMNS

STORAGE_SRID = 4326  # the store's geometry column (pipelines.store.postgis)
ALIAS = "p"  # the table's name in the statement; the compiled filter refers to it
# PostgreSQL type oid -> (SQLAlchemy type, queryable kind, is a date), for the types the store writes
_TYPES = {25: (Text, "string", False), 701: (Double, "number", False), 20: (BigInteger, "number", False),
          16: (Boolean, "boolean", False), 1184: (DateTime(timezone=True), "instant", False),
          1082: (Date, "instant", True)}
_DIALECT = pg_dialect.dialect()


@dataclass(frozen=True)
class LayerColumns:
    """The layer's columns but the geometry, in table order, with their type oids."""

    names: tuple[str, ...]
    oids: tuple[int, ...]


@dataclass(frozen=True)
class Where:
    """Conditions on the rows: a bbox in the storage CRS and a compiled filter, each optional."""

    bbox: tuple[float, float, float, float] | None
    filter_sql: str | None
    filter_params: tuple[tuple[str, object], ...]


def read_columns(conn: psycopg.Connection, table_id: sql.Identifier) -> LayerColumns:
    cursor = conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(table_id))
    pairs = [(d.name, d.type_code) for d in cursor.description
             if d.name != GEOMETRY_COLUMN and d.name not in HIDDEN_COLUMNS]
    return LayerColumns(tuple(n for n, _ in pairs), tuple(o for _, o in pairs))


@lru_cache(maxsize=64)  # clients repeat a filter over many pages and boxes; parsing and compiling cost ~3 ms
def compiled_filter(columns: LayerColumns, text: str, filter_crs: str,
                    storage_crs: str) -> tuple[str, tuple[tuple[str, object], ...]]:
    """A cql2-text filter as SQL with %(name)s parameters, and the parameters.
    FilterError for a filter that does not fit the layer (pygeoapi then answers it)."""
    if any(oid not in _TYPES for oid in columns.oids):
        raise FilterError("a column of a type the translator does not know")
    parsed = in_storage_crs(parse_text(text), filter_crs, storage_crs)
    model = table(ALIAS, *[column(n, _TYPES[o][0]) for n, o in zip(columns.names, columns.oids)],
                  column(GEOMETRY_COLUMN))
    queryables = {n: Column(model.c[n], _TYPES[o][1], _TYPES[o][2]) for n, o in zip(columns.names, columns.oids)}
    compiled = to_clause(parsed, queryables, model.c[GEOMETRY_COLUMN], STORAGE_SRID).compile(dialect=_DIALECT)
    return str(compiled), tuple(compiled.params.items())


def statement(table_id: sql.Identifier, where: Where, sortby: list[tuple[str, bool]],
              wkb: bool) -> tuple[sql.Composed, dict]:
    """The statement and its parameters (but ff_limit, ff_offset, ff_drop).

    Its one row: numberMatched, numberReturned, then either the features as a GeoJSON array
    (geometry in CRS84 by PostGIS) or, with ``wkb``, arrays of ids (JSON), WKB geometries and
    properties (JSON) for a transform into another CRS. Sorting ends with the id, so pages
    with equal sort keys do not overlap."""
    conditions, params = [], {}
    if where.bbox is not None:
        envelope = sql.SQL("ST_MakeEnvelope(%(ff_x0)s, %(ff_y0)s, %(ff_x1)s, %(ff_y1)s, {})").format(
            sql.Literal(STORAGE_SRID))
        conditions.append(sql.SQL("{a}.{g} && {e} AND ST_Intersects({a}.{g}, {e})").format(
            a=sql.Identifier(ALIAS), g=sql.Identifier(GEOMETRY_COLUMN), e=envelope))
        params.update(zip(("ff_x0", "ff_y0", "ff_x1", "ff_y1"), where.bbox))
    if where.filter_sql is not None:
        conditions.append(sql.SQL("({})").format(sql.SQL(where.filter_sql)))
        params.update(where.filter_params)
    order = sql.SQL(", ").join(
        [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL("DESC" if desc else "ASC")) for name, desc in sortby]
        + [sql.Identifier(ID_COLUMN)])
    props = sql.SQL("to_jsonb(p) - %(ff_drop)s::text[]")
    if wkb:
        select = sql.SQL("array_agg(to_json(p.{i})::text ORDER BY {o}), array_agg(ST_AsBinary(p.{g}) ORDER BY {o}), "
                         "array_agg(({props})::text ORDER BY {o})")
    else:
        select = sql.SQL("coalesce(json_agg(json_build_object('type', 'Feature', 'id', p.{i}, "
                         "'geometry', ST_AsGeoJSON(p.{g}, 15)::json, 'properties', {props}) ORDER BY {o}), '[]')::text")
    query = sql.SQL("""
WITH hits AS {materialized} (SELECT {a}.* FROM {table} AS {a} WHERE {where}),
page AS (SELECT * FROM hits ORDER BY {o} LIMIT %(ff_limit)s OFFSET %(ff_offset)s)
SELECT (SELECT count(*) FROM hits), count(*), {select} FROM page AS p""").format(
        # a bbox bounds the hits: count and page share one scan; else each plans its own (the page an index)
        materialized=sql.SQL("MATERIALIZED" if where.bbox is not None else "NOT MATERIALIZED"),
        a=sql.Identifier(ALIAS), table=table_id,
        where=sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE"), o=order,
        select=select.format(i=sql.Identifier(ID_COLUMN), g=sql.Identifier(GEOMETRY_COLUMN), o=order, props=props))
    return query, params
