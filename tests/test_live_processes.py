"""Live layers served by more than one process (``serve --workers N`` or several hosts on one
build folder): the items live in the layer's SQLite file, not in a process, so what one
process accepts every other one serves, and concurrent writers lose nothing.

Two separate ``citytwin serve`` processes on the same project stand in for two workers: each
request below is known to reach the process it is sent to.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from api_server import serve
from test_live import KEY, collection, item, write_live_project


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_live_project(tmp_path_factory.mktemp("live-procs"))


def test_items_written_through_one_process_are_served_by_the_other(project: Path) -> None:
    with serve(project) as a, serve(project) as b:
        def post(base: str, n: int) -> int:
            body = collection(item(f"i{n:03d}", 126.97 + n * 1e-4, 37.56, kind="test", n=n))
            return httpx.post(f"{base}/live/incidents/items", json=body, headers={"X-API-Key": KEY},
                              timeout=60).status_code

        # 60 posts, alternating between the processes, 8 at a time: SQLite serialises the writers
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda n: post(a if n % 2 else b, n), range(60)))
        assert codes == [201] * 60

        want = {f"i{n:03d}" for n in range(60)}
        for base in (a, b):
            got = httpx.get(f"{base}/live/incidents/items", params={"limit": 1000}, timeout=30).json()
            assert {f["id"] for f in got["features"]} == want
            assert {f["properties"]["n"] for f in got["features"]} == set(range(60))

        # a replacement written through b is what a serves next
        moved = item("i007", 126.99, 37.57, kind="moved", n=7)
        assert httpx.post(f"{b}/live/incidents/items", json=moved, headers={"X-API-Key": KEY},
                          timeout=30).status_code == 201
        seen = httpx.get(f"{a}/live/incidents/items", params={"limit": 1000}, timeout=30).json()
        (again,) = [f for f in seen["features"] if f["id"] == "i007"]
        assert again["properties"]["kind"] == "moved" and again["geometry"]["coordinates"] == pytest.approx([126.99, 37.57])
