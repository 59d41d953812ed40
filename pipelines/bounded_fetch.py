"""GET a URL's body without ever holding more than a limit of it (polled sources are untrusted)."""
from __future__ import annotations

import httpx

from geo.errors import SourceError

_CHUNK = 64 << 10


class FetchError(SourceError):
    """The URL did not answer with a body we accept; the message names the URL and the fault."""


def fetch_bounded(client: httpx.Client, url: str, max_bytes: int, timeout_s: float, raise_hint: str) -> bytes:
    """The body at ``url`` (decoded from any Content-Encoding), read no further than ``max_bytes``.
    ``raise_hint`` says where the limit is set, for the message when a body is over it."""
    def too_big(size: int, at_least: bool) -> FetchError:
        return FetchError(f"{url}: {'over ' if at_least else ''}{size:,} bytes, over the limit of {max_bytes:,}; "
                          f"refused unread. {raise_hint}")

    try:
        with client.stream("GET", url, timeout=timeout_s) as resp:
            if resp.status_code != 200:
                raise FetchError(f"{url}: answered HTTP {resp.status_code}")
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
        raise FetchError(f"{url}: cannot be fetched ({type(exc).__name__}: {str(exc)[:120]})") from None
    return b"".join(parts)
