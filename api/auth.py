"""API keys for the write-side endpoints, and an audit log of every call made with them.

Keys come from ``CITYTWIN_API_KEYS`` (``id1:key1,id2:key2``) and/or the file named by the
catalog's ``api_keys_file`` (one ``id: key`` per line, ``#`` comments); the catalog never
holds a key itself. Clients send ``X-API-Key``. Only digests are kept in memory and
compared in constant time; the log records the key's id, never the key.

``ProcessAuthMiddleware`` guards ``POST /processes/{id}/execution`` and every job route
(``/jobs``, ``/jobs/{id}``, ``/jobs/{id}/results``): no or an unknown key gives 401 with a
JSON message, and a key sees only the jobs it started (``api/jobs.py``).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from pygeoapi.util import JobStatus
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.bodies import BodyError, json_kind, parse_json, read_limited
from api.errors import error_body
from api.jobs import Jobs
from api.params import BadParameter, integer
from geo.errors import CatalogError
from pipelines.catalog import Catalog

KEYS_ENV = "CITYTWIN_API_KEYS"
HEADER = b"x-api-key"
AUDIT_FILE = "logs/audit.log"
LOG = logging.getLogger("citytwin.audit")
_KEYS_LOG = logging.getLogger("citytwin.keys")

_EXECUTE = re.compile(r"^/processes/([^/]+)/execution/?$")
_JOB = re.compile(r"^/jobs/([^/]+)(/results)?/?$")
_JOBS = re.compile(r"^/jobs/?$")
_MAX_BODY = 1_000_000
_SMALLER = "inputs name layers of the project, so an execute request is small"
_EXECUTE_SHAPE = 'a JSON object such as {"inputs": {"hazard": "flood", "targets": ["buildings"]}}'
_JOBS_DEFAULT, _JOBS_MAX = 100, 1000


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
    """Known keys (digests -> key id); the keys file is re-read when it changes.

    A keys file that is missing or malformed stops the server from starting; one that goes
    missing or malformed while serving gives no keys until it is fixed (refused, and logged).
    """

    def __init__(self, catalog: Catalog) -> None:
        self.file = (catalog.root / catalog.api_keys_file).resolve() if catalog.api_keys_file else None
        self._env = _parse(os.environ.get(KEYS_ENV, ""), KEYS_ENV, ",")
        self._file_keys: dict[bytes, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._broken: str | None = None
        self._lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        if self.file is None:
            return
        try:
            st = self.file.stat()
        except FileNotFoundError:
            raise CatalogError(f"api_keys_file {self.file} (from citytwin.yaml) does not exist") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            with self._lock:
                self._file_keys = _parse(self.file.read_text(encoding="utf-8"), str(self.file), "\n")
                self._stamp = stamp

    def _follow(self) -> None:
        """``_reload`` while serving: a bad file means no keys from it, logged once per fault."""
        try:
            self._reload()
            self._broken = None
        except CatalogError as exc:
            with self._lock:
                self._file_keys, self._stamp = {}, None
            if str(exc) != self._broken:
                _KEYS_LOG.error("%s; its keys are refused until it is fixed", exc)
            self._broken = str(exc)

    @property
    def configured(self) -> bool:
        return bool(self._env or self._file_keys)

    def identify(self, presented: str | None) -> str | None:
        """The id of the presented key, or None."""
        if not presented:
            return None
        self._follow()
        digest = _digest(presented)
        found = None
        for known, key_id in {**self._file_keys, **self._env}.items():
            if hmac.compare_digest(known, digest):
                found = key_id
        return found

    def refusal(self, presented: str | None) -> str:
        if self._broken and not self.configured:
            return ("no API key is accepted right now: the server's API keys file is missing or malformed "
                    "(the server log says which); ask its operator")
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


async def _answer(send: Send, status: int, body: dict, extra: list[tuple[bytes, bytes]] = ()) -> None:
    start, data = _json_response(status, body, extra)
    await send(start)
    await send(data)


async def send_401(send: Send, message: str) -> None:
    await _answer(send, 401, error_body("Unauthorized", message), [(b"www-authenticate", b'ApiKey header="X-API-Key"')])


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == name:
            return v.decode("latin-1").strip()
    return None


def api_key_of(scope: Scope) -> str | None:
    return _header(scope, HEADER)


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    more = True
    while more:
        message = await receive()
        yield message.get("body", b"")
        more = message.get("more_body", False)


def execute_request(body: bytes) -> dict:
    """The execute request in ``body``; BodyError 400 saying what is wrong with it."""
    if not body.strip():
        raise BodyError(400, f"the body is empty; send {_EXECUTE_SHAPE}")
    doc = parse_json(body, _EXECUTE_SHAPE)
    if not isinstance(doc, dict):
        raise BodyError(400, f"the body is {json_kind(doc)}; send {_EXECUTE_SHAPE}")
    for key in ("inputs", "outputs"):
        if key in doc and not isinstance(doc[key], dict):
            raise BodyError(400, f"'{key}' must be an object of names and values, got {json_kind(doc[key])}")
    if doc.get("response", "raw") not in ("raw", "document"):
        raise BodyError(400, "'response' must be 'raw' or 'document'")
    if "subscriber" in doc:  # the manager would POST to any URL the client names
        raise BodyError(400, "'subscriber' (callback URLs) is not offered; poll the job with Prefer: respond-async")
    return doc


async def _send_status_info(send: Send, start: Message, info: dict) -> None:
    """The 201 of an accepted job with its statusInfo as the body, the other headers kept."""
    data = json.dumps(info).encode("utf-8")
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class ProcessAuthMiddleware:
    """Require an API key to execute a process and to list, read or delete jobs; only the key
    that started a job sees it. Every execution and deletion goes to the audit log."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, audit: AuditLog) -> None:
        self.app, self.keys, self.audit = app, keys, audit
        self.jobs = Jobs(os.environ["PYGEOAPI_CONFIG"])  # written by create_app before this is built

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        execute = _EXECUTE.match(path) if method == "POST" else None
        job = _JOB.match(path) if method in ("GET", "HEAD", "DELETE") else None
        listing = method in ("GET", "HEAD") and _JOBS.match(path) is not None
        if not (execute or job or listing):
            await self.app(scope, receive, send)
            return
        if job and method == "DELETE" and job.group(2):  # whoever asks: results go with their job
            await _answer(send, 405, error_body("MethodNotAllowed", "job results go with their job: DELETE /jobs/{id}"),
                          [(b"allow", b"GET, HEAD")])
            return
        presented = api_key_of(scope)
        key_id = self.keys.identify(presented)
        if key_id is None:
            if execute or method == "DELETE":
                what = {"process": execute.group(1)} if execute else {"job": job.group(1)}
                self.audit.write(who=None, action=f"{method} {path}", **what, status=401,
                                 refused="no key" if not presented else "invalid key")
            await send_401(send, self.keys.refusal(presented))
            return
        if listing:
            await self._list(scope, key_id, send)
        elif job:
            await self._job(scope, receive, send, key_id, job.group(1))
        else:
            await self._execute(scope, receive, send, key_id, execute.group(1))

    async def _execute(self, scope: Scope, receive: Receive, send: Send, key_id: str, process: str) -> None:
        action = f"{scope['method']} {scope['path']}"
        try:
            body = await read_limited(_chunks(receive), _MAX_BODY, _SMALLER, _header(scope, b"content-length"))
            inputs = summarise(execute_request(body).get("inputs", {}))
        except BodyError as exc:
            code = "PayloadTooLarge" if exc.status == 413 else "InvalidParameterValue"
            self.audit.write(who=key_id, action=action, process=process, status=exc.status, refused=str(exc)[:300])
            await _answer(send, exc.status, error_body(code, str(exc)))
            return
        prefer = _header(scope, b"prefer")
        status: dict[str, Any] = {}
        pending: bytes | None = body

        async def replay() -> Message:
            nonlocal pending
            if pending is not None:
                chunk, pending = pending, None
                return {"type": "http.request", "body": chunk, "more_body": False}
            return await receive()

        held: list[Message] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                location = next((v.decode("latin-1") for k, v in message.get("headers", [])
                                 if k.lower() == b"location"), None)
                status["location"] = location
                if location:  # the job is the caller's before the caller learns its id
                    await run_in_threadpool(self.jobs.claim, location.rstrip("/").rsplit("/", 1)[-1], key_id)
                if message["status"] == 201 and location:  # accepted: pygeoapi's body is 'null'
                    held.append(message)
                    return
            elif held:
                if not message.get("more_body"):
                    job_id = status["location"].rstrip("/").rsplit("/", 1)[-1]
                    await _send_status_info(send, held[0], await run_in_threadpool(self.jobs.status_info, job_id))
                return
            await send(message)

        try:
            await self.app(scope, replay, watch)
        finally:
            self.audit.write(who=key_id, action=action, process=process, inputs=inputs, prefer=prefer,
                             status=status.get("code"), location=status.get("location"))

    async def _job(self, scope: Scope, receive: Receive, send: Send, key_id: str, job_id: str) -> None:
        """A job's status or results through pygeoapi, or its deletion, for the job's owner only."""
        found = await run_in_threadpool(self.jobs.owned, job_id, key_id)
        unknown = error_body("NoSuchJob", f"no job {job_id[:80]!r} started with this API key")
        if scope["method"] != "DELETE":
            if found is None:
                await _answer(send, 404, unknown)
            else:
                await self.app(scope, receive, send)
            return
        if found is None:
            status, body = 404, unknown
        else:
            # pygeoapi 0.21's own DELETE handler deletes the job, then fails with a 500 on its header-less response
            await run_in_threadpool(self.jobs.dismiss, job_id)
            status, body = 200, {"jobID": job_id, "status": JobStatus.dismissed.value, "message": "Job dismissed",
                                 "progress": 100}
        await _answer(send, status, body)
        self.audit.write(who=key_id, action=f"DELETE {scope['path']}", job=job_id, status=status)

    async def _list(self, scope: Scope, key_id: str, send: Send) -> None:
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        try:
            limit = integer(params, "limit", _JOBS_DEFAULT, 1, _JOBS_MAX)
            offset = integer(params, "offset", 0, 0)
        except BadParameter as exc:
            await _answer(send, 400, error_body("InvalidParameterValue", str(exc)))
            return
        await _answer(send, 200, await run_in_threadpool(self.jobs.listing, key_id, limit, offset))


def protect_processes(app: ASGIApp, catalog: Catalog) -> ASGIApp:
    """Wrap ``app`` so process execution and every job route need a key and are audited."""
    return ProcessAuthMiddleware(app, ApiKeys(catalog), AuditLog(catalog.build_path / AUDIT_FILE))
