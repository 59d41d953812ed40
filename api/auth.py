"""API keys for the write-side endpoints, and an audit log of every call made with them.

Keys come from ``CITYTWIN_API_KEYS`` (``id1:key1,id2:key2``) and/or the file named by the
catalog's ``api_keys_file`` (one ``id: key`` per line, ``#`` comments); the catalog never
holds a key itself. Clients send ``X-API-Key``. Only digests are kept in memory and
compared in constant time; the log records the key's id, never the key.

``ProcessAuthMiddleware`` guards ``POST /processes/{id}/execution`` and
``DELETE /jobs/{id}``: no or an unknown key gives 401 with a JSON message.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geo.errors import CatalogError
from pipelines.catalog import Catalog

KEYS_ENV = "CITYTWIN_API_KEYS"
HEADER = b"x-api-key"
AUDIT_FILE = "logs/audit.log"
LOG = logging.getLogger("citytwin.audit")

_EXECUTE = re.compile(r"^/processes/([^/]+)/execution/?$")
_JOB = re.compile(r"^/jobs/([^/]+)/?$")
_MAX_BODY = 1_000_000


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _parse(text: str, where: str, sep: str) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for n, item in enumerate(text.split(sep), start=1):
        item = item.split("#", 1)[0].strip() if sep == "\n" else item.strip()
        if not item:
            continue
        key_id, colon, key = item.partition(":")
        if not colon or not key_id.strip() or len(key.strip()) < 8:
            raise CatalogError(f"{where}: entry {n} must be 'key_id: key' with a key of at least 8 characters")
        out[_digest(key.strip())] = key_id.strip()
    return out


class ApiKeys:
    """Known keys (digests -> key id); the keys file is re-read when it changes."""

    def __init__(self, catalog: Catalog) -> None:
        self.file = (catalog.root / catalog.api_keys_file).resolve() if catalog.api_keys_file else None
        self._env = _parse(os.environ.get(KEYS_ENV, ""), KEYS_ENV, ",")
        self._file_keys: dict[bytes, str] = {}
        self._mtime: float | None = None
        self._lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        if self.file is None:
            return
        try:
            mtime = self.file.stat().st_mtime
        except FileNotFoundError:
            raise CatalogError(f"api_keys_file {self.file} (from citytwin.yaml) does not exist") from None
        if mtime != self._mtime:
            with self._lock:
                self._file_keys = _parse(self.file.read_text(encoding="utf-8"), str(self.file), "\n")
                self._mtime = mtime

    @property
    def configured(self) -> bool:
        return bool(self._env or self._file_keys)

    def identify(self, presented: str | None) -> str | None:
        """The id of the presented key, or None."""
        if not presented:
            return None
        self._reload()
        digest = _digest(presented)
        found = None
        for known, key_id in {**self._file_keys, **self._env}.items():
            if hmac.compare_digest(known, digest):
                found = key_id
        return found

    def refusal(self, presented: str | None) -> str:
        if not self.configured:
            return (f"this endpoint needs an API key, and none is configured on the server: set {KEYS_ENV} "
                    "('id:key,...') or api_keys_file in citytwin.yaml")
        if not presented:
            return "this endpoint needs an API key: send it in the X-API-Key header"
        return "the API key in X-API-Key is not valid"


class AuditLog:
    """One JSON line per call in <build>/logs/audit.log, mirrored to the 'citytwin.audit' logger."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, **entry: Any) -> None:
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **entry}
        line = json.dumps(entry, ensure_ascii=False, default=str)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        LOG.info("%s", line)


def summarise(value: Any, depth: int = 0) -> Any:
    """A short, loggable picture of request inputs (no geometries, no long strings)."""
    if isinstance(value, str):
        return value if len(value) <= 80 else value[:77] + "..."
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, list):
        if len(value) <= 10 and depth < 2:
            return [summarise(v, depth + 1) for v in value]
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        if "type" in value and ("coordinates" in value or "features" in value or "geometry" in value):
            return f"<GeoJSON {value.get('type')}>"
        if depth < 2:
            return {str(k): summarise(v, depth + 1) for k, v in list(value.items())[:20]}
        return f"{{{len(value)} keys}}"
    return type(value).__name__


def _json_response(status: int, body: dict, extra: list[tuple[bytes, bytes]] = ()) -> tuple[Message, Message]:
    data = json.dumps(body).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": data})


async def send_401(send: Send, message: str) -> None:
    start, body = _json_response(401, {"code": "Unauthorized", "description": message},
                                 [(b"www-authenticate", b'ApiKey header="X-API-Key"')])
    await send(start)
    await send(body)


def api_key_of(scope: Scope) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == HEADER:
            return v.decode("latin-1").strip()
    return None


class ProcessAuthMiddleware:
    """Require an API key to execute a process or delete a job; log every such call."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, audit: AuditLog) -> None:
        self.app, self.keys, self.audit = app, keys, audit
        self._manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        execute = _EXECUTE.match(path) if method == "POST" else None
        job = _JOB.match(path) if method == "DELETE" else None
        if not (execute or job):
            await self.app(scope, receive, send)
            return
        presented = api_key_of(scope)
        key_id = self.keys.identify(presented)
        what = {"process": execute.group(1)} if execute else {"job": job.group(1)}
        body = b""
        if execute:
            chunks, more = [], True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
                if sum(map(len, chunks)) > _MAX_BODY:
                    break
            body = b"".join(chunks)
        if key_id is None:
            self.audit.write(who=None, action=f"{method} {path}", **what, status=401,
                             refused="no key" if not presented else "invalid key")
            await send_401(send, self.keys.refusal(presented))
            return
        inputs = None
        if execute:
            try:
                inputs = summarise(json.loads(body or b"{}").get("inputs", {}))
            except (ValueError, AttributeError):
                inputs = "<not JSON>"
        prefer = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"prefer"), None)
        status: dict[str, Any] = {}

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                chunk, body = body, None
                return {"type": "http.request", "body": chunk, "more_body": False}
            return await receive()

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["location"] = next((v.decode("latin-1") for k, v in message.get("headers", [])
                                           if k.lower() == b"location"), None)
            await send(message)

        try:
            if job:
                await self._dismiss(job.group(1), watch)
            else:
                await self.app(scope, replay, watch)
        finally:
            self.audit.write(who=key_id, action=f"{method} {path}", **what, inputs=inputs, prefer=prefer,
                             status=status.get("code"), location=status.get("location"))

    async def _dismiss(self, job_id: str, send: Send) -> None:
        """DELETE /jobs/{id} through the job manager: pygeoapi 0.21's own handler deletes the job
        and then fails with a 500 on its header-less response."""
        from starlette.concurrency import run_in_threadpool

        from pygeoapi.process.manager.base import get_manager
        from pygeoapi.util import JobStatus, yaml_load

        if self._manager is None:
            with open(os.environ["PYGEOAPI_CONFIG"], encoding="utf-8") as f:
                self._manager = get_manager(yaml_load(f))
        try:
            await run_in_threadpool(self._manager.get_job, job_id)
        except Exception:  # noqa: BLE001 - pygeoapi raises JobNotFoundError
            start, body = _json_response(404, {"code": "NoSuchJob", "description": f"no job {job_id!r}"})
        else:
            await run_in_threadpool(self._manager.delete_job, job_id)
            start, body = _json_response(200, {"jobID": job_id, "status": JobStatus.dismissed.value,
                                               "message": "Job dismissed", "progress": 100})
        await send(start)
        await send(body)


def protect_processes(app: ASGIApp, catalog: Catalog) -> ASGIApp:
    """Wrap ``app`` so process execution and job deletion need a key and are audited."""
    return ProcessAuthMiddleware(app, ApiKeys(catalog), AuditLog(catalog.build_path / AUDIT_FILE))
