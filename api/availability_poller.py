"""Polls the places of availability layers (live layers with ``availability.poll``) while the server runs.

Every server process starts a poller; only the one holding the lock on
``<build>/live/availability-poller.lock`` polls (pipelines.one_process), so a source is fetched
once per interval however many workers serve, and another process takes over when that one ends. A polled document
replaces the layer's earlier polled places in one transaction (posted places stay). A document
that cannot be fetched or read changes nothing: the layer keeps its last good places until they
go stale; the fault is logged (once while it lasts), written to the audit log, and kept in
``<build>/live/<layer>.poll.json``, which GET /live/<layer>/items shows as ``poll``.
A source that wants an API key gets it from the environment variable ``poll.key.env`` names, in a
header or a query parameter; the key is never written to the status or the audit log.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from api.auth import AUDIT_FILE, AuditLog
from geo.errors import CitytwinError, SourceError
from pipelines.atomic_file import replace_text
from pipelines.availability import read_places
from pipelines.bounded_fetch import FetchError, fetch_bounded
from pipelines.catalog import AvailabilityConfig, AvailabilityPoll, Catalog
from pipelines.live import LIVE_DIR, LiveLayer, live_path, screened
from pipelines.one_process import OneProcessLoop

ORIGIN_POLL = "poll"
log = logging.getLogger("citytwin.availability")


def polled_layers(catalog: Catalog) -> dict[str, AvailabilityConfig]:
    return {name: cfg.availability for name, cfg in catalog.layers.items()
            if cfg.kind == "live" and cfg.availability is not None and cfg.availability.poll is not None}


def _status_path(catalog: Catalog, layer: str):
    return live_path(catalog, layer).with_suffix(".poll.json")


def poll_status(catalog: Catalog, layer: str) -> dict | None:
    """What the last polls of ``layer`` did, or None before the first (or for a layer not polled)."""
    try:
        return json.loads(_status_path(catalog, layer).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class AvailabilityPoller:
    """Polls every availability source at its interval while this process holds the lock."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.specs = polled_layers(catalog)
        self.audit = AuditLog(catalog.build_path / AUDIT_FILE)
        self.loop = OneProcessLoop("availability-poller", catalog.build_path / LIVE_DIR / "availability-poller.lock",
                                   self._poll_until_stopped)

    def start(self) -> None:
        if self.specs:
            self.loop.start()

    def stop(self) -> None:
        self.loop.stop()

    def _poll_until_stopped(self, stop: threading.Event) -> None:
        log.info("pid %d polls %d availability source(s)", os.getpid(), len(self.specs))
        due = {name: 0.0 for name in self.specs}
        errors: dict[str, str | None] = {}
        with httpx.Client(follow_redirects=True,
                          headers={"User-Agent": f"citytwin-availability (pid {os.getpid()})"}) as client:
            while not stop.is_set():
                name = min(due, key=due.__getitem__)
                wait = due[name] - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    return
                due[name] = time.monotonic() + self.specs[name].poll.interval_s  # type: ignore[union-attr]
                try:
                    status = self.poll_once(client, name)
                except Exception:  # noqa: BLE001 - the poller must outlive any one bad poll
                    log.exception("availability '%s': polling failed", name)
                    continue
                if status["error"] != errors.get(name):  # say a fault once while it lasts, and when it ends
                    if status["error"]:
                        log.warning("availability '%s': %s", name, status["error"])
                    elif errors.get(name):
                        log.warning("availability '%s': good again, %d places", name, status["stored"])
                errors[name] = status["error"]

    def poll_once(self, client: httpx.Client, name: str) -> dict[str, Any]:
        """Fetch and load ``name``'s source once; return (and keep) the status."""
        spec = self.specs[name]
        poll = spec.poll
        assert poll is not None
        previous = poll_status(self.catalog, name) or {}
        status: dict[str, Any] = {"url": poll.url, "polled_at": _now_iso(), "error": None,
                                  "ok_at": previous.get("ok_at"), "stored": previous.get("stored")}
        try:
            headers, params = _key(poll, name)
            data = fetch_bounded(client, poll.url, poll.max_bytes, poll.timeout_s,
                                 f"raise layers.{name}.availability.poll.max_bytes in citytwin.yaml if it is genuine",
                                 headers, params)
            items = read_places(data, spec, poll.url)
        except CitytwinError as exc:
            refused = poll.key is not None and isinstance(exc, FetchError) and exc.http_status in (401, 403)
            hint = f" (was the key in ${poll.key.env} refused?)" if refused and poll.key else ""
            status["error"] = f"{exc}{hint}; kept the last good places"
            self.audit.write(who=f"poll:{poll.url}", action="poll", layer=name, status="error",
                             error=status["error"][:300])
        else:
            result = LiveLayer(self.catalog, name).replace_origin(ORIGIN_POLL, items, f"poll:{poll.url}")
            status |= {"ok_at": status["polled_at"], "stored": result.stored}
            self.audit.write(who=f"poll:{poll.url}", action="poll", layer=name, status="ok", stored=result.stored,
                             ids=result.ids[:50], purged=result.purged, privacy=screened(items).as_dict())
        path = _status_path(self.catalog, name)
        path.parent.mkdir(parents=True, exist_ok=True)  # the live folder may have been removed meanwhile
        replace_text(path, json.dumps(status))
        return status


def _key(poll: AvailabilityPoll, layer: str) -> tuple[dict[str, str], dict[str, str]]:
    """The headers and query parameters that carry the source's key (none without one)."""
    key = poll.key
    if key is None:
        return {}, {}
    value = os.environ.get(key.env, "").strip()
    if not value:
        raise SourceError(f"{poll.url}: the source's key is not set: environment variable {key.env} (named by "
                          f"layers.{layer}.availability.poll.key.env) is empty or missing where citytwin serve runs")
    return ({key.header: value}, {}) if key.header else ({}, {str(key.param): value})


def availability_lifespan(catalog: Catalog, inner: Callable[[Any], AbstractAsyncContextManager[None]] | None = None):
    """The app's lifespan: poll availability sources while the server runs, around ``inner``'s."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        poller = AvailabilityPoller(catalog)
        poller.start()
        try:
            if inner is None:
                yield
            else:
                async with inner(app):
                    yield
        finally:
            await run_in_threadpool(poller.stop)

    return lifespan
