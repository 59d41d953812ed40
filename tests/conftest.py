"""Shared test fixtures, grouped by what they provide.

Sections (add new fixtures under the matching heading, or start a new one):
  * generic helpers  - free_port
  * PostGIS          - postgis_url (session), pg_db_url (one fresh database per test)
  * real data        - the realdata marker: ../shared/data absent skips, or fails when CI is set
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from postgis_server import ClusterError, ThrowawayCluster, with_dbname
from postgis_server import free_port as _free_port
from shared_data import pytest_runtest_setup  # noqa: F401 - the realdata marker's check, see shared_data.py

# ---------------------------------------------------------------------------
# Generic helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for a TCP port on 127.0.0.1 that is free right now: ``port = free_port()``."""
    return _free_port


# ---------------------------------------------------------------------------
# PostGIS
#
# One PostgreSQL 15 + PostGIS per session: the user's own server when
# CITYTWIN_TEST_DATABASE_URL is set, else a throw-away cluster in a temp dir that is
# stopped and deleted at the end. Each test that asks for ``pg_db_url`` gets its own
# database, cloned from a template that already has PostGIS, and dropped afterwards.
# Without a database these tests FAIL (never skip): CI must not pass by skipping them.
# ---------------------------------------------------------------------------

TEST_DATABASE_URL_ENV = "CITYTWIN_TEST_DATABASE_URL"
TEMPLATE_DB = "template_citytwin"
_POSTGIS_FIXTURES = {"postgis_url", "pg_db_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the database get the 'postgis' marker, so -m 'not postgis' works.
    for item in items:
        if _POSTGIS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgis)


def _prepare_server(url: str) -> None:
    """PostGIS in the session database, and the template that per-test databases clone."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [TEMPLATE_DB]).fetchone() is None:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another session made it first
    with psycopg.connect(with_dbname(url, TEMPLATE_DB), autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")


@pytest.fixture(scope="session")
def postgis_url() -> Iterator[str]:
    """URL of a PostGIS-enabled database for the whole session."""
    external = os.environ.get(TEST_DATABASE_URL_ENV)
    cluster: ThrowawayCluster | None = None
    problem = None
    try:
        if external:
            url = external
        else:
            cluster = ThrowawayCluster()
            url = cluster.start()
        _prepare_server(url)
    except (ClusterError, psycopg.Error, OSError, subprocess.SubprocessError) as exc:
        problem = exc
        if cluster is not None:
            cluster.stop()
    if problem is not None:
        where = f"${TEST_DATABASE_URL_ENV}" if external else "the throw-away PostgreSQL 15 cluster"
        pytest.fail(
            f"PostGIS tests need a database, and {where} could not be set up: {problem}\n"
            f"Install PostgreSQL 15 + PostGIS with 'make system-deps', or set {TEST_DATABASE_URL_ENV}="
            "postgresql://user:password@host:port/dbname (a role allowed to CREATE DATABASE).",
            pytrace=False,
        )
    try:
        yield url
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture
def pg_db_url(postgis_url: str) -> Iterator[str]:
    """URL of a fresh PostGIS database for this test only (dropped afterwards)."""
    name = f"citytwin_test_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(name)
    with psycopg.connect(postgis_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident, sql.Identifier(TEMPLATE_DB)))
    try:
        yield with_dbname(postgis_url, name)
    finally:
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            # FORCE: a pool the test forgot to close must not keep the database alive.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


# -- the sample city, generated and built once for the tests that only read it ---------------
@pytest.fixture(scope="session")
def built_sample_city(tmp_path_factory) -> Path:
    """``citytwin sample-city`` + ``citytwin build`` through the CLI, shared read-only.

    Tests that change the project (ingest, publish, rebuild) make their own copy instead.
    """
    from api_server import run_citytwin

    directory = tmp_path_factory.mktemp("sample") / "city"
    run_citytwin("sample-city", str(directory))
    run_citytwin("build", "--project", str(directory))
    return directory


@pytest.fixture(scope="session")
def implicit_sample_city(built_sample_city: Path, tmp_path_factory) -> Path:
    """A copy of the built sample city whose buildings were rebuilt with ``--implicit``, shared read-only."""
    from api_server import run_citytwin

    directory = tmp_path_factory.mktemp("implicit_sample") / "city"
    shutil.copytree(built_sample_city, directory, symlinks=True)
    run_citytwin("build", "--project", str(directory), "--layer", "buildings", "--skip-ingest", "--implicit")
    return directory
