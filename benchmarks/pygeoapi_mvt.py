"""Why pygeoapi's MVT-postgresql tiles take seconds: its own query against the same query with integer SRIDs.

pygeoapi 0.21.0's MVTPostgreSQLProvider writes the SRIDs into its SQL as text
(``get_crs_from_uri(...).to_string()`` gives 'EPSG:3857'), so PostgreSQL picks PostGIS's
``ST_Transform(geometry, text)``, which builds a PROJ transformation for every row it
transforms. The spatial filter is folded to a constant once, so the cost grows with the
rows in the tile, not with the table. The provider (configured as pygeoapi documents it,
zoom options only) is timed on a few tiles, then the SQL it sends, once as sent and once
with the SRIDs as integers, under EXPLAIN ANALYZE.
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

from psycopg import sql

TILE_SQL = """WITH mvtrow AS (
  SELECT ST_AsMVTGeom(ST_Transform(ST_CurveToLine(geometry), {out}), ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s), {out})) AS mvtgeom, t.*
  FROM {table} t WHERE geometry && ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s), {storage}))
SELECT ST_AsMVT(mvtrow, 'layer') FROM mvtrow"""


def provider_def(db_url: str, table: str) -> dict:
    p = urlsplit(db_url)
    return {"type": "tile", "name": "MVT-postgresql", "id_field": "id", "table": table, "geom_field": "geometry",
            "data": {"host": p.hostname, "port": p.port, "dbname": p.path.lstrip("/"), "user": p.username,
                     "search_path": ["public"]},
            "options": {"zoom": {"min": 10, "max": 16}},
            "format": {"name": "pbf", "mimetype": "application/vnd.mapbox-vector-tile"}}


def _explain_ms(conn, table: str, out, storage, z: int, x: int, y: int) -> float:
    query = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) " + TILE_SQL).format(out=out, storage=storage,
                                                                        table=sql.Identifier(table))
    plan = conn.execute(query, {"z": z, "x": x, "y": y}).fetchone()[0]
    return float(plan[0]["Execution Time"])


def diagnose(db_url: str, table: str, tiles: list[tuple[int, int, int]]) -> dict:
    """Per tile: the provider's seconds, rows, and the server time of its SQL with text and with integer SRIDs."""
    import psycopg
    from pygeoapi.provider.mvt_postgresql import MVTPostgreSQLProvider

    provider = MVTPostgreSQLProvider(provider_def(db_url, table))
    out = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        for z, x, y in tiles:
            t0 = time.perf_counter()
            data = provider.get_tiles(table, "WebMercatorQuad", z, y, x, "mvt")
            secs = time.perf_counter() - t0
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE geometry && ST_Transform(ST_TileEnvelope"
                                        "(%s, %s, %s), 4326)").format(sql.Identifier(table)), (z, x, y)).fetchone()[0]
            out.append({"tile": f"{z}/{x}/{y}", "rows": rows, "provider_s": secs, "bytes": len(data or b""),
                        "sql_text_srid_ms": _explain_ms(conn, table, sql.Literal("EPSG:3857"),
                                                        sql.Literal("EPSG:4326"), z, x, y),
                        "sql_integer_srid_ms": _explain_ms(conn, table, sql.Literal(3857), sql.Literal(4326), z, x, y)})
    return {"table": table, "tiles": out,
            "provider_config": {k: v for k, v in provider_def(db_url, table).items() if k != "data"}}
