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

**A group of processes** (`gateway.processes` > 1, `usersync.supervisor`): the supervisor
gives its children `PROMETHEUS_MULTIPROC_DIR`, so prometheus_client keeps every counter and
histogram value in a file of that directory per process (chosen when prometheus_client is
imported: the children are started with it). A scrape, whichever child answers, renders the
sum of the files (prometheus_client's `MultiProcessCollector`), the exited children's
included, so counters never go back. The process metrics are the group's too: each child
adds its CPU time to `process_cpu_seconds_total` and sets its share of
`process_resident_memory_bytes` and `process_open_fds` (summed over live children; the
supervisor drops an exited child's, `forget_process`) when scraped and every
`PROCESS_SHARE_S`; `python_gc_*` and `python_info`, per interpreter, are left out.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Protocol

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
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
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's own variable: set (by `usersync.supervisor`), this process is one of a
group whose metrics are summed from the files in that directory."""
PROCESS_SHARE_S = 5.0
"""How often a process of a group writes its CPU time and memory for the others' scrapes."""


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


class _BuildInfo:
    """`usersync_build_info` of a group of processes (prometheus_client's Info keeps no file)."""

    def __init__(self, version: str) -> None:
        self.version = version

    def collect(self) -> Iterable[Metric]:
        yield InfoMetricFamily(
            "usersync_build", "The running usersync's version.", value={"version": self.version}
        )


class _ProcessShare:
    """This process's part of a group's process metrics (see the module)."""

    def __init__(self) -> None:
        self.cpu = Counter(
            "process_cpu_seconds", "Total user and system CPU time spent in seconds.", registry=None
        )
        self.memory = Gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            registry=None,
            multiprocess_mode="livesum",
        )
        self.fds = Gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            registry=None,
            multiprocess_mode="livesum",
        )
        self._counted = 0.0
        self._page = os.sysconf("SC_PAGE_SIZE")

    def update(self) -> None:
        times = os.times()
        spent = times.user + times.system
        self.cpu.inc(spent - self._counted)
        self._counted = spent
        try:
            with open("/proc/self/statm", "rb") as statm:
                self.memory.set(int(statm.read().split()[1]) * self._page)
            self.fds.set(len(os.listdir("/proc/self/fd")))
        except OSError:  # not Linux: CPU time only
            pass


def forget_process(directory: str, pid: int) -> None:
    """An exited process of a group: its live gauges (memory, descriptors) leave the sums;
    its counters stay (they never go back)."""
    mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class Telemetry:
    """The registry of one process, with the collectors every process has."""

    def __init__(self, version: str = __version__) -> None:
        self.registry = CollectorRegistry()
        self.shared_dir = os.environ.get(MULTIPROCESS_DIR_ENV) or None
        self._share: _ProcessShare | None = None
        if self.shared_dir is None:
            self.page = self.registry
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            build = Info(
                "usersync_build", "The running usersync's version.", registry=self.registry
            )
            build.info({"version": version})
        else:
            # What is measured here goes to `registry` and its files; the page is the sum.
            self.page = CollectorRegistry()
            MultiProcessCollector(self.page, path=self.shared_dir)  # type: ignore[no-untyped-call]
            self.page.register(_BuildInfo(version))
            self._share = _ProcessShare()
            self._share.update()
        self._redis_up = _RedisUp()
        self.page.register(self._redis_up)
        self._redis: Redis | None = None
        self._readers: list[RedisReader] = []

    def watch_redis(self, redis: Redis) -> None:
        """PING this client at scrape time (the first one given: in `usersync run` the
        gateway and the worker share one Redis, one PING says it)."""
        if self._redis is None:
            self._redis = redis

    def add_reader(self, reader: RedisReader) -> None:
        """Export `reader`'s values, refreshed from Redis at each scrape."""
        self.page.register(reader)
        self._readers.append(reader)

    async def render(self) -> bytes:
        """The text exposition of everything this process exports, Redis read now."""
        up = await self._ping()
        self._redis_up.up = up
        for reader in self._readers:
            await reader.refresh(up)
        if self._share is not None:
            self._share.update()
        return generate_latest(self.page)

    async def share_process(self) -> None:
        """In a group of processes: write this one's CPU time and memory every
        PROCESS_SHARE_S, for whichever process is scraped (runs until cancelled)."""
        while self._share is not None:
            await asyncio.sleep(PROCESS_SHARE_S)
            self._share.update()

    async def _ping(self) -> bool:
        if self._redis is None:
            return False
        try:
            await asyncio.wait_for(self._redis.ping(), PING_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("metrics_redis_down", error=type(exc).__name__)
            return False
        return True
