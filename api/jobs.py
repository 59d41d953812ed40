"""Jobs of the process manager, each readable only with the API key that started it.

pygeoapi's job routes (``/jobs``, ``/jobs/{id}``, ``/jobs/{id}/results``) show every job to
anyone. Here the id of the key that ran a process is written into the job's record (the
manager's TinyDB file) before the client learns the job id, and only that key may list,
read or dismiss the job; to any other key a job it does not own does not exist (the same
404 as an unknown id).
"""
from __future__ import annotations

from typing import Any

from pygeoapi.process.base import JobNotFoundError
from pygeoapi.process.manager.base import BaseManager, get_manager
from pygeoapi.util import JobStatus, yaml_load

OWNER = "citytwin_owner"
RESULTS_REL = "http://www.opengis.net/def/rel/ogc/1.0/results"
_SHOWN = ("status", "message", "progress", "created", "started", "finished", "updated")


class Jobs:
    """The job manager named in the generated pygeoapi config, seen through job ownership."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self._manager: BaseManager | None = None
        self._base_url = ""

    @property
    def manager(self) -> BaseManager:
        if self._manager is None:
            with open(self.config_path, encoding="utf-8") as f:
                config = yaml_load(f)
            self._manager = get_manager(config)
            self._base_url = config["server"]["url"].rstrip("/")
        return self._manager

    def claim(self, job_id: str, owner: str) -> None:
        """Record ``owner`` (a key id) as the job's owner."""
        self.manager.update_job(job_id, {OWNER: owner})

    def owned(self, job_id: str, owner: str) -> dict[str, Any] | None:
        """The job record when ``owner`` started it, else None (unknown and foreign look alike)."""
        try:
            job = self.manager.get_job(job_id)
        except JobNotFoundError:
            return None
        return job if job.get(OWNER) == owner else None

    def dismiss(self, job_id: str) -> None:
        self.manager.delete_job(job_id)

    def listing(self, owner: str, limit: int, offset: int) -> dict[str, Any]:
        """``owner``'s jobs, newest first, as the OGC API Processes job list."""
        mine = [j for j in self.manager.get_jobs()["jobs"] if j.get(OWNER) == owner]
        mine.sort(key=lambda j: j.get("started") or "", reverse=True)
        page = mine[offset:offset + limit]
        links = [{"href": f"{self._base_url}/jobs?f=json&limit={limit}&offset={offset}", "rel": "self",
                  "type": "application/json", "title": "This list of jobs"}]
        if offset + limit < len(mine):
            links.append({"href": f"{self._base_url}/jobs?f=json&limit={limit}&offset={offset + limit}",
                          "rel": "next", "type": "application/json", "title": "Next jobs"})
        return {"jobs": [self._summary(j) for j in page], "numberMatched": len(mine),
                "numberReturned": len(page), "links": links}

    def status_info(self, job_id: str) -> dict[str, Any]:
        """The job's statusInfo, linking to where its status and its results are read."""
        info = {k: v for k, v in self._summary(self.manager.get_job(job_id)).items() if v is not None}
        url = f"{self._base_url}/jobs/{job_id}"
        info["links"] = [
            {"href": f"{url}?f=json", "rel": "monitor", "type": "application/json", "title": "Status of the job"},
            {"href": f"{url}/results?f=json", "rel": RESULTS_REL, "type": "application/json",
             "title": "Results of the job, once it has succeeded"}]
        return info

    def _summary(self, job: dict[str, Any]) -> dict[str, Any]:
        out = {"type": "process", "processID": job["process_id"], "jobID": job["identifier"],
               **{k: job.get(k) for k in _SHOWN}}
        if job.get("status") == JobStatus.successful.value:
            out["links"] = [{"href": f"{self._base_url}/jobs/{job['identifier']}/results?f=json",
                             "rel": RESULTS_REL, "type": "application/json", "title": "Results of the job"}]
        return out
