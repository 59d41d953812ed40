"""Running one read on the PostGIS pool so that a database outage is a StoreUnavailableError.

While the database is down, requests must fail fast (a 503 the client can retry) instead
of waiting the pool's full timeout, and they must succeed again as soon as it is back. So:
after a connection-level failure the pool is marked down and callers wait at most
``DOWN_WAIT_S`` for a connection; the first success clears the mark. Connections the server
closed while idle (a restart) fail on first use: such a read is retried on another one.
The error's message reaches HTTP clients, so it names neither host nor user; the log says
when the database stops and starts answering, and why.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from geo.errors import StoreUnavailableError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: How long a caller waits for a connection while the database is known to be down.
DOWN_WAIT_S = 1.0
#: How long a caller waits for a connection otherwise (the pool is busy, not down).
UP_WAIT_S = 10.0


class PoolAccess:
    """Reads on one pool, with the database's up/down state shared by every caller."""

    def __init__(self, pool: ConnectionPool, where: str):
        self.pool = pool
        self.where = where
        self._down_since: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """``work(conn)`` on a pooled connection. Raises StoreUnavailableError when the database
        cannot be reached or cancelled the statement (statement_timeout)."""
        # a restart leaves every idle pooled connection dead: try past all of them
        for _ in range(self.pool.max_size + 1):
            try:
                with self.pool.connection(timeout=DOWN_WAIT_S if self.down else UP_WAIT_S) as conn:
                    try:
                        result = work(conn)
                    except psycopg.OperationalError as exc:
                        if conn.broken:
                            self._mark_down(_first_line(exc))
                            continue  # the pool replaces it on return; try another
                        raise
            except PoolTimeout:
                self._mark_down("no connection could be made")
                raise _unavailable() from None
            except psycopg.errors.QueryCanceled:
                raise StoreUnavailableError(
                    "the database took longer than its statement_timeout on this request; try again "
                    "later or ask for a smaller area") from None
            except psycopg.OperationalError as exc:
                self._mark_down(_first_line(exc))
                raise _unavailable() from None
            self._mark_up()
            return result
        raise _unavailable()

    def _mark_down(self, reason: str) -> None:
        """Until a read succeeds, callers wait only briefly for a connection."""
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("PostGIS at %s is not answering (%s); requests get 503 until it is back",
                            self.where, reason)

    def _mark_up(self) -> None:
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    log.warning("PostGIS at %s answers again after %.1f s", self.where,
                                time.monotonic() - self._down_since)
                    self._down_since = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unavailable() -> StoreUnavailableError:
    return StoreUnavailableError(f"the database is not answering; retry in {StoreUnavailableError.retry_after_s} s")
