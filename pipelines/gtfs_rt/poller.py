"""The poller of a project's GTFS-Realtime URLs, run by ``citytwin serve``.

Every server process starts one, but only the process holding the lock on
``<build>/live/realtime/poller.lock`` polls (pipelines.one_process), so a feed is polled
once however many workers serve, and another worker takes over if that one dies.
What is polled lands in SQLite files every worker reads.

Each URL is polled at its feed's interval, in phase with the feed: once a new feed is seen,
the next poll comes one interval after its header timestamp (or after this poll, if that is
sooner; less a margin), then every ``interval / 20`` (at
least 0.25 s, at most 2 s) until the next feed appears, so a new feed is visible within
about that gap rather than up to a whole interval later. A feed unchanged for two intervals
is polled four times an interval. A body identical to the last one read is not decoded again;
a new one is decoded and published by a child process, off the server's GIL.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import httpx

from geo.errors import CitytwinError
from pipelines.bounded_fetch import FetchError, fetch_bounded
from pipelines.catalog import Catalog, load_catalog
from pipelines.gtfs_rt.decode import FEED_TYPES, FeedRefused
from pipelines.gtfs_rt.load import LoadReport, load_feed
from pipelines.gtfs_rt.store import REALTIME_DIR, RealtimeState
from pipelines.one_process import OneProcessLoop

log = logging.getLogger("citytwin.realtime")
FETCH_TIMEOUT_S = 10.0
# A feed the child has not decoded and published by then is given up and the child killed: the
# other feeds must go on. A 16 MB feed (the largest accepted) loads in a few seconds.
LOAD_TIMEOUT_S = 60.0


@dataclass
class _Job:
    feed: str
    kind: str
    url: str
    interval_s: float
    due: float = 0.0
    changed_at: float = field(default_factory=time.monotonic)
    last_error: str | None = None
    last_digest: bytes = b""

    @property
    def retry_s(self) -> float:
        return min(2.0, max(0.25, self.interval_s / 20))


def _child_pool() -> ProcessPoolExecutor:
    """One child process (spawned: no copy of the server's threads) that decodes and publishes."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


def _kill_children(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's child, whatever it is doing (the executor can only wait for it); what it
    was publishing rolls back with its SQLite transaction."""
    for process in list((pool._processes or {}).values()):  # no public way before Python 3.14
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


@functools.cache
def _child_catalog(root: str) -> Catalog:
    return load_catalog(root)


def _load_in_child(root: str, feed: str, kind: str, data: bytes, url: str) -> LoadReport:
    return load_feed(_child_catalog(root), feed, kind, data, url)


def poll_jobs(catalog: Catalog) -> list[_Job]:
    return [_Job(feed, kind, url, cfg.interval_s)
            for feed, cfg in catalog.realtime.items() for kind in FEED_TYPES if (url := getattr(cfg, kind))]


class Poller:
    """Polls ``catalog``'s realtime URLs on a daemon thread while this process holds the lock."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.jobs = poll_jobs(catalog)
        self.loop = OneProcessLoop("gtfs-rt-poller", catalog.build_path / REALTIME_DIR / "poller.lock",
                                   self._poll_until_stopped)

    def start(self) -> None:
        if self.jobs:
            self.loop.start()

    def stop(self) -> None:
        self.loop.stop()

    def _poll_until_stopped(self, stop: threading.Event) -> None:
        log.info("pid %d polls %d GTFS-Realtime URL(s)", os.getpid(), len(self.jobs))
        # Decoding and publishing run in a child process: thousands of vehicles are CPU work that,
        # on a thread here, would hold the GIL the server's requests need.
        self._pool = _child_pool()
        try:
            with httpx.Client(follow_redirects=True,
                              headers={"User-Agent": f"citytwin-realtime (pid {os.getpid()})"}) as client:
                while not stop.is_set():
                    job = min(self.jobs, key=lambda j: j.due)
                    wait = job.due - time.monotonic()
                    if wait > 0 and stop.wait(wait):
                        return
                    self._poll(client, job)
        finally:
            self._pool.shutdown(cancel_futures=True)

    def _load(self, job: _Job, data: bytes) -> LoadReport:
        future = self._pool.submit(_load_in_child, str(self.catalog.root), job.feed, job.kind, data, job.url)
        try:
            return future.result(timeout=LOAD_TIMEOUT_S)
        except BrokenProcessPool:  # the child died (killed, out of memory): a new one for the next poll
            self._pool = _child_pool()
            raise
        except FutureTimeout:
            _kill_children(self._pool)
            self._pool = _child_pool()
            message = (f"realtime '{job.feed}' {job.kind} from {job.url}: decoding and publishing took over "
                       f"{LOAD_TIMEOUT_S:.0f} s and was stopped; the last good data stays. Check the feed's size "
                       f"and contents, or lower realtime.{job.feed}.max_bytes in citytwin.yaml")
            RealtimeState(self.catalog.build_path, job.feed).refused(job.kind, job.url, message)
            raise FeedRefused(message) from None

    @staticmethod
    def _after_unchanged(job: _Job, started: float) -> float:
        # a feed that has not changed for two intervals is paused: check it four times an interval,
        # so it is seen within a quarter interval when it resumes
        quiet = started - job.changed_at > 2 * job.interval_s
        return job.interval_s / 4 if quiet else job.retry_s

    def _poll(self, client: httpx.Client, job: _Job) -> None:
        started = time.monotonic()
        cfg = self.catalog.realtime[job.feed]
        try:
            try:
                data = fetch_bounded(client, job.url, cfg.max_bytes, FETCH_TIMEOUT_S,
                                     f"Raise realtime.{job.feed}.max_bytes in citytwin.yaml if the feed is genuine")
            except FetchError as exc:  # load_feed records its own refusals; this one never reached it
                RealtimeState(self.catalog.build_path, job.feed).refused(job.kind, job.url, str(exc))
                raise
            digest = hashlib.blake2b(data, digest_size=16).digest()
            if digest == job.last_digest and job.last_error is None:  # the same bytes: nothing to decode
                job.due = started + self._after_unchanged(job, started)
                return
            report = self._load(job, data)
            job.last_digest = digest
        except CitytwinError as exc:
            if str(exc) != job.last_error:  # say it once, not every interval
                log.warning("realtime %s %s refused: %s", job.feed, job.kind, exc)
            job.last_error, job.due = str(exc), started + job.interval_s
            return
        except Exception:  # noqa: BLE001 - the poller must outlive any one bad poll
            log.exception("realtime %s %s: polling %s failed", job.feed, job.kind, job.url)
            job.due = started + job.interval_s
            return
        if job.last_error is not None:
            log.warning("realtime %s %s: good again: %s", job.feed, job.kind, report.summary())
        job.last_error = None
        if report.unchanged:
            job.due = started + self._after_unchanged(job, started)
        else:
            job.changed_at = started
            job.due = started + _next_poll_in(job, report.status.header_timestamp)


def _next_poll_in(job: _Job, header_timestamp: int | None) -> float:
    """Seconds from a poll that found a new feed to the next one: just before the next feed is due,
    by the feed's own clock (its header timestamp plus the interval) when that is sooner than one
    interval after this poll, so a poll that came late does not stay late."""
    after = job.interval_s - 2 * job.retry_s
    if header_timestamp:
        after = min(after, header_timestamp + job.interval_s - time.time() - job.retry_s)
    return max(job.retry_s, after)
