"""The ASGI app: our routes first (landing link, fast tiles, TileJSON, 3D Tiles, viewer, styles),
then pygeoapi (OGC API Common, Features, Tiles) configured from the catalog.

pygeoapi's Starlette module reads its configuration when imported, so the config is
generated and the environment set before the import, and one process serves one
project (the tests start the server as a subprocess for that reason).
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from api.conformance import conformance_route
from api.departure_boards import DepartureBoards
from api.geocode_routes import geocode_routes
from api.cql_compat import CQL2CompatMiddleware, install as install_cql2
from api.cql_limits import CQLSizeLimit
from api.features_fast import FastItems, fast_collections
from api.items_requests import ItemsRequests, collection_fields
from api.landing import landing_route
from api.openapi_doc import jobs_paths, openapi_route, records_paths, service_paths
from api.live_routes import live_routes
from api.ar_routes import ArRoutes, ar_openapi_paths
from api.auth import protect_processes
from api.availability_poller import availability_lifespan
from api.pygeoapi_config import STATEMENT_TIMEOUT_MS, base_url, generate
from api.readiness import ready_route
from api.raster_routes import PREFIX as COG_PREFIX, raster_app
from api.realtime_routes import realtime_lifespan, realtime_routes
from api.records_routes import catalog_routes
from api.static_routes import static_routes
from api.threed_routes import ThreeDRoutes
from api.tile_sources import TileRegistry, register
from api.tile_front import TileFront
from api.tiles_routes import TileRoutes
from api.transit_routes import transit_routes
from api.viewer_layers import viewer_layers, viewer_layers_route
from geo.errors import StoreError
from pipelines.catalog import Catalog, load_catalog
from pipelines.project import project_store
from pipelines.store import Store

EXPOSED_HEADERS = ["ETag", "Content-Crs", "Content-Encoding", "Content-Language", "Link"]


def check_store_built(catalog: Catalog, store: Store) -> None:
    """Fail early, with the command to run, when there is nothing to serve."""
    path = getattr(store, "path", None)
    if store.kind != "postgis" and path is not None and not Path(path).is_file():
        raise StoreError(
            f"no store at {path}: nothing has been built for this project yet; "
            f"run 'citytwin build --project {catalog.root}' first"
        )
    if not store.layers():
        raise StoreError(
            f"the store of {catalog.root} holds no layers; run 'citytwin build --project {catalog.root}' first"
        )


def _import_pygeoapi(config_path: Path) -> ModuleType:
    """Import (or, for a new config, re-import) pygeoapi's Starlette module."""
    name = "pygeoapi.starlette_app"
    module = sys.modules.get(name)
    if module is None:
        return importlib.import_module(name)
    if getattr(module, "_citytwin_config", None) != str(config_path):
        module = importlib.reload(module)
    return module


def create_app(project: Path, host: str = "127.0.0.1", port: int = 8000) -> ASGIApp:
    """Build the app for ``project`` (a folder holding citytwin.yaml with a built store)."""
    catalog = load_catalog(project)
    store = project_store(catalog, statement_timeout_ms=STATEMENT_TIMEOUT_MS)  # no read holds a connection long
    check_store_built(catalog, store)

    registry = TileRegistry(catalog, store)
    register(catalog.root, registry)
    generated = generate(catalog, store, registry, host, port)
    pygeoapi_app = _import_pygeoapi(generated.config_path)
    pygeoapi_app._citytwin_config = os.environ["PYGEOAPI_CONFIG"]
    install_cql2()  # pygeoapi reads filters with api.cql2

    url = base_url(catalog, host, port)
    tiles = TileRoutes(registry, public_url=catalog.server.url)
    threed = ThreeDRoutes(catalog, url, frozenset(generated.config["resources"]))
    records = catalog_routes(catalog, store, generated.config["resources"], threed, url)  # OGC API Records
    boards = DepartureBoards(catalog)  # next departures for /transit/nearest and /ar/view
    ar = ArRoutes(catalog, store, url, boards)  # builds its index in the background
    routes = [
        Route("/", landing_route(pygeoapi_app.landing_page, url, [records.landing_link()]), methods=["GET", "HEAD"]),
        Route("/conformance",
              conformance_route(records.conformance(threed.conformance_route(pygeoapi_app.conformance))),
              methods=["GET", "HEAD"]),
        *tiles.routes(pygeoapi_app),
        *threed.routes(records.listed(pygeoapi_app.collections)),
        *transit_routes(catalog, store, boards),
        *realtime_routes(catalog),  # /transit/realtime: each GTFS-Realtime feed's state
        *geocode_routes(catalog, store),  # /geocode, /reverse from the project's gazetteer
        *live_routes(catalog),  # /live/{layer}/items (POST with API key, GET) and /live/{layer}/tiles
        *ar.routes(),  # /ar/view, /ar/anchors, /ar/route
        ready_route({"ar_index": ar.holder.state}),  # /ready: the background start-up work is done
        Route("/openapi", openapi_route(pygeoapi_app.openapi,
                                        [ar_openapi_paths(), service_paths(), records_paths(), jobs_paths()]),
              methods=["GET", "HEAD"]),
        viewer_layers_route(viewer_layers(catalog, store, registry)),  # before the /viewer mount
        *static_routes(),
        Mount(COG_PREFIX, app=raster_app(catalog)),
        Mount("/", app=pygeoapi_app.APP),
    ]
    # polls GTFS-Realtime URLs and the availability sources (parking, chargers) of live layers
    app: ASGIApp = Starlette(routes=routes, lifespan=availability_lifespan(catalog, realtime_lifespan(catalog)))
    if store.kind == "postgis":  # GeoJSON items pages (bbox, sortby, properties, filter, crs) straight from PostGIS
        limits = generated.config["server"]["limits"]
        app = FastItems(app, store, url, limits["default_items"], limits["max_items"],
                        fast_collections(generated.config["resources"]))
    app = ItemsRequests(app, collection_fields(generated.config, store))  # Features Part 1 parameters, geo+json
    app = records.in_front(app)  # /collections/catalog: Records parameters, not the Features checks
    app = protect_processes(app, catalog)  # API key + audit log for process execution and job deletion
    app = CQL2CompatMiddleware(app)  # CQL2 parsed by api.cql2 (see install_cql2 above), errors as 400s
    app = CQLSizeLimit(app)  # an oversized filter is refused before it is parsed
    app = TileFront(app, tiles)  # PostGIS tiles without the stack in between (api/tile_front.py)
    app = CORSMiddleware(app, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
                         expose_headers=EXPOSED_HEADERS)
    return app
