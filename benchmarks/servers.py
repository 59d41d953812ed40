"""How each HTTP server under test is started, on the same PostGIS table.

- ours: ``citytwin serve`` on a project whose store is the benchmark PostGIS;
- tipg: ``uvicorn tipg.main:app`` from the peers venv, restricted to that table;
- pygeoapi: a plain pygeoapi (its Starlette app under uvicorn, from our venv) with its own
  YAML: the PostgreSQL feature provider and the MVT-postgresql tile provider.

Every server is one uvicorn process (one worker), logging at warning level.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import yaml

import os

from benchmarks.common import CITYTWIN, PEER_BIN, PY, WORK, Server, env_with

# The table's SRID, so the provider's envelope transform yields SRID 4326 (overridable to test).
STORAGE_CRS_TILES = os.environ.get("BENCH_PYGEOAPI_TILE_CRS", "http://www.opengis.net/def/crs/EPSG/0/4326")


def ours(project: Path, db_url: str) -> Server:
    return Server("ours", lambda port: [str(CITYTWIN), "serve", "--project", str(project), "--port", str(port)],
                  env_with(CITYTWIN_DATABASE_URL=db_url), "/conformance?f=json")


def tipg(db_url: str, table: str) -> Server:
    env = env_with(DATABASE_URL=db_url, TIPG_DB_TABLES=f'["public.{table}"]', TIPG_DB_SCHEMAS='["public"]')
    return Server("tipg", lambda port: [str(PEER_BIN / "uvicorn"), "tipg.main:app", "--port", str(port),
                                        "--log-level", "warning", "--no-access-log"],
                  env, "/collections", cwd=WORK)


def pygeoapi_config(db_url: str, table: str, bounds: tuple[float, float, float, float],
                    port_placeholder: str = "PORT") -> dict:
    p = urlsplit(db_url)
    data = {"host": p.hostname, "port": p.port, "dbname": p.path.lstrip("/"), "user": p.username,
            "search_path": ["public"]}
    crs84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    return {
        "server": {"bind": {"host": "127.0.0.1", "port": 0}, "url": f"http://127.0.0.1:{port_placeholder}",
                   "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8", "gzip": False,
                   "languages": ["en-US"], "cors": False, "pretty_print": False,
                   "limits": {"default_items": 100, "max_items": 10000},
                   "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "OSM"}},
        "logging": {"level": "WARNING"},
        "metadata": {"identification": {"title": "plain pygeoapi", "description": "benchmark peer",
                                        "keywords": ["bench"], "keywords_type": "theme",
                                        "terms_of_service": "", "url": "http://example.org"},
                     "license": {"name": "none", "url": "http://example.org"},
                     "provider": {"name": "bench", "url": "http://example.org"}, "contact": {"name": "bench"}},
        "resources": {table: {
            "type": "collection", "title": table, "description": "benchmark table", "keywords": ["bench"],
            "links": [], "extents": {"spatial": {"bbox": list(bounds), "crs": crs84}},
            "providers": [
                {"type": "feature", "name": "PostgreSQL", "data": data, "id_field": "id", "table": table,
                 "geom_field": "geometry", "storage_crs": crs84},
                {"type": "tile", "name": "MVT-postgresql", "data": data, "id_field": "id", "table": table,
                 "geom_field": "geometry", "storage_crs": STORAGE_CRS_TILES,
                 # a dict, not the documented list: pygeoapi 0.21 passes every non-dict option to
                 # the database driver as a connection argument (a list breaks its cache, a
                 # string is refused by libpq); the provider only tests `scheme in schemes`
                 "options": {"zoom": {"min": 10, "max": 16}, "schemes": {"WebMercatorQuad": True}},
                 "format": {"name": "pbf", "mimetype": "application/vnd.mapbox-vector-tile"}},
            ]}},
    }


def pygeoapi(db_url: str, table: str, bounds) -> Server:
    cfg_dir = WORK / "pygeoapi"
    cfg_dir.mkdir(parents=True, exist_ok=True)

    def argv(port: int) -> list[str]:
        cfg = pygeoapi_config(db_url, table, bounds, str(port))
        cfg_path, oas_path = cfg_dir / "config.yml", cfg_dir / "openapi.yml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        with open(oas_path, "w") as out:
            subprocess.run([str(PY.parent / "pygeoapi"), "openapi", "generate", str(cfg_path)], stdout=out,
                           check=True, env=env_with(PYGEOAPI_CONFIG=str(cfg_path)), timeout=120)
        return [str(PY.parent / "uvicorn"), "pygeoapi.starlette_app:APP", "--port", str(port),
                "--log-level", "warning", "--no-access-log"]

    env = env_with(PYGEOAPI_CONFIG=str(cfg_dir / "config.yml"), PYGEOAPI_OPENAPI=str(cfg_dir / "openapi.yml"))
    return Server("pygeoapi", argv, env, "/conformance?f=json")
