"""Tile products made from the store: MVT, PMTiles archives, TileJSON. No HTTP here.

- ``tiles.source``: the TileSource protocol and TileSetInfo every backend returns.
- ``tiles.pmtiles_build``: ``build_pmtiles`` writes a size-limited PMTiles archive + TileJSON.
- ``tiles.pmtiles_source``: ``PMTilesSource`` serves tiles from such an archive.
- ``tiles.postgis_source``: ``PostGISTileSource`` makes tiles on request with ST_AsMVT.
- ``tiles.tilejson``: TileJSON 3.0.0 documents.

Import from the submodules; this package imports nothing heavy on its own.
"""
