"""GET /ready: whether the work a server starts in the background is done.

The server answers at once after start-up while it still builds some in-memory state (the AR
index reads every building of the store: a minute on a 600k city). Until that is done the
process is busy and its AR routes answer 503. Deployments (a load balancer's readiness probe)
and the benchmarks wait for 200 here before sending traffic. A task that failed counts as done:
its routes say why, and the rest of the server serves.
"""
from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

RETRY_AFTER_S = 5

# a task's state: "ready", "starting", or "failed: <why>"
StateOf = Callable[[], str]


def ready_route(tasks: dict[str, StateOf]) -> Route:
    """/ready: 200 when no task is still starting, else 503 with Retry-After; the body lists each task."""

    async def ready(request: Request) -> JSONResponse:
        states = {name: state() for name, state in tasks.items()}
        starting = sorted(name for name, s in states.items() if s == "starting")
        body = {"ready": not starting, "tasks": states}
        if starting:
            return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        return JSONResponse(body)

    return Route("/ready", ready, methods=["GET", "HEAD"])
