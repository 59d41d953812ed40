"""Pure geospatial core of citytwin: CRS handling, geometry helpers, errors.

Nothing in this package imports the rest of citytwin, a web framework or a
database driver, so it is as usable in a notebook as in the pipelines.
"""
