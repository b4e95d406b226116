"""A bound on what the gateway stores: new events are refused while Redis is nearly full.

Redis with `maxmemory-policy noeviction` refuses writes past `maxmemory`, workers' included:
a gateway that fills it to the brim stops delivery too. So the gateway stops accepting at
`redis.max_memory_fraction` of `maxmemory` (503 `storage_full`, with `Retry-After`), leaving
the rest for the workers, whose deliveries free memory as events complete. The used memory is
read by a background task of the app every `POLL_S` (`INFO memory`), never per request: a post
only reads the last answer kept in the app's state. A write Redis refuses for memory all the
same (`OOM command not allowed`) is the same 503 (`is_out_of_memory`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from core.redis_client import reraise_if_cancelling
from gateway.errors import ApiError

log = structlog.get_logger("usersync.gateway")

POLL_S = 1.0
"""How often the gateway reads Redis's memory use."""
RETRY_AFTER_S = 5
"""What a refused source is told to wait: workers need a few seconds to drain."""
OOM_MESSAGE = "OOM command not allowed"
"""The start of Redis's refusal of a write past maxmemory (inside a script's error too)."""


def storage_full() -> ApiError:
    return ApiError(
        503,
        "storage_full",
        "the event store is nearly full; nothing was accepted, retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def is_out_of_memory(exc: RedisError) -> bool:
    """Whether Redis refused a command for memory: a plain command's OOM error, or a script
    whose write was refused (`ERR Error running script ... OOM command not allowed ...`)."""
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and OOM_MESSAGE in str(exc)
    )


class StorageGauge:
    """Whether Redis is past the gateway's share of its memory, as last read by `watch`."""

    def __init__(self, redis: Redis, fraction: float) -> None:
        self._commands: Any = redis  # redis-py types asyncio commands loosely
        self.fraction = fraction
        self.full = False

    def check(self) -> None:
        """Refuse a new event (503 storage_full) while Redis is nearly full."""
        if self.full:
            raise storage_full()

    async def read(self) -> None:
        """Read Redis's memory use once and update `full` (logged when it changes)."""
        info = await self._commands.info("memory")
        used, limit = int(info["used_memory"]), int(info.get("maxmemory", 0))
        full = self.fraction > 0 and limit > 0 and used >= self.fraction * limit
        if full != self.full:
            event = "storage_full" if full else "storage_available"
            (log.warning if full else log.info)(
                event, used_memory=used, maxmemory=limit, fraction=self.fraction
            )
        self.full = full

    async def watch(self) -> None:
        """`read` every POLL_S until cancelled; a failed read keeps the last state (an
        unreachable Redis refuses posts by itself, 503 redis_unavailable)."""
        while True:
            try:
                await self.read()
            except RedisError as exc:
                reraise_if_cancelling(exc)
                log.debug("storage_read_failed", error=type(exc).__name__)
            await asyncio.sleep(POLL_S)


STORAGE = web.AppKey("storage", StorageGauge)


def add_storage_gauge(app: web.Application, redis: Redis, fraction: float) -> None:
    """Give `app` a StorageGauge (`app[STORAGE]`), watched while the app runs; with a
    fraction of 0 it is never full and nothing is read."""
    gauge = StorageGauge(redis, fraction)
    app[STORAGE] = gauge

    async def watching(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(gauge.watch()) if fraction > 0 else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(watching)
