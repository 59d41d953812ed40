"""Layer versions the tile route knows without a query per tile.

Every publish sends ``NOTIFY citytwin_layers`` in its transaction (PostgreSQL delivers it at
commit). One connection per process LISTENs; while it does, a version read once is kept until
the next notification, so a warm tile needs no database round trip. While it does not (the
database is down, or the listener has not connected yet), every request reads the version, as
before: nothing served is older than the last publish the listener could have heard.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "citytwin_layers"
#: Pause before the listener connects again after losing its connection.
RETRY_S = 1.0


class LayerVersions:
    """Versions of one schema's layers, dropped whenever any layer is published."""

    def __init__(self, url: str, connect_kwargs: dict):
        self._url = url
        self._kwargs = connect_kwargs
        self._known: dict[str, int] = {}
        self._listening = False
        self._epoch = 0  # grows on every notification and every (re)connection
        self._task: asyncio.Task | None = None

    @property
    def listening(self) -> bool:
        return self._listening

    def start(self) -> None:
        """Listen from a task of the running loop (it ends when the loop cancels it at shutdown)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="citytwin-layer-versions")

    async def get(self, layer: str, read: Callable[[], Awaitable[int]]) -> int:
        """``layer``'s version: the one known, or ``await read()`` (kept only when no
        notification came while it was read, so a publish racing the read is not lost)."""
        if self._listening and (known := self._known.get(layer)) is not None:
            return known
        epoch = self._epoch
        version = await read()
        if self._listening and epoch == self._epoch:
            self._known[layer] = version
        return version

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True, **self._kwargs) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._forget(listening=True)
                    async for _ in conn.notifies():
                        self._forget(listening=True)
            except psycopg.Error as exc:
                if self._listening:
                    log.warning("stopped listening for layer publishes (%s); versions are read per request",
                                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            finally:
                self._forget(listening=False)
            await asyncio.sleep(RETRY_S)

    def _forget(self, *, listening: bool) -> None:
        self._known.clear()
        self._epoch += 1
        self._listening = listening


def notify_sql() -> str:
    """The statement a publish runs in its transaction (parameter: the layer name)."""
    return f"SELECT pg_notify('{CHANNEL}', %s)"
