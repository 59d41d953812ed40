"""schemathesis over /openapi of the sample city: no 5xx, and every answer matches its schema.

``st run`` (the schemathesis CLI from the test extra) generates requests from the document the
server publishes, sends them to a real ``citytwin serve`` and checks each answer: no server
error, a status the operation documents, and a JSON body that validates against the response
schema documented for that status.
The run is bounded (a fixed seed, a per-operation budget) and must reach at least 5,000 cases,
counted by schemathesis's own JSON report. pygeoapi's routes (landing, conformance, collections,
items, queryables, processes, jobs) are held to the same checks: the document describing them is
ours (api/openapi_components.py). One worker: schemathesis's threads trip a CPython
3.11 ``ast`` recursion check ("AST constructor recursion depth mismatch").
"""
from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from api_server import REPO, serve

KEY_ID, KEY = "fuzz", "schemathesis-key-27182"
MIN_CASES = 5_000
EXAMPLES_PER_OPERATION = 40  # with the coverage and stateful phases, ~6,000 cases for ~80 operations
ST = REPO / ".venv" / "bin" / "st"


@pytest.fixture(scope="module")
def base(built_sample_city: Path, tmp_path_factory) -> Iterator[str]:
    # generated requests run processes and post live items with a valid key: a copy takes them
    project = tmp_path_factory.mktemp("fuzz") / "city"
    shutil.copytree(built_sample_city, project)
    with serve(project, extra_env={"CITYTWIN_API_KEYS": f"{KEY_ID}:{KEY}"}) as url:
        yield url


def _external_refs(node: object) -> list[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        own = [ref] if isinstance(ref, str) and not ref.startswith("#") else []
        return own + [r for v in node.values() for r in _external_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _external_refs(v)]
    return []


def test_openapi_is_self_contained(base: str) -> None:
    """Every $ref resolves inside the document: validators and offline clients need no network."""
    doc = httpx.get(f"{base}/openapi", params={"f": "json"}, timeout=30).json()
    assert _external_refs(doc) == []
    validate(doc)
    conformance = doc["paths"]["/conformance"]["get"]["responses"]["200"]
    assert conformance == {"$ref": "#/components/responses/ConformanceDeclaration"}
    body = doc["components"]["responses"]["ConformanceDeclaration"]["content"]["application/json"]["schema"]
    assert body["required"] == ["conformsTo"]


def _st_run(base: str, report_path: Path, *args: str) -> tuple[dict, str]:
    """``st run`` over ``base``/openapi with ``args``; its JSON report and its output."""
    proc = subprocess.run(
        [str(ST), "run", f"{base}/openapi?f=json", "--workers", "1", "--header", f"X-API-Key: {KEY}",
         "--request-timeout", "60", "--report", "json", "--report-json-path", str(report_path),
         "--output-truncate", "false", *args],
        capture_output=True, text=True, timeout=1500, cwd=report_path.parent)
    log = proc.stdout + proc.stderr
    assert report_path.exists(), f"st run wrote no report (exit {proc.returncode}):\n{log[-5_000:]}"
    return json.loads(report_path.read_text()), log


def _failures(report: dict, log: str) -> str:
    lines = [f"{f['code']} {f['title']}: {', '.join(f['operations'])}" for f in report["failures"]]
    lines += [f"error: {e}" for e in report["errors"]]
    return "\n".join(lines) + "\n\n" + log[-20_000:]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(base: str, tmp_path: Path) -> None:
    report, log = _st_run(base, tmp_path / "report.json",
                          "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance",
                          "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "20261202")
    assert report["complete"], log[-5_000:]
    assert report["errors"] == [] and report["failures"] == [], _failures(report, log)
    assert report["test_cases"]["generated"] >= MIN_CASES, report["test_cases"]
    assert report["exit_code"] == 0, log[-5_000:]


def test_services_accept_every_request_their_schema_allows(base: str, tmp_path: Path) -> None:
    """The schema states these routes' limits (non-blank addresses of at most 200 characters,
    1-1000 of them, lon/lat in range, AR angles, heights, limits and language tags): a request
    it allows is answered, not refused with a 400. /ar/anchors and /ar/route are left out: their
    bbox size and place forms are rules between values that a schema cannot state."""
    report, log = _st_run(base, tmp_path / "report.json", "--mode", "positive",
                          "--include-path-regex", "^/(geocode|reverse|transit/nearest|ar/view)$",
                          "--checks", "positive_data_acceptance,not_a_server_error,response_schema_conformance",
                          "--max-examples", "60", "--seed", "7")
    assert report["failures"] == [] and report["errors"] == [], _failures(report, log)
    assert report["test_cases"]["generated"] >= 150, report["test_cases"]
