"""The worker process's own small HTTP server (`worker.metrics_port`): `/metrics`, `/healthz`
and `/readyz`, for Prometheus and for an orchestrator's probes.

- `/healthz` (liveness): answered by the worker's event loop itself, so a loop blocked or
  dead fails it; it does not ask Redis (a Redis outage is not a reason to restart workers).
- `/readyz` (readiness): Redis answers a PING and the arq worker is running (started, polling,
  not being stopped); else 503 saying which.
- `/metrics`: the process's registry (`core.telemetry`); it answers while Redis is down, with
  `usersync_redis_up 0`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.telemetry import CONTENT_TYPE, PING_TIMEOUT_S, Telemetry

TELEMETRY = web.AppKey("telemetry", Telemetry)
PROBE_REDIS = web.AppKey("probe_redis", Redis)
RUNNING: web.AppKey[Callable[[], bool]] = web.AppKey("worker_running")


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def healthz(_: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(request.app[PROBE_REDIS].ping(), PING_TIMEOUT_S)
        redis_ok = True
    except (RedisError, OSError, TimeoutError):
        redis_ok = False
    running = request.app[RUNNING]()
    checks = {"redis": "ok" if redis_ok else "down", "worker": "running" if running else "stopped"}
    if redis_ok and running:
        return _json({"status": "ready", **checks})
    error = {"code": "not_ready", "message": "the worker is not ready", "details": checks}
    return _json({"error": error}, 503)


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[TELEMETRY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def create_worker_http_app(
    telemetry: Telemetry, redis: Redis, running: Callable[[], bool]
) -> web.Application:
    """The app; `redis` is a client of its own for the probes (arq's may be gone), `running`
    says whether the process's arq worker is running now."""
    app = web.Application()
    app[TELEMETRY] = telemetry
    app[PROBE_REDIS] = redis
    app[RUNNING] = running
    telemetry.watch_redis(redis)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
