"""The process resources and the job manager for the generated pygeoapi configuration."""
from __future__ import annotations

from pipelines.catalog import Catalog

PROCESSES = {
    "hazard-exposure": "api.processes.exposure.HazardExposureProcessor",
    "alert-targets": "api.processes.exposure.AlertTargetsProcessor",
}
JOBS_DIR = "pygeoapi"


def process_resources(catalog: Catalog) -> dict[str, dict]:
    """``resources`` entries of type process; each processor is told the project folder."""
    return {pid: {"type": "process", "processor": {"name": cls, "project": str(catalog.root)}}
            for pid, cls in PROCESSES.items()}


def process_manager(catalog: Catalog) -> dict:
    """TinyDB job manager: async jobs (Prefer: respond-async) with their status and results on disk."""
    out = catalog.build_path / JOBS_DIR / "jobs"
    out.mkdir(parents=True, exist_ok=True)
    return {"name": "TinyDB", "connection": str(catalog.build_path / JOBS_DIR / "jobs.db"), "output_dir": str(out)}
