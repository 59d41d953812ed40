"""GET a URL's body without ever holding more than a limit of it (polled sources are untrusted)."""
from __future__ import annotations

import httpx

from geo.errors import SourceError

_CHUNK = 64 << 10


class FetchError(SourceError):
    """The URL did not answer with a body we accept; the message names the URL and the fault."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status  # the answer's status when it was not 200


def fetch_bounded(client: httpx.Client, url: str, max_bytes: int, timeout_s: float, raise_hint: str,
                  headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> bytes:
    """The body at ``url`` (decoded from any Content-Encoding), read no further than ``max_bytes``.
    ``raise_hint`` says where the limit is set, for the message when a body is over it. ``headers``
    and ``params`` (an API key) are sent but never put in a message: those name ``url`` alone."""
    def too_big(size: int, at_least: bool) -> FetchError:
        return FetchError(f"{url}: {'over ' if at_least else ''}{size:,} bytes, over the limit of {max_bytes:,}; "
                          f"refused unread. {raise_hint}")

    secrets = [v for v in (*(headers or {}).values(), *(params or {}).values()) if v]
    try:
        with client.stream("GET", url, timeout=timeout_s, headers=headers, params=params) as resp:
            if resp.status_code != 200:
                raise FetchError(f"{url}: answered HTTP {resp.status_code}", resp.status_code)
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise too_big(int(declared), False)
            parts, got = [], 0
            for chunk in resp.iter_bytes(_CHUNK):
                got += len(chunk)
                if got > max_bytes:
                    raise too_big(got, True)
                parts.append(chunk)
    except httpx.HTTPError as exc:
        detail = str(exc)
        for secret in secrets:
            detail = detail.replace(secret, "***")
        raise FetchError(f"{url}: cannot be fetched ({type(exc).__name__}: {detail[:120]})") from None
    return b"".join(parts)
