"""Batch pipelines for GIS staff: read, check, reproject, publish into the store, build."""
