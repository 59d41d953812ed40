"""Readers, one module per source kind. Each returns a GeoDataFrame in the source CRS."""
