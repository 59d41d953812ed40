"""Provider errors of ours that pygeoapi has no class for."""
from __future__ import annotations

from http import HTTPStatus

from pygeoapi.provider.base import ProviderGenericError


class TooSlowError(ProviderGenericError):
    """A query ran out of its time and was stopped: 503, the server itself is fine."""

    ogc_exception_code = "ServiceUnavailable"
    http_status_code = HTTPStatus.SERVICE_UNAVAILABLE
    default_msg = "the query took too long"


class UnusableStoreError(ProviderGenericError):
    """The layer's store is there but cannot be read (e.g. a file that is not a database): 503 naming it."""

    ogc_exception_code = "ServiceUnavailable"
    http_status_code = HTTPStatus.SERVICE_UNAVAILABLE
    default_msg = "the layer's store cannot be read"
