"""A throw-away PostgreSQL 15 + PostGIS cluster for the test session.

The cluster lives in a fresh temp dir, listens on 127.0.0.1 at a free port with its
socket in that dir, and is stopped and deleted afterwards. PostgreSQL refuses to run
as root, so when we are root the server binaries run as the ``postgres`` user.
Speed settings (fsync off and friends) are fine: the data is thrown away.

Run it by hand (e.g. for benchmarks) with ``python tests/postgis_server.py``: it
prints the URL and keeps the cluster up until Ctrl-C.
"""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PG_BIN = Path(os.environ.get("CITYTWIN_PG_BIN", "/usr/lib/postgresql/15/bin"))
POSTGIS_CONTROL = Path("/usr/share/postgresql/15/extension/postgis.control")
SERVICE_USER = "postgres"
INSTALL_HINT = "install it with 'make system-deps' (apt-get install -y postgresql-15-postgis-3)"


class ClusterError(RuntimeError):
    """The throw-away cluster could not be set up; the message says why and what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_dbname(url: str, dbname: str) -> str:
    """``url`` (a postgresql:// URL) pointing at database ``dbname`` instead."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ClusterError(f"expected a postgresql:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(parts._replace(path="/" + dbname))


class ThrowawayCluster:
    """initdb + pg_ctl start in a temp dir; ``stop()`` removes every trace."""

    def __init__(self, bin_dir: Path = PG_BIN):
        self.bin_dir = Path(bin_dir)
        self.root: Path | None = None
        self.port: int | None = None
        # Root cannot run postgres: run the binaries as the service user instead.
        self._as_service_user = os.geteuid() == 0

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._as_service_user:
            cmd = ["runuser", "-u", SERVICE_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def _check_installed(self) -> None:
        if not (self.bin_dir / "initdb").is_file():
            raise ClusterError(f"PostgreSQL 15 server binaries are not in {self.bin_dir}; {INSTALL_HINT}")
        if not POSTGIS_CONTROL.is_file():
            raise ClusterError(f"PostGIS for PostgreSQL 15 is not installed ({POSTGIS_CONTROL} missing); {INSTALL_HINT}")

    def start(self, attempts: int = 3) -> str:
        """Create and start the cluster; return its URL (database ``postgres``)."""
        self._check_installed()
        self.root = Path(tempfile.mkdtemp(prefix="citytwin-pg-"))
        atexit.register(self.stop)  # a safety net if the session dies before teardown
        if self._as_service_user:
            shutil.chown(self.root, user=SERVICE_USER)
        init = self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                         "-E", "UTF8", "--no-locale", "--no-sync")
        if init.returncode != 0:
            raise ClusterError(f"initdb failed in {self.root}:\n{init.stderr.strip()[-2000:]}")
        last = ""
        # Another process may grab the port between free_port() and bind: retry.
        for _ in range(attempts):
            self.port = free_port()
            opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            res = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "log"),
                            "-w", "-t", "60", "-o", opts, "start")
            if res.returncode == 0:
                return self.url
            last = self._log_tail()
        self.stop()
        raise ClusterError(f"PostgreSQL did not start after {attempts} attempts; server log:\n{last}")

    def _log_tail(self) -> str:
        log = self.root / "log" if self.root else None
        if log and log.is_file():
            return log.read_text(errors="replace")[-2000:]
        return "(no log)"

    def stop(self) -> None:
        """Stop the server (fast mode) and delete the temp dir. Safe to call twice."""
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").is_file():
            res = self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")
            if res.returncode != 0:
                self._kill_postmaster()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        atexit.unregister(self.stop)

    def _kill_postmaster(self) -> None:
        # Only the postmaster we started (its pid is the first line of postmaster.pid).
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


if __name__ == "__main__":  # pragma: no cover - manual use
    import signal

    cluster = ThrowawayCluster()
    print(cluster.start(), flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
