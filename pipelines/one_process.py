"""Work that one process of several must do (polling a source for every server worker).

Each process starts an OneProcessLoop; only the one holding an exclusive lock on its lock file
runs the work, the others try again every few seconds, so another takes over when the holder
ends (the kernel drops the lock with the process).
"""
from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path

RETRY_S = 5.0


class OneProcessLoop:
    """Runs ``work(stop)`` on a daemon thread while this process holds the lock on ``lock_path``;
    ``work`` returns once ``stop`` is set."""

    def __init__(self, name: str, lock_path: Path, work: Callable[[threading.Event], None]) -> None:
        self.lock_path = lock_path
        self.work = work
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            while not self.stop_event.is_set():
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another process does the work
                    self.stop_event.wait(RETRY_S)
                    continue
                self.work(self.stop_event)
        finally:
            os.close(fd)  # releases the lock
