"""Where partitions run: in this process (default) or on a Dask cluster.

A partition is one call of a top-level function on one item (a block of tiles x a zoom
range of a PMTiles archive, which reads its own rows from the store; a window of an ingest
source's features, read from the file; a leaf of a 3D Tiles tree). Partitions may share inputs
made once by tasks before them (``map_after``: slices of a layer each read once). Partitions
are independent and idempotent: they return bytes and figures to the driver, which alone
writes the output and swaps it in atomically, so a retried partition (after a worker died)
cannot leave duplicates.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: called with (done, total) after each finished partition
Progress = Callable[[int, int], None]


class Runner(Protocol):
    def map(self, fn: Callable, items: Sequence, *, shared: dict[str, Any] | None = None,
            progress: Progress | None = None) -> list: ...

    def map_after(self, first: Callable, first_items: Sequence, fn: Callable, items: Sequence, *, name: str,
                  shared: dict[str, Any] | None = None, progress: Progress | None = None) -> list:
        """``fn(item, **{name: inputs}, **shared)`` for each item, ``inputs`` being
        ``[first(i, **shared) for i in first_items]``, each computed once for all items."""

    def workers(self) -> int: ...

    def close(self) -> None: ...


class InProcessRunner:
    """Runs partitions one after another in this process."""

    def map(self, fn, items, *, shared=None, progress=None):
        out = []
        for i, item in enumerate(items):
            out.append(fn(item, **(shared or {})))
            if progress:
                progress(i + 1, len(items))
        return out

    def map_after(self, first, first_items, fn, items, *, name, shared=None, progress=None):
        inputs = [first(i, **(shared or {})) for i in first_items]
        return self.map(fn, items, shared={**(shared or {}), name: inputs}, progress=progress)

    def workers(self) -> int:
        return 1

    def close(self) -> None:
        pass


class DaskRunner:
    """Runs partitions on a Dask cluster: a LocalCluster of ``workers`` processes, or the
    scheduler at ``address``. Shared inputs are scattered once to every worker; a task
    whose worker dies is retried elsewhere (``retries``).

    The cluster starts (or the client connects) on a thread of its own: made before the caller's
    own imports and planning, the workers come up meanwhile (~1 s locally). The first call that
    needs them waits, and raises what the start raised."""

    def __init__(self, workers: int | None = None, address: str | None = None, retries: int = 3):
        self.retries = retries
        self._local_workers = None if address else workers or 2
        self.cluster = None
        self._client = None
        self._failed: BaseException | None = None
        self._starting = threading.Thread(target=self._start, args=(address,), daemon=True,
                                          name="citytwin-dask-start")
        self._starting.start()

    def _start(self, address: str | None) -> None:
        try:
            from dask.distributed import Client, LocalCluster

            # after the import, which sets distributed's own levels: its INFO lines drown our report
            logging.getLogger("distributed").setLevel(logging.WARNING)
            if address:
                self._client = Client(address)
            else:
                import dask

                # Dask's nanny gives workers MALLOC_TRIM_THRESHOLD_=65536; setting it at all stops glibc
                # from raising its mmap threshold, so every large numpy array of a partition became
                # fresh pages from the kernel: the 600k city's PMTiles build took 72 s instead of 55 s
                # in one process with it (benchmarks/notes.md). None unsets it for our local workers.
                with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                                      "distributed.worker.multiprocessing-method": "forkserver"}):
                    _preload_worker_modules()
                    self.cluster = LocalCluster(n_workers=self._local_workers, threads_per_worker=1, processes=True,
                                                dashboard_address=None, silence_logs=logging.ERROR)
                self._client = Client(self.cluster)
            log.info("dask: %s", self._client)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that uses the runner
            self._failed = exc

    @property
    def client(self):
        self._starting.join()
        if self._failed is not None:
            raise self._failed
        return self._client

    def map(self, fn, items, *, shared=None, progress=None):
        if not items:
            return []
        futures = self.client.map(fn, list(items), retries=self.retries, pure=False, **self._scattered(shared))
        return self._gathered(futures, progress)

    def map_after(self, first, first_items, fn, items, *, name, shared=None, progress=None):
        """The inputs stay on the workers that made them and move between workers, never through
        the driver; one lost with its worker is made again (Dask keeps how each was made)."""
        if not items:
            return []
        scattered = self._scattered(shared)
        inputs = self.client.map(first, list(first_items), retries=self.retries, pure=False, **scattered)
        futures = self.client.map(fn, list(items), retries=self.retries, pure=False, **{name: inputs}, **scattered)
        return self._gathered(futures, progress)

    def _scattered(self, shared: dict[str, Any] | None) -> dict:
        # scatter each value whole (a dict given to scatter would be split into its values)
        return {k: self.client.scatter([v], broadcast=True)[0] for k, v in (shared or {}).items()}

    def _gathered(self, futures: list, progress: Progress | None) -> list:
        from dask.distributed import as_completed

        for done, _ in enumerate(as_completed(futures), start=1):
            if progress:
                progress(done, len(futures))
        return self.client.gather(futures)

    def workers(self) -> int:
        """Workers to plan for: those asked of a local cluster (known before it is up), else those
        the scheduler has now."""
        if self._local_workers is not None:
            return self._local_workers
        return len(self.client.scheduler_info()["workers"])

    def worker_pids(self) -> list[int]:
        import os

        return list(self.client.run(os.getpid).values())

    def close(self) -> None:
        self._starting.join()
        if self.cluster is not None:
            self.cluster.close()  # stops the workers first, so the client sees no lost comms
        if self._client is not None:
            self._client.close()


#: what every partition needs, imported once by the fork server that local workers are forked from
WORKER_MODULES = ("distributed", "pipelines.store", "tiles.pmtiles_partitions")


def _preload_worker_modules() -> None:
    """Local workers are forked from one server process that imports WORKER_MODULES first: a spawned
    worker imported them itself, during its first partition, and finalised them at close (start,
    first task and close of two workers 1.5-1.9 s against ~1.1 s, benchmarks/notes.md). Forked from
    a fresh single-threaded server, not from this process with its threads and connections. A worker
    restarted after it died is spawned (the method is set only while the cluster starts)."""
    from distributed.utils import get_mp_context

    get_mp_context().set_forkserver_preload(list(WORKER_MODULES))  # no effect once the server runs


def make_runner(workers: int | None = None, scheduler: str | None = None) -> Runner:
    if scheduler or (workers and workers > 1):
        return DaskRunner(workers=workers, address=scheduler)
    return InProcessRunner()
