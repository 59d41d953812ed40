"""Provider errors of ours that pygeoapi has no class for."""
from __future__ import annotations

from http import HTTPStatus

from pygeoapi.provider.base import ProviderGenericError


class TooSlowError(ProviderGenericError):
    """A query ran out of its time and was stopped: 503, the server itself is fine."""

    ogc_exception_code = "ServiceUnavailable"
    http_status_code = HTTPStatus.SERVICE_UNAVAILABLE
    default_msg = "the query took too long"
