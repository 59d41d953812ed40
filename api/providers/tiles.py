"""pygeoapi tile provider over our TileSource (PMTiles archive or PostGIS ST_AsMVT).

It makes pygeoapi list the tilesets, their metadata (OGC Tile Set Metadata, TileJSON,
HTML) and the OGC API Tiles conformance classes. Tile bytes for WebMercatorQuad are
normally answered by the app's fast path (api/tiles_routes.py) before pygeoapi sees the
request; ``get_tiles`` answers the same way for anything that still reaches pygeoapi.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pygeoapi.models.provider.base import TileMatrixSetEnum
from pygeoapi.provider.base import ProviderConnectionError
from pygeoapi.provider.base_mvt import BaseMVTProvider
from pygeoapi.provider.tile import ProviderTileNotFoundError, ProviderTilesetIdNotFoundError
from pygeoapi.util import url_join

from api.tile_sources import registry_for
from tiles.source import TileSource
from tiles.tileset_metadata import tileset_metadata, web_mercator_grid

TILE_MATRIX_SET = "WebMercatorQuad"
MVT_MIMETYPE = "application/vnd.mapbox-vector-tile"


class TileRangeError(ValueError):
    """A tile address outside the grid or the layer's zoom range (message says which)."""


class ZoomRange(Protocol):
    """What an address is checked against: a TileSetInfo, or a source that knows its zooms."""
    layer: str
    minzoom: int
    maxzoom: int


def check_tile_address(info: ZoomRange, z: int, x: int, y: int) -> None:
    """Raise TileRangeError unless z/x/y is inside WebMercatorQuad and the layer's zooms."""
    if not info.minzoom <= z <= info.maxzoom:
        raise TileRangeError(
            f"zoom {z} is outside the zoom range {info.minzoom}-{info.maxzoom} of layer '{info.layer}'"
        )
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise TileRangeError(f"tile column {x} / row {y} is outside the {n}x{n} grid of zoom {z}")


class CitytwinTileProvider(BaseMVTProvider):
    """Vector tiles of one catalog layer, in WebMercatorQuad."""

    def __init__(self, provider_def: dict):
        super().__init__(provider_def)
        opts = self.options or {}
        self.layer = opts["layer"]
        self.project = Path(self.data)
        self._service_url = ""
        self._service_metadata_url = ""

    def __repr__(self) -> str:
        return f"<CitytwinTileProvider> {self.project}:{self.layer}"

    def _source(self) -> TileSource:
        src = registry_for(self.project).source(self.layer)
        if src is None:
            raise ProviderConnectionError(
                user_msg=f"no tiles for layer '{self.layer}'; run 'citytwin build' and restart the server")
        return src

    def get_layer(self) -> str:
        return self.layer

    def get_fields(self) -> dict:
        layers = self._source().info().vector_layers
        return dict(layers[0].get("fields", {})) if layers else {}

    def get_tiling_schemes(self) -> list:
        return [TileMatrixSetEnum.WEBMERCATORQUAD.value]

    def get_tiles_service(self, baseurl=None, servicepath=None, dirpath=None, tile_type=None) -> dict:
        self._service_url = servicepath
        return self.get_tms_links()

    def get_tiles(self, layer=None, tileset=None, z=None, y=None, x=None, format_=None) -> bytes | None:
        if tileset != TILE_MATRIX_SET:
            raise ProviderTilesetIdNotFoundError(user_msg=f"tile matrix set {tileset!r} is not offered; use {TILE_MATRIX_SET}")
        src = self._source()
        try:
            zi, xi, yi = int(z), int(x), int(y)
            check_tile_address(src.info(), zi, xi, yi)
        except (TypeError, ValueError) as exc:
            raise ProviderTileNotFoundError(user_msg=str(exc)) from None
        return src.tile(zi, xi, yi)

    # -- metadata ------------------------------------------------------------
    def get_metadata(self, dataset, server_url, layer=None, tileset=None, metadata_format=None, title=None,
                     description=None, keywords=None, **kwargs) -> dict:
        # pygeoapi passes None when the request has no ?f= and its base class then
        # fails with AttributeError (a 500); default to OGC Tile Set Metadata JSON.
        return super().get_metadata(dataset, server_url, layer, tileset, metadata_format or "json",
                                    title, description, keywords, **kwargs)

    def _tile_url(self, server_url: str, dataset: str, tileset: str) -> str:
        return url_join(server_url, f"collections/{dataset}/tiles/{tileset}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}?f=mvt")

    def get_default_metadata(self, dataset, server_url, layer, tileset, title, description, keywords, **kwargs) -> dict:
        if tileset != TILE_MATRIX_SET:
            raise ProviderTilesetIdNotFoundError(user_msg=f"tile matrix set {tileset!r} is not offered; use {TILE_MATRIX_SET}")
        info = self._source().info()
        doc = tileset_metadata(
            info, web_mercator_grid(info), title or dataset, description or "",
            tiles_url=self._tile_url(server_url, dataset, tileset),
            tms_url=url_join(server_url, f"TileMatrixSets/{TILE_MATRIX_SET}"),
            tilejson_url=url_join(server_url, f"collections/{dataset}/tiles/{tileset}/tilejson.json"),
            mvt_type=MVT_MIMETYPE)
        if registry_for(self.project).store.kind != "postgis":  # built archives (api/pmtiles_routes.py)
            doc["links"].append({"href": url_join(server_url, f"collections/{dataset}/tiles/{tileset}/archive.pmtiles"),
                                 "rel": "alternate", "type": "application/vnd.pmtiles",
                                 "title": "All tiles as one PMTiles archive (read it by range)"})
        return doc

    def get_vendor_metadata(self, dataset, server_url, layer, tileset, title, description, keywords, **kwargs) -> dict:
        from tiles.tilejson import tilejson

        info = self._source().info()
        url = url_join(server_url, f"collections/{dataset}/tiles/{TILE_MATRIX_SET}/{{z}}/{{y}}/{{x}}?f=mvt")
        return tilejson(info, url, name=dataset, description=description or "", attribution="")

    def get_html_metadata(self, dataset, server_url, layer, tileset, title, description, keywords, **kwargs) -> dict:
        base = url_join(server_url, f"collections/{dataset}/tiles/{tileset}")
        return {
            "id": dataset,
            "title": title,
            "tileset": tileset,
            "collections_path": self._tile_url(server_url, dataset, tileset),
            "json_url": f"{base}/metadata?f=json",
            "tilejson_url": f"{base}/tilejson.json",
            "metadata": self.get_vendor_metadata(dataset, server_url, layer, tileset, title, description, keywords),
        }
