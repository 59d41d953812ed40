"""Which TileSource serves a layer: PostGIS (dynamic ST_AsMVT) or the layer's PMTiles archive.

One registry per project per process. The fast tile route and the pygeoapi tile provider
(which pygeoapi instantiates per request) both look sources up here, so an archive is
opened once and a PostGIS pool is shared.
"""
from __future__ import annotations

import threading
from pathlib import Path

from geo.names import check_layer_name
from pipelines.catalog import Catalog, load_catalog
from pipelines.project import project_store
from pipelines.store import Store
from tiles.source import TileSource


def pmtiles_path(catalog: Catalog, layer: str) -> Path:
    """Where ``citytwin build`` writes a layer's archive (build/tiles/<layer>.pmtiles)."""
    from pipelines.build import TILES_DIR

    return catalog.build_path / TILES_DIR / f"{check_layer_name(layer)}.pmtiles"


class TileRegistry:
    """Tile sources of one project's layers, opened lazily and reopened when rebuilt."""

    def __init__(self, catalog: Catalog, store: Store):
        self.catalog = catalog
        self.store = store
        self._lock = threading.Lock()
        self._sources: dict[str, TileSource] = {}

    def available(self, layer: str) -> bool:
        """True when the layer can be served as tiles right now."""
        if layer not in self.catalog.layers:
            return False
        if self.store.kind == "postgis":
            return True
        return pmtiles_path(self.catalog, layer).is_file()

    def source(self, layer: str) -> TileSource | None:
        """The layer's TileSource, or None when it has no tiles (not built yet)."""
        if layer not in self.catalog.layers or not self.available(layer):
            return None
        # Both sources follow rebuilds themselves (archive inode / layer version), so one
        # instance per layer serves for the life of the process.
        with self._lock:
            src = self._sources.get(layer)
            if src is None:
                src = self._sources[layer] = self._open(layer)
            return src

    def opened(self, layer: str) -> TileSource | None:
        """A PostGIS layer's source once opened (no I/O, for the event loop); None otherwise,
        and always for PMTiles, whose archive ``source`` checks on disk each time."""
        return self._sources.get(layer) if self.store.kind == "postgis" else None

    def _open(self, layer: str) -> TileSource:
        cfg = self.catalog.layers[layer]
        if self.store.kind == "postgis":
            from tiles.postgis_source import PostGISTileSource

            return PostGISTileSource(self.store.pool, layer, cfg.minzoom, cfg.maxzoom, cfg.fields,
                                     schema=self.store.schema, access=self.store.access)
        from tiles.pmtiles_source import PMTilesSource

        return PMTilesSource(pmtiles_path(self.catalog, layer))


_REGISTRIES: dict[Path, TileRegistry] = {}
_REGISTRY_LOCK = threading.Lock()


def register(project: Path, registry: TileRegistry) -> None:
    with _REGISTRY_LOCK:
        _REGISTRIES[Path(project).resolve()] = registry


def registry_for(project: Path) -> TileRegistry:
    """The process's registry for ``project``, created from its catalog on first use."""
    key = Path(project).resolve()
    with _REGISTRY_LOCK:
        reg = _REGISTRIES.get(key)
        if reg is None:
            catalog = load_catalog(key)
            reg = _REGISTRIES[key] = TileRegistry(catalog, project_store(catalog))
        return reg
