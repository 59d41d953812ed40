"""``citytwin serve --workers 2``: several stateless processes answer on one port."""
from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from api_server import make_project, serve


def test_two_server_processes_answer_alike(tmp_path: Path):
    data = make_project(tmp_path / "proj")
    with serve(tmp_path / "proj", extra_args=("--workers", "2")) as base:
        supervisor = subprocess.run(["pgrep", "-f", f"serve --project {tmp_path / 'proj'}"],
                                    capture_output=True, text=True).stdout.split()
        children = subprocess.run(["pgrep", "-P", ",".join(supervisor)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2  # uvicorn's workers (plus its resource tracker, if any)

        def count(_):
            r = httpx.get(f"{base}/collections/buildings/items", params={"limit": 1, "f": "json"}, timeout=30)
            return r.status_code, r.json()["numberMatched"]

        with ThreadPoolExecutor(8) as pool:
            answers = set(pool.map(count, range(32)))
    assert answers == {(200, len(data["buildings"]))}
