"""Typed errors that every layer raises and the CLI turns into one clear line."""
from __future__ import annotations


class CitytwinError(Exception):
    """Base of every error a user can act on. str(err) is the whole message."""

    exit_code = 2


class SourceError(CitytwinError):
    """An input file is missing, unreadable, empty or holds the wrong kind of data."""


class CRSError(CitytwinError):
    """A coordinate reference system is unknown, missing or implausible for the data."""


class EncodingError(SourceError):
    """Text fields cannot be decoded with the encoding in use."""


class CatalogError(CitytwinError):
    """citytwin.yaml is missing or does not validate."""


class StoreError(CitytwinError):
    """The store cannot be opened or written."""


class StoreUnavailableError(StoreError):
    """The database is down or did not answer in time; the same request may succeed later."""

    retry_after_s = 2


class LayerNameError(CitytwinError):
    """A layer name that would be unsafe as a table, file or URL name."""
