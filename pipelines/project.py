"""Project folders: create one, find its store."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from geo.errors import CatalogError
from pipelines.catalog import CATALOG_FILE, Catalog, load_catalog
from pipelines.store import Store, open_store


def init_project(directory: Path) -> Path:
    directory = Path(directory)
    path = directory / CATALOG_FILE
    if path.exists():
        raise CatalogError(f"{path} already exists; edit it instead of starting over")
    directory.mkdir(parents=True, exist_ok=True)
    text = resources.files("pipelines").joinpath("templates", CATALOG_FILE).read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    load_catalog(directory)
    return path


def project_store(catalog: Catalog, *, statement_timeout_ms: int | None = None) -> Store:
    return open_store(catalog.build_path, statement_timeout_ms=statement_timeout_ms,
                      tile_connections=catalog.server.tile_db_connections)


def relative_to_project(path: Path, root: Path) -> str:
    """``path`` as the catalog writes it: relative to the project folder when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
