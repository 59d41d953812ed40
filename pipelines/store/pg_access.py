"""Running one read on the PostGIS pool so that a database outage is a StoreUnavailableError.

While the database is down, requests must fail fast (a 503 the client can retry) instead
of waiting the pool's full timeout, and they must succeed again as soon as it is back. So:
after a connection-level failure the pool is marked down and callers wait at most
``DOWN_WAIT_S`` for a connection; the first success clears the mark. Connections the server
closed while idle (a restart) fail on first use: such a read is retried on another one.
The error's message reaches HTTP clients, so it names neither host nor user; the log says
when the database stops and starts answering, and why.
PoolAccess serves threads, AsyncPoolAccess the event loop (the tile route's reads); a store's
two share one DbState, so what one learns of the database the other knows at once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from geo.errors import StoreUnavailableError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: How long a caller waits for a connection while the database is known to be down.
DOWN_WAIT_S = 1.0
#: How long a caller waits for a connection otherwise (the pool is busy, not down).
UP_WAIT_S = 10.0


class DbState:
    """Whether the database at ``where`` answers, as the last read on any of its pools found."""

    def __init__(self, where: str):
        self.where = where
        self._down_since: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def wait_s(self) -> float:
        """How long a caller waits for a connection now."""
        return DOWN_WAIT_S if self.down else UP_WAIT_S

    def mark_down(self, reason: str) -> None:
        """Until a read succeeds, callers wait only briefly for a connection."""
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("PostGIS at %s is not answering (%s); requests get 503 until it is back",
                            self.where, reason)

    def mark_up(self) -> None:
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    log.warning("PostGIS at %s answers again after %.1f s", self.where,
                                time.monotonic() - self._down_since)
                    self._down_since = None


class PoolAccess:
    """Reads on one pool of threads' connections, with the database's up/down state shared by every caller."""

    def __init__(self, pool: ConnectionPool, where: str, state: DbState | None = None):
        self.pool = pool
        self.where = where
        self.state = state or DbState(where)

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """``work(conn)`` on a pooled connection. Raises StoreUnavailableError when the database
        cannot be reached or cancelled the statement (statement_timeout)."""
        # a restart leaves every idle pooled connection dead: try past all of them
        for _ in range(self.pool.max_size + 1):
            try:
                with self.pool.connection(timeout=self.state.wait_s) as conn:
                    try:
                        result = work(conn)
                    except psycopg.OperationalError as exc:
                        if conn.broken:
                            self.state.mark_down(_first_line(exc))
                            continue  # the pool replaces it on return; try another
                        raise
            except (PoolTimeout, psycopg.errors.QueryCanceled, psycopg.OperationalError) as exc:
                raise _failed(self.state, exc) from None
            self.state.mark_up()
            return result
        raise _unavailable()


class AsyncPoolAccess:
    """PoolAccess for coroutines on the event loop, over an AsyncConnectionPool: the same
    fast failure while the database is down, the same retries past dead connections."""

    def __init__(self, pool: AsyncConnectionPool, state: DbState):
        self.pool = pool
        self.state = state

    async def run(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """``await work(conn)`` on a pooled connection; StoreUnavailableError as PoolAccess.run."""
        for _ in range(self.pool.max_size + 1):
            try:
                async with self.pool.connection(timeout=self.state.wait_s) as conn:
                    try:
                        result = await work(conn)
                    except psycopg.OperationalError as exc:
                        if conn.broken:
                            self.state.mark_down(_first_line(exc))
                            continue
                        raise
            except (PoolTimeout, psycopg.errors.QueryCanceled, psycopg.OperationalError) as exc:
                raise _failed(self.state, exc) from None
            self.state.mark_up()
            return result
        raise _unavailable()


def _failed(state: DbState, exc: Exception) -> StoreUnavailableError:
    """The error a caller gets for a read that failed with ``exc``, noting an outage."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return StoreUnavailableError(
            "the database took longer than its statement_timeout on this request; try again "
            "later or ask for a smaller area")
    state.mark_down("no connection could be made" if isinstance(exc, PoolTimeout) else _first_line(exc))
    return _unavailable()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unavailable() -> StoreUnavailableError:
    return StoreUnavailableError(f"the database is not answering; retry in {StoreUnavailableError.retry_after_s} s")
