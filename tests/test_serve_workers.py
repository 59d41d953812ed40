"""``citytwin serve --workers 2``: two stateless processes answer on one port, and answer alike."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from api_server import SERVER_PIDS, make_project, serve

WAIT_FOR_BOTH_S = 150  # a worker may still be building its app (uvicorn's healthcheck allows it 120 s)


def parent_pid(pid: int) -> int:
    """The parent of ``pid`` as the kernel has it: the field after the state in /proc/PID/stat."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(after_name[1])


def ask(base: str) -> tuple[int, int, int]:
    """(pid, status, numberMatched) from one new connection: /stats names the process that holds
    the connection, and the items request on the same keep-alive connection is answered by it."""
    with httpx.Client(timeout=30) as client:
        pid = client.get(f"{base}/stats").json()["pid"]
        r = client.get(f"{base}/collections/buildings/items", params={"limit": 1, "f": "json"})
        again = client.get(f"{base}/stats").json()["pid"]
    assert again == pid, "one keep-alive connection was answered by two processes"
    return pid, r.status_code, r.json()["numberMatched"]


def test_two_server_processes_answer_alike(tmp_path: Path):
    data = make_project(tmp_path / "proj")
    with serve(tmp_path / "proj", extra_args=("--workers", "2")) as base:
        supervisor = SERVER_PIDS[base]
        answers: set[tuple[int, int, int]] = set()
        deadline = time.monotonic() + WAIT_FOR_BOTH_S
        with ThreadPoolExecutor(8) as pool:
            while len({pid for pid, _, _ in answers}) < 2 and time.monotonic() < deadline:
                answers |= set(pool.map(lambda _: ask(base), range(16)))
        pids = {pid for pid, _, _ in answers}
        assert len(pids) == 2, f"only {pids} answered within {WAIT_FOR_BOTH_S} s"
        assert supervisor not in pids
        assert {parent_pid(pid) for pid in pids} == {supervisor}  # both are the serve process's workers
    assert answers == {(pid, 200, len(data["buildings"])) for pid in pids}
