"""Tile products made from the store: MVT, PMTiles archives, TileJSON. No HTTP here."""
