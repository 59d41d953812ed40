"""Running one read on the PostGIS pool so that a database outage is a StoreUnavailableError.

While the database is down, requests must fail fast (a 503 the client can retry) instead
of waiting the pool's full timeout, and they must succeed again as soon as it is back. So:
after a connection-level failure the pool is marked down and callers wait at most
``DOWN_WAIT_S`` for a connection; the first success clears the mark. Connections the server
closed while idle (a restart) fail on first use: such a read is retried on another one.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from geo.errors import StoreUnavailableError

T = TypeVar("T")

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
                    except psycopg.OperationalError:
                        if conn.broken:
                            self._mark_down()  # until a read succeeds, wait only briefly
                            continue  # the pool replaces it on return; try another
                        raise
            except PoolTimeout:
                self._mark_down()
                raise self._unavailable("no connection could be made") from None
            except psycopg.errors.QueryCanceled:
                raise StoreUnavailableError(
                    f"the database at {self.where} took longer than its statement_timeout; try again "
                    "later or ask for a smaller area") from None
            except psycopg.OperationalError as exc:
                self._mark_down()
                raise self._unavailable(str(exc).strip().splitlines()[0] if str(exc).strip() else
                                        type(exc).__name__) from None
            self._mark_up()
            return result
        self._mark_down()
        raise self._unavailable("every pooled connection was lost")

    def _mark_down(self) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()

    def _mark_up(self) -> None:
        if self._down_since is not None:
            with self._lock:
                self._down_since = None

    def _unavailable(self, reason: str) -> StoreUnavailableError:
        return StoreUnavailableError(f"the database at {self.where} is not answering ({reason}); "
                                     f"retry in {StoreUnavailableError.retry_after_s} s")
