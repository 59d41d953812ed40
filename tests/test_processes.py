"""OGC API Processes as clients use them: OWSLib lists the processes and executes one with the
API key, synchronously and asynchronously; an accepted job answers 201 with its statusInfo and
a Location; execute requests naming callback URLs are refused before any job exists.

One served project (``citytwin serve`` over real HTTP): the live test city with its API key.
Results are compared with a synchronous execution of the same request.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from owslib.ogcapi.processes import Processes

from api_server import serve
from test_live import KEY, write_live_project

EXECUTE = "/processes/hazard-exposure/execution"
INPUTS = {"hazard": "buildings", "targets": ["landmarks"]}
RESULTS_REL = "http://www.opengis.net/def/rel/ogc/1.0/results"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Iterator[str]:
    project: Path = write_live_project(tmp_path_factory.mktemp("processes"))
    with serve(project) as url:
        yield url


def execute(base: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{base}{EXECUTE}", json=body, headers={"X-API-Key": KEY, **headers}, timeout=120)


def finished(status_url: str) -> dict:
    """The job's statusInfo once it is no longer accepted or running (polled, at most 600 times)."""
    for _ in range(600):
        info = httpx.get(status_url, headers={"X-API-Key": KEY}, timeout=30).json()
        if info["status"] not in ("accepted", "running"):
            return info
        time.sleep(0.2)
    raise AssertionError(f"job at {status_url} still {info['status']}")


def link(info: dict, rel: str) -> str:
    (href,) = [lk["href"] for lk in info["links"] if lk["rel"] == rel]
    return href


def test_async_execute_answers_201_with_the_status_info(base):
    resp = execute(base, {"inputs": INPUTS}, Prefer="respond-async")
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    location = resp.headers["location"]
    info = resp.json()
    assert isinstance(info, dict), info
    assert info["jobID"] == location.rstrip("/").rsplit("/", 1)[1]
    assert info["type"] == "process" and info["processID"] == "hazard-exposure"
    assert info["status"] in ("accepted", "running", "successful")
    monitor = link(info, "monitor")
    assert monitor.split("?")[0] == location
    assert link(info, RESULTS_REL).split("?")[0] == f"{location}/results"

    assert finished(monitor)["status"] == "successful"
    results = httpx.get(link(info, RESULTS_REL), headers={"X-API-Key": KEY}, timeout=60)
    assert results.status_code == 200
    assert results.json() == execute(base, {"inputs": INPUTS}).json()


def test_owslib_lists_the_processes_and_executes_one_with_the_key(base):
    client = Processes(base, headers={"X-API-Key": KEY})
    assert {p["id"] for p in client.processes()} == {"hazard-exposure", "alert-targets"}
    assert client.process("alert-targets")["inputs"]["buffer_m"]["schema"]["type"] == "number"
    expected = execute(base, {"inputs": INPUTS}).json()
    assert client.execute("hazard-exposure", INPUTS, response="raw") == expected

    accepted = client.execute("hazard-exposure", INPUTS, response="raw", async_=True)
    assert accepted["status"] in ("accepted", "running", "successful")
    assert finished(link(accepted, "monitor"))["status"] == "successful"
    results = httpx.get(link(accepted, RESULTS_REL), headers={"X-API-Key": KEY}, timeout=60)
    assert results.json() == expected


def test_owslib_without_the_key_gets_the_401_message(base):
    with pytest.raises(RuntimeError, match="X-API-Key"):
        Processes(base, headers={"X-API-Key": ""}).execute("hazard-exposure", INPUTS)


@pytest.fixture
def silent_subscriber() -> Iterator[str]:
    """A callback URL whose server accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"http://127.0.0.1:{server.getsockname()[1]}/done"


def test_callback_urls_are_refused_before_a_job_exists(base, silent_subscriber):
    def job_count() -> int:
        return httpx.get(f"{base}/jobs", params={"limit": 1000}, headers={"X-API-Key": KEY},
                         timeout=30).json()["numberMatched"]

    before = job_count()
    for subscriber in ({"successUri": silent_subscriber}, {"successUri": "http://127.0.0.1:9/refused"}):
        for prefer in ("respond-async", "respond-sync"):
            resp = execute(base, {"inputs": INPUTS, "subscriber": subscriber}, Prefer=prefer)
            assert resp.status_code == 400, resp.text
            body = resp.json()
            assert body["type"] == "InvalidParameterValue"
            assert "'subscriber' (callback URLs) is not offered" in body["description"]
    assert job_count() == before


def test_deleting_job_results_is_405_with_or_without_a_key(base):
    job = execute(base, {"inputs": INPUTS}).headers["location"].rstrip("/").rsplit("/", 1)[1]
    for headers in ({}, {"X-API-Key": KEY}):
        resp = httpx.delete(f"{base}/jobs/{job}/results", headers=headers, timeout=30)
        assert resp.status_code == 405, resp.text
        assert resp.headers["allow"] == "GET, HEAD"
        assert resp.json()["type"] == "MethodNotAllowed"
    assert httpx.get(f"{base}/jobs/{job}", headers={"X-API-Key": KEY}, timeout=30).status_code == 200
