"""Generate pygeoapi's configuration and OpenAPI document from the project catalog.

Nothing here is hand-kept: every collection, provider, extent and CRS list comes from
citytwin.yaml and the store. The files land in ``<build>/pygeoapi/`` because pygeoapi's
Starlette app reads them (through PYGEOAPI_CONFIG / PYGEOAPI_OPENAPI) when imported.

Providers per collection:
- features: our GeoPackageProvider on the embedded store (CQL2 evaluated over a bounded
  number of candidate rows), or pygeoapi's own PostgreSQL provider on PostGIS (CQL2 text
  and JSON filtering in SQL) under a statement_timeout;
- tiles: our CitytwinTileProvider whenever the layer has tiles (PMTiles built, or PostGIS).
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from api.placements import write_placements
from api.processes.config import process_manager, process_resources
from api.providers.gpkg_features import MAX_FILTER_ROWS
from api.pygeoapi_logs import quiet_pygeoapi
from api.tile_sources import TileRegistry
from geo.errors import StoreError
from pipelines.build import THREE_D_ONLY, TILES3D_DIR
from pipelines.catalog import Catalog
from pipelines.store import Store

LOG = logging.getLogger(__name__)

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
#: CRSs offered for ?crs= and bbox-crs (OGC API Features Part 2).
SUPPORTED_CRS = [
    CRS84,
    "http://www.opengis.net/def/crs/EPSG/0/4326",
    "http://www.opengis.net/def/crs/EPSG/0/3857",
    "http://www.opengis.net/def/crs/EPSG/0/5186",
    "http://www.opengis.net/def/crs/EPSG/0/5179",
]
PASSWORD_ENV = "CITYTWIN_PYGEOAPI_DB_PASSWORD"
CONFIG_DIR = "pygeoapi"
VIEWER_PATH = "/viewer/"
STATEMENT_TIMEOUT_MS = 30_000  # longest a feature query may run on PostGIS
EMBEDDED_FILTERS = (
    " Served from the embedded GeoPackage store: filter with bbox, property=value and CQL2 'filter' "
    f"parameters; a CQL2 filter considers at most {MAX_FILTER_ROWS:,} features, so narrow a larger layer "
    "with bbox, or serve it from PostGIS (CITYTWIN_DATABASE_URL)."
)


@dataclass(frozen=True)
class GeneratedConfig:
    config: dict
    config_path: Path
    openapi_path: Path


def base_url(catalog: Catalog, host: str, port: int) -> str:
    """Public base URL: the catalog's server.url, else http://HOST:PORT."""
    if catalog.server.url:
        return catalog.server.url.rstrip("/")
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"  # IPv6 literal
    return f"http://{shown}:{port}"


def postgres_data(url: str) -> tuple[dict, dict]:
    """pygeoapi PostgreSQL provider ``data`` and ``options`` from a postgresql:// URL.

    The password is not written to disk: the config names an environment variable
    (pygeoapi expands ``${VAR}`` when it loads the file), set by ``generate``.
    """
    parts = urlsplit(url)
    data = {
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "dbname": unquote(parts.path.lstrip("/")) or "postgres",
        "user": unquote(parts.username or "postgres"),
        "search_path": ["public"],
    }
    if parts.password:
        data["password"] = "${" + PASSWORD_ENV + "}"
    options = {k: v for k, v in parse_qsl(parts.query)}
    return data, options


def with_statement_timeout(options: dict) -> dict:
    """Connection options that make PostgreSQL stop any statement after STATEMENT_TIMEOUT_MS,
    so no request holds a connection for minutes (kept beside options from the URL)."""
    setting = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
    return {**options, "options": f"{options['options']} {setting}" if options.get("options") else setting}


def _bbox(bounds: tuple[float, float, float, float]) -> list[float]:
    if len(bounds) == 4 and all(math.isfinite(b) for b in bounds):
        return [round(float(b), 7) for b in bounds]
    return [-180.0, -90.0, 180.0, 90.0]


def _feature_provider(catalog: Catalog, store: Store, layer: str) -> dict:
    common = {
        "type": "feature",
        "id_field": "id",
        "crs": list(SUPPORTED_CRS),
        "storage_crs": CRS84,
    }
    if store.kind == "postgis":
        data, options = postgres_data(store.url)
        data["search_path"] = [store.schema]
        return {"name": "api.providers.postgis_features.TimedPostgreSQLProvider", "data": data,
                "options": with_statement_timeout(options), "table": layer,
                "geom_field": "geometry", **common}
    return {"name": "api.providers.gpkg_features.GeoPackageProvider", "data": str(store.path),
            "table": layer, "geom_field": "geometry", **common}


def _tile_provider(catalog: Catalog, layer: str) -> dict:
    cfg = catalog.layers[layer]
    return {
        "type": "tile",
        "name": "api.providers.tiles.CitytwinTileProvider",
        "data": str(catalog.root),
        "options": {"layer": layer, "zoom": {"min": cfg.minzoom, "max": cfg.maxzoom},
                    "schemes": ["WebMercatorQuad"]},
        "format": {"name": "mvt", "mimetype": "application/vnd.mapbox-vector-tile"},
    }


def _live_resources(catalog: Catalog, url: str) -> dict[str, dict]:
    """Live layers as read-only collections (our LiveProvider); items are posted to /live/{id}/items."""
    out = {}
    for name, cfg in catalog.layers.items():
        if cfg.kind != "live":
            continue
        out[name] = {
            "type": "collection",
            "title": cfg.title or name.replace("_", " ").capitalize(),
            "description": (cfg.description or f"Live layer '{name}'.") + " Expired items disappear; "
                           f"vector tiles at {url}/live/{name}/tiles/{{z}}/{{x}}/{{y}}.",
            "keywords": ["live", "citytwin"],
            "links": [{"type": "application/geo+json", "rel": "alternate", "title": "Live items (short cache)",
                       "href": f"{url}/live/{name}/items"}],
            "extents": {"spatial": {"bbox": [-180.0, -90.0, 180.0, 90.0], "crs": CRS84}},
            "providers": [{"type": "feature", "name": "api.providers.live.LiveProvider", "data": str(catalog.root),
                           "layer": name, "id_field": "id", "storage_crs": CRS84}],
        }
    return out


def placed_model_layers(catalog: Catalog) -> list[str]:
    """landmark_models layers whose 3D Tiles are built: their placed models are served as points."""
    return [name for name, cfg in catalog.layers.items() if cfg.kind == "landmark_models"
            and (catalog.build_path / TILES3D_DIR / name / "tileset.json").is_file()]


def _placement_resources(catalog: Catalog, placements: Path | None) -> dict[str, dict]:
    if placements is None:
        return {}
    out = {}
    for name in placed_model_layers(catalog):
        cfg = catalog.layers[name]
        out[name] = {
            "type": "collection",
            "title": cfg.title or name.replace("_", " ").capitalize(),
            "description": (cfg.description or f"Landmark models of '{name}'.") + " Items are the placed models "
                           "(a point each, with height, heading and scale); the models are its 3D Tiles.",
            "keywords": [cfg.kind, "3D Tiles", "citytwin"],
            "links": [],
            "extents": {"spatial": {"bbox": _bbox(_point_bounds(cfg)), "crs": CRS84}},
            "providers": [{"name": "api.providers.gpkg_features.GeoPackageProvider", "type": "feature",
                           "data": str(placements), "table": name, "id_field": "id", "geom_field": "geometry",
                           "crs": list(SUPPORTED_CRS), "storage_crs": CRS84}],
        }
    return out


def _point_bounds(cfg) -> tuple[float, float, float, float]:
    lons = [m.lon for m in cfg.models or []]
    lats = [m.lat for m in cfg.models or []]
    return (min(lons), min(lats), max(lons), max(lats)) if lons else (math.nan,) * 4


def build_config(catalog: Catalog, store: Store, tiles: TileRegistry, host: str, port: int,
                 placements: Path | None = None) -> dict:
    """The pygeoapi configuration dict for the catalog's layers that are in the store, and the
    placed landmark models in ``placements`` (api.placements)."""
    url = base_url(catalog, host, port)
    stored = set(store.layers())
    # rasters are served at /cog, live layers from build/live, 3D-only layers as 3D Tiles
    missing = [n for n, c in catalog.layers.items()
               if n not in stored and c.kind not in ("raster", "live", *THREE_D_ONLY)]
    if missing:
        LOG.warning("not published (not in the store yet, run 'citytwin build'): %s", ", ".join(missing))
    resources: dict[str, dict] = {}
    for name, cfg in catalog.layers.items():
        if name not in stored or cfg.kind == "raster":
            continue
        info = store.info(name)
        description = cfg.description or f"{cfg.kind} layer '{name}' ({info.count} features)."
        if store.kind != "postgis":
            description += EMBEDDED_FILTERS
        links = [{"type": "text/html", "rel": "related", "title": "Map viewer", "href": f"{url}{VIEWER_PATH}"}]
        providers = [_feature_provider(catalog, store, name)]
        if tiles.available(name):
            providers.append(_tile_provider(catalog, name))
            links.append({"type": "application/json", "rel": "describedby", "title": "TileJSON",
                          "href": f"{url}/collections/{name}/tiles/WebMercatorQuad/tilejson.json"})
        resources[name] = {
            "type": "collection",
            "title": cfg.title or name.replace("_", " ").capitalize(),
            "description": description,
            "keywords": [cfg.kind, "citytwin"],
            "links": links,
            "extents": {"spatial": {"bbox": _bbox(info.bounds), "crs": CRS84}},
            "providers": providers,
        }
    resources.update(_live_resources(catalog, url))
    resources.update(_placement_resources(catalog, placements))
    if not resources:
        raise StoreError(
            f"no catalog layer is in the store yet ({', '.join(catalog.layers) or 'the catalog lists none'}); "
            f"run 'citytwin build --project {catalog.root}' first"
        )
    resources.update(process_resources(catalog))
    return {
        "server": {
            "bind": {"host": host, "port": port},
            "url": url,
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "gzip": False,
            "languages": [catalog.server.language],
            # CORS is applied once, by the app's outer middleware, to pygeoapi and our
            # own routes alike; enabling pygeoapi's as well only duplicates headers.
            "cors": False,
            "manager": process_manager(catalog),
            "pretty_print": False,
            "limits": {"default_items": 100, "max_items": 10000, "on_exceed": "throttle"},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                    "attribution": "&copy; OpenStreetMap contributors"},
        },
        "logging": {"level": "WARNING"},
        "metadata": {
            "identification": {
                "title": catalog.server.title,
                "description": catalog.server.description,
                "keywords": ["citytwin", "OGC API", "vector tiles"],
                "keywords_type": "theme",
                "terms_of_service": "",
                "url": url,
            },
            "license": {"name": "See the data sources of each layer", "url": url},
            "provider": {"name": catalog.name, "url": url},
            "contact": {"name": catalog.name},
        },
        "resources": resources,
    }


def generate(catalog: Catalog, store: Store, tiles: TileRegistry, host: str, port: int) -> GeneratedConfig:
    """Build the config, write it and its OpenAPI document, and point pygeoapi at them."""
    quiet_pygeoapi()  # before pygeoapi is imported and logs
    placements = write_placements(catalog, placed_model_layers(catalog), catalog.build_path / CONFIG_DIR)
    config = build_config(catalog, store, tiles, host, port, placements)
    _set_password_env(store)  # the OpenAPI step already opens the providers
    generated = write_config(config, catalog.build_path / CONFIG_DIR)
    os.environ["PYGEOAPI_CONFIG"] = str(generated.config_path)
    os.environ["PYGEOAPI_OPENAPI"] = str(generated.openapi_path)
    return generated


def write_config(config: dict, out_dir: Path) -> GeneratedConfig:
    """Write config YAML and OpenAPI JSON into ``out_dir`` (build/pygeoapi)."""
    from pygeoapi.openapi import get_oas

    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / "pygeoapi-config.yml"
    openapi_path = out_dir / "pygeoapi-openapi.json"
    _write_atomic(config_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    oas = get_oas(_expanded(config))
    _write_atomic(openapi_path, json.dumps(oas, ensure_ascii=False, default=str))
    return GeneratedConfig(config, config_path, openapi_path)


def _expanded(config: dict) -> dict:
    """The config as pygeoapi will see it after ``${VAR}`` expansion (for get_oas)."""
    import io

    from pygeoapi.util import yaml_load

    return yaml_load(io.StringIO(yaml.safe_dump(config)))


def _set_password_env(store: Store) -> None:
    if store.kind == "postgis":
        password = urlsplit(store.url).password
        if password:
            os.environ[PASSWORD_ENV] = unquote(password)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
