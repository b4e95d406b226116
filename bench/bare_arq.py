"""The baseline of bench/e2e.py: a bare arq worker making one aiohttp call per job.

What arq and aiohttp alone deliver on this machine, run as usersync's worker is (uvloop, the
same `max_jobs` and `poll_delay`, `keep_result=0`, JSON jobs, arq logging at warning), so
the gap between the two is what usersync's delivery engine costs (pair state, lease, coalescing,
status and history writes, the next job). A job `call(kind, vendor_user_id, email, title)`
sends the request usersync's adapter sends for that change (same method, path, auth header and
body), through one shared ClientSession, and reads the answer; a non-2xx answer is logged and
counted (the sandbox journal has the status of every call too).

    python bench/bare_arq.py --redis redis://127.0.0.1:6379 --sandbox http://127.0.0.1:8090 \
        --max-jobs 50 --poll-delay 0.01

`enqueue` (used by e2e.py) puts jobs in the queue with arq's own `enqueue_job`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
import common
import orjson
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

FUNCTION = "call"
ERRORS_KEY = "bare:non2xx"
"""Incremented (in the same Redis) for every answer that is not 2xx."""


def request_for(
    kind: str, user_id: str, email: str, title: str
) -> tuple[str, str, dict[str, str], Any]:
    """Method, path, auth header and body of usersync's call for an email + job title change."""
    bearer = {"Authorization": f"Bearer {common.VENDOR_TOKENS[kind]}"}
    base = common.PATHS[kind]
    if kind == "mileapp":  # MileApp has no home for a job title; the id travels in the body
        return "PATCH", f"{base}/user", bearer, {"_id": user_id, "email": email}
    if kind == "fleet":
        return "PATCH", f"{base}/users/{user_id}", bearer, {"email": email, "position": title}
    if kind == "plaspy":
        ops = [
            {"op": "add", "path": "/description", "value": title},
            {"op": "add", "path": "/email", "value": email},
        ]
        return "PATCH", f"{base}/api/users/{user_id}", bearer, ops
    if kind == "partoo":  # no job title either; the key goes in x-APIKey
        return (
            "POST",
            f"{base}/user/{user_id}",
            {"x-APIKey": common.VENDOR_TOKENS[kind]},
            {"email": email},
        )
    raise ValueError(f"unknown kind {kind!r}")


async def call(ctx: dict[str, Any], kind: str, user_id: str, email: str, title: str) -> None:
    """The job: one call to the vendor simulator, answer read, status checked."""
    method, path, headers, body = request_for(kind, user_id, email, title)
    session: aiohttp.ClientSession = ctx["session"]
    async with session.request(
        method,
        ctx["sandbox"] + path,
        data=orjson.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=5),
    ) as response:
        await response.read()
        if not 200 <= response.status < 300:
            logging.getLogger("bare_arq").warning("%s %s -> %s", method, path, response.status)
            await ctx["redis"].incr(ERRORS_KEY)


def build_worker(redis_url: str, sandbox: str, max_jobs: int, poll_delay: float) -> Worker:
    """An arq Worker set up as usersync's (`workers.worker.build_worker`), minus the engine."""

    async def startup(ctx: dict[str, Any]) -> None:
        connector = aiohttp.TCPConnector(limit=max_jobs * 2, limit_per_host=0)
        ctx["session"] = aiohttp.ClientSession(connector=connector)
        ctx["sandbox"] = sandbox

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "session" in ctx:
            await ctx["session"].close()

    return Worker(
        functions=[func(call, name=FUNCTION)],
        redis_settings=RedisSettings.from_dsn(redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=max_jobs,
        poll_delay=poll_delay,
        job_timeout=30,
        keep_result=0,
        job_serializer=orjson.dumps,
        job_deserializer=orjson.loads,
        health_check_interval=30,
        log_results=False,
    )


async def enqueue(
    redis_url: str, jobs: Sequence[tuple[str, str, str, str]], in_flight: int = 100
) -> int:
    """Enqueue `call` jobs with arq's `enqueue_job`, `in_flight` at once; how many were queued."""
    pool = await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=orjson.dumps,
        job_deserializer=orjson.loads,
    )
    queued = 0
    try:
        for start in range(0, len(jobs), in_flight):
            done = await asyncio.gather(
                *(pool.enqueue_job(FUNCTION, *job) for job in jobs[start : start + in_flight])
            )
            queued += sum(job is not None for job in done)
    finally:
        await pool.aclose()
    return queued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", required=True, help="redis:// URL of the queue")
    parser.add_argument("--sandbox", required=True, help="base URL of the sandbox")
    parser.add_argument("--max-jobs", type=int, default=50)
    parser.add_argument("--poll-delay", type=float, default=0.01)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(args))


async def run(args: argparse.Namespace) -> None:
    """Until SIGINT/SIGTERM (arq's own handlers); built inside the loop, as arq binds to it."""
    worker = build_worker(args.redis, args.sandbox.rstrip("/"), args.max_jobs, args.poll_delay)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        pass
    finally:
        await worker.close()


if __name__ == "__main__":
    main()
