"""Headless Chromium for the browser tests, with a record of what the page did.

Chromium comes from Debian (``/usr/bin/chromium``); Playwright only drives it. Every
request leaving localhost is aborted and recorded: the viewer must work offline, and a
test must never wait on a network this machine does not have.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Page, Request, Response, Route, sync_playwright

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

# The flags docs/testing.md asks for, plus a software WebGL: with --disable-gpu,
# recent Chromium only falls back to SwiftShader when explicitly allowed.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def chromium_path() -> str:
    """The system Chromium; a clear message when it is missing."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("chromium not found: install it with 'apt-get install -y chromium' (make system-deps)")


@dataclass
class PageRecord:
    """What one page asked for and complained about."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything a clean page load should not have produced, one line each."""
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"page error: {m}" for m in self.page_errors]
            + [f"failed request: {m}" for m in self.failed_requests]
            + [f"non-local request: {m}" for m in self.external_requests]
        )


def is_local(url: str) -> bool:
    """True for URLs served from this machine (and for inline data/blob URLs)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return (parts.hostname or "") in LOCAL_HOSTS


def _watch(page: Page, record: PageRecord) -> None:
    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            loc = msg.location or {}
            record.console_errors.append(f"{msg.text} ({loc.get('url', '')})")

    def on_route(route: Route) -> None:
        url = route.request.url
        if is_local(url):
            route.continue_()
        else:
            record.external_requests.append(url)
            route.abort("blockedbyclient")

    def on_response(resp: Response) -> None:
        if resp.status >= 400:
            record.failed_requests.append(f"{resp.status} {resp.url}")

    def on_failed(req: Request) -> None:
        if is_local(req.url):  # blocked external ones are already recorded
            record.failed_requests.append(f"{req.failure} {req.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: record.page_errors.append(str(exc)))
    page.on("request", lambda req: record.requests.append(req.url))
    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.route("**/*", on_route)


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1280, 800)) -> Iterator[tuple[Page, PageRecord]]:
    """A fresh headless Chromium profile and one watched page in it."""
    record = PageRecord()
    with tempfile.TemporaryDirectory(prefix="citytwin-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]},
            service_workers="block",
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            _watch(page, record)
            yield page, record
        finally:
            context.close()


def save_screenshot(page: Page, name: str) -> Path:
    """Write tests/artifacts/<name> (gitignored) and return its path."""
    out = Path(__file__).resolve().parent / "artifacts" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))
    return out
