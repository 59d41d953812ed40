"""How each HTTP server under test is started, on the same PostGIS table.

- ours: ``citytwin serve`` on a project whose store is the benchmark PostGIS;
- tipg: ``uvicorn tipg.main:app`` from the peers venv, restricted to that table;
- pygeoapi: a plain pygeoapi (its Starlette app under uvicorn, from our venv) with its own
  YAML and the PostgreSQL feature provider, configured as its documentation shows.

Every server is one uvicorn process (one worker), logging at warning level, except in P2's
two-process line (part ``p2_two``), where ours and tipg both run two. PEERS says, for
the report, how each peer is run and why; the database settings are benchmarks.common's.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from benchmarks.common import CITYTWIN, PEER_BIN, PY, WORK, Server, env_with

PEERS = {
    "tippecanoe (P1)": ("`-Z10 -z16 -l LAYER --drop-smallest-as-needed`, FlatGeobuf input",
                        "its README's way to keep a polygon layer's tiles under the size limit by leaving out the "
                        "smallest features, which is the rule ours applies; same zoom range and layer name"),
    "tipg (P2)": ("`uvicorn tipg.main:app`, one worker; `TIPG_DB_TABLES`/`TIPG_DB_SCHEMAS` name the one table; "
                  "its default pool and tile settings",
                  "its documentation's way to publish a chosen table; one process, as ours runs "
                  "(P2's two-process line gives both `--workers 2`)"),
    "pygeoapi Features (P5)": ("PostgreSQL provider with `data`, `id_field`, `table`, `geom_field`, `storage_crs` "
                               "CRS84", "the provider's documented connection example; the table is lon/lat"),
    "pygeoapi MVT-postgresql (P2)": ("not run", "diagnosed, see the P2 section: pygeoapi 0.21.0 (the newest release on "
                                     "PyPI) passes SRIDs as text ('EPSG:3857'), which selects PostGIS's "
                                     "ST_Transform(geometry, text) and builds a PROJ transformation for every row; "
                                     "no configuration option changes that, so a ratio would measure that bug"),
    "py3dtiles (P3)": ("`py3dtiles export -D CONNINFO -t TABLE -c geom -i id`",
                       "its documented PostGIS export; it needs 3D geometry, so it reads a pre-extruded table"),
    "exactextract (exposure)": ("`exact_extract(tif, gpkg, ['max', 'mean'], output='pandas', "
                                "strategy='raster-sequential')` with GDAL's Python bindings",
                                "the documented call for zonal statistics from files, through GDAL (its first "
                                "choice of reader); raster-sequential is the strategy its performance notes offer "
                                "for many features over one raster, and ran twice as fast as the default here"),
}


def ours(project: Path, db_url: str, processes: int = 1) -> Server:
    """Measured once /ready says its background start-up work (the AR index, a minute of one core on
    the 600k city) is done in every process: before that it shares the CPU with the requests."""
    return Server("ours", lambda port: [str(CITYTWIN), "serve", "--project", str(project), "--port", str(port),
                                        "--workers", str(processes)],
                  env_with(CITYTWIN_DATABASE_URL=db_url), "/ready", consecutive=10 * processes)


def tipg(db_url: str, table: str, processes: int = 1) -> Server:
    env = env_with(DATABASE_URL=db_url, TIPG_DB_TABLES=f'["public.{table}"]', TIPG_DB_SCHEMAS='["public"]')
    return Server("tipg", lambda port: [str(PEER_BIN / "uvicorn"), "tipg.main:app", "--port", str(port),
                                        "--workers", str(processes), "--log-level", "warning", "--no-access-log"],
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
                 "geom_field": "geometry", "storage_crs": crs84,
                 # the output CRSs P5 asks for (OGC API Features Part 2), as ours offers them
                 "crs": [crs84, "http://www.opengis.net/def/crs/EPSG/0/5186"]}
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
