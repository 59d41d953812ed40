"""Store selection: GeoPackage by default, PostGIS when CITYTWIN_DATABASE_URL is set."""
from __future__ import annotations

import os
from pathlib import Path

from pipelines.store.base import ID_COLUMN, STORE_CRS, LayerInfo, Store

DATABASE_URL_ENV = "CITYTWIN_DATABASE_URL"
GPKG_NAME = "citytwin.gpkg"


def open_store(build_path: Path, database_url: str | None = None, *,
               statement_timeout_ms: int | None = None, tile_connections: int | None = None) -> Store:
    """The project's store: PostGIS at ``database_url`` (or $CITYTWIN_DATABASE_URL), else the GeoPackage.
    ``statement_timeout_ms`` bounds each PostGIS statement (the server's reads); ``tile_connections``
    sizes PostGIS's pool for tiles (None: its default)."""
    url = database_url or os.environ.get(DATABASE_URL_ENV)
    if url:
        from pipelines.store.postgis import PostGISStore

        return PostGISStore(url, statement_timeout_ms=statement_timeout_ms, tile_connections=tile_connections)
    from pipelines.store.gpkg import GeoPackageStore

    return GeoPackageStore(Path(build_path) / GPKG_NAME)


__all__ = ["open_store", "Store", "LayerInfo", "STORE_CRS", "ID_COLUMN", "DATABASE_URL_ENV"]
