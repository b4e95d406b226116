"""One process's Prometheus metrics: its own registry, and what every process exports.

Each process (a gateway, a worker, or `usersync run` holding both) builds one `Telemetry` and
hands its `registry` down to the parts that measure (the gateway's middleware, the delivery
engine); nothing is registered in prometheus_client's global default registry, so two apps in
one process (the tests) never share a counter. Every process exports:

- process and platform metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
  `python_info`, `python_gc_*`), from prometheus_client's own collectors;
- `usersync_build_info{version}` (always 1);
- `usersync_redis_up`: whether a PING answered at scrape time (1) or not (0).

Values read from Redis at scrape time (`core.metrics.ClusterState`) are `RedisReader`s: each
scrape PINGs first, then lets every reader refresh, so a scrape while Redis is down still
answers, with `usersync_redis_up 0` and those values left out (not stale).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

import structlog
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core import __version__

log = structlog.get_logger("usersync.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What `generate_latest` writes: the Prometheus text format 0.0.4."""
PING_TIMEOUT_S = 1.0
"""A scrape waits this long for Redis's PONG before it reports `usersync_redis_up 0`."""
READ_TIMEOUT_S = 3.0
"""Longest a scrape waits for the values read from Redis (Prometheus's default scrape
timeout is 10 s): past it they are left out of that scrape."""


class RedisReader(Protocol):
    """A collector whose values are read from Redis: `refresh` before each scrape (`redis_up`
    False: Redis did not answer a PING, leave the values out), then `collect` yields them."""

    async def refresh(self, redis_up: bool) -> None: ...

    def collect(self) -> Iterable[Metric]: ...


class _RedisUp:
    """`usersync_redis_up`: the last scrape's PING."""

    def __init__(self) -> None:
        self.up = False

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "usersync_redis_up",
            "1 if Redis answered a PING at scrape time, else 0.",
            value=1 if self.up else 0,
        )


class Telemetry:
    """The registry of one process, with the collectors every process has."""

    def __init__(self, version: str = __version__) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        build = Info("usersync_build", "The running usersync's version.", registry=self.registry)
        build.info({"version": version})
        self._redis_up = _RedisUp()
        self.registry.register(self._redis_up)
        self._redis: Redis | None = None
        self._readers: list[RedisReader] = []

    def watch_redis(self, redis: Redis) -> None:
        """PING this client at scrape time (the first one given: in `usersync run` the
        gateway and the worker share one Redis, one PING says it)."""
        if self._redis is None:
            self._redis = redis

    def add_reader(self, reader: RedisReader) -> None:
        """Export `reader`'s values, refreshed from Redis at each scrape."""
        self.registry.register(reader)
        self._readers.append(reader)

    async def render(self) -> bytes:
        """The text exposition of everything this process exports, Redis read now."""
        up = await self._ping()
        self._redis_up.up = up
        for reader in self._readers:
            await reader.refresh(up)
        return generate_latest(self.registry)

    async def _ping(self) -> bool:
        if self._redis is None:
            return False
        try:
            await asyncio.wait_for(self._redis.ping(), PING_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("metrics_redis_down", error=type(exc).__name__)
            return False
        return True
