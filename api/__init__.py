"""The citytwin ASGI app: OGC API (pygeoapi, configured from the catalog), fast tiles, viewer."""
