"""The SQLite files the server processes share (live items, GTFS-Realtime state): WAL mode, so
readers never wait on the one writer; autocommit, so every transaction is an explicit BEGIN."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def wal_connection(path: Path) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(path, timeout=15, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        yield con
    finally:
        con.close()
