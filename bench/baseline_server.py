"""The ingest baselines: the simplest aiohttp handlers a gateway could be, one process each.

    python bench/baseline_server.py --mode bare  --port 9000
    python bench/baseline_server.py --mode lpush --port 9000 --redis redis://127.0.0.1:6379/0
    python bench/baseline_server.py --mode arq   --port 9000 --redis redis://127.0.0.1:6379/0

- bare: parse the JSON body (orjson), answer 202: the ceiling of aiohttp on this machine.
- lpush: the same plus one `LPUSH` of the raw body per request (redis-py asyncio, hiredis): the
  naive durable handler, one Redis round trip per request.
- arq: the same plus one arq `enqueue_job` per request: what arq's own client costs.

None of them authenticates, validates, dedupes or schedules anything: they are the floor
usersync's gateway is compared with, not a product. uvloop, no access log, as usersync runs.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
import uvloop
from aiohttp import web
from arq import create_pool
from arq.connections import RedisSettings
from redis.asyncio import Redis

ACCEPTED = orjson.dumps({"status": "accepted"})
LIST_KEY = "baseline:events"
REDIS_KEY = web.AppKey("redis", Redis)
ARQ_KEY = web.AppKey("arq", object)


async def bare(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=ACCEPTED, status=202, content_type="application/json")


async def lpush(request: web.Request) -> web.Response:
    raw = await request.read()
    orjson.loads(raw)
    await request.app[REDIS_KEY].lpush(LIST_KEY, raw)  # type: ignore[misc]
    return web.Response(body=ACCEPTED, status=202, content_type="application/json")


async def enqueue(request: web.Request) -> web.Response:
    raw = await request.read()
    event = orjson.loads(raw)
    await request.app[ARQ_KEY].enqueue_job("deliver", event)  # type: ignore[attr-defined]
    return web.Response(body=ACCEPTED, status=202, content_type="application/json")


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(mode: str, port: int, redis_url: str | None) -> None:
    app = web.Application()
    handler = {"bare": bare, "lpush": lpush, "arq": enqueue}[mode]
    app.router.add_post("/v1/events", handler)
    app.router.add_get("/healthz", healthz)
    if mode == "lpush":
        assert redis_url is not None
        app[REDIS_KEY] = Redis.from_url(redis_url)
    if mode == "arq":
        assert redis_url is not None
        app[ARQ_KEY] = await create_pool(
            RedisSettings.from_dsn(redis_url),
            job_serializer=orjson.dumps,
            job_deserializer=orjson.loads,
        )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["bare", "lpush", "arq"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis")
    args = parser.parse_args()
    uvloop.run(serve(args.mode, args.port, args.redis))


if __name__ == "__main__":
    main()
