"""/openapi as HTML renders Swagger UI in headless Chromium with nothing asked of any other host
(browser.py aborts and records every non-local request): Swagger UI comes from npm through
viewer/package.json and this server, not from a CDN."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api_server import serve
from browser import chromium_page

pytestmark = pytest.mark.browser
LOAD_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def base(built_sample_city: Path) -> Iterator[str]:
    with serve(built_sample_city) as url:
        yield url


@pytest.mark.parametrize("how", ["f=html", "accept"])
def test_openapi_page_renders_offline(base: str, how: str) -> None:
    with chromium_page() as (page, record):
        if how == "f=html":
            page.goto(f"{base}/openapi?f=html")
        else:  # a browser's own Accept header, no f
            page.goto(f"{base}/openapi")
        # Swagger UI lists one block per operation once it has read the JSON document
        page.wait_for_selector(".opblock", timeout=LOAD_TIMEOUT_MS)
        paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")
    assert any("/collections/{collectionId}/tiles/{tileMatrixSetId}" in p.replace("\u200b", "") for p in paths)
    assert record.external_requests == []
    assert record.problems == []
