"""What each partition of a job cost, kept with the build so the run can be sized from it.

A job (an ingest, a PMTiles archive) runs partitions, in process or on Dask, and a driver that
plans before them and writes after them. Each partition records the seconds it spent reading
from its source or store, the seconds of its own work (repair and reprojection, or encoding
tiles), the rows it read and the bytes it handed back; the driver records its own seconds
(planning, merging, writing). ``benchmarks/scaling_model.py`` predicts larger runs from them.
The log is ``<build>/costs/<layer>.<job>.json``, replaced whole by each run.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

COSTS_DIR = "costs"


@dataclass(frozen=True)
class PartitionCost:
    read_s: float  # reading its rows (source file or store)
    work_s: float  # its own computing: repair and reprojection, or tile encoding
    rows: int  # rows read
    bytes: int  # bytes handed back to the driver
    whole_layer: bool = False  # reads the whole layer (grows with it), not a block or window of fixed size
    zooms: tuple[tuple[int, int, float], ...] = ()  # PMTiles: (zoom, rows encoded, seconds) of its work


@dataclass
class CostLog:
    job: str  # 'ingest' | 'pmtiles'
    layer: str
    features: int
    workers: int  # 1 in process
    wall_s: float  # the whole job
    driver_s: float  # the driver's own time: planning, merging, writing and swapping
    write_s: float  # of driver_s: writing the output and swapping it in
    partitions: list[PartitionCost] = field(default_factory=list)
    threads: int = 1  # PMTiles: zooms a partition encoded at once; over 1, their seconds overlap

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> CostLog:
        parts = [PartitionCost(**{**p, "zooms": tuple(tuple(z) for z in p.get("zooms", ()))})
                 for p in doc["partitions"]]
        return cls(**{**doc, "partitions": parts})


def cost_log_path(build: Path, layer: str, job: str) -> Path:
    return Path(build) / COSTS_DIR / f"{layer}.{job}.json"


def write_cost_log(build: Path, log: CostLog) -> Path:
    """The log written whole next to the build's other records (a reader never sees half of it)."""
    path = cost_log_path(build, log.layer, log.job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(log.as_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_cost_log(path: Path) -> CostLog:
    return CostLog.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
