"""What operators watch of the whole deployment: each vendor instance's state, and the values
`/metrics` reads from Redis at scrape time.

These numbers live in Redis (the queue, the backlog of each vendor instance, the dead-letter
index, each vendor's breaker, rate and counters, shared by all processes), so every gateway
answers the same ones: a dashboard takes `max by (vendor)` across gateways, never the sum.
`ClusterState` is a `core.telemetry.RedisReader`: before each scrape it fetches a `Snapshot`
(a few round trips, bounded whatever the backlog: per vendor a ZCARD and a ZRANGE of one
entry), then the registry renders it. While Redis does not answer they are left out (the
scrape still answers, with `usersync_redis_up 0`): a stale value would hide the outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis
from redis.exceptions import RedisError

from config.settings import Settings
from core import keys
from core.dead_letters import DeadLetters
from core.telemetry import CONTENT_TYPE, READ_TIMEOUT_S
from core.vendor_guard import VendorGuard

log = structlog.get_logger("usersync.metrics")

__all__ = ["CONTENT_TYPE", "ClusterState", "Snapshot", "snapshot", "vendor_states"]

CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
CALL_OUTCOMES = ("success", "refused", "failure", "throttled")
"""Outcomes `VendorGuard.record` counts; each is exported even at 0, so the series exist."""


def _now_ms() -> int:
    return int(time.time() * 1000)


async def vendor_states(
    settings: Settings, guard: VendorGuard, dead_letters: DeadLetters, now_ms: int | None = None
) -> dict[str, dict[str, Any]]:
    """Every configured vendor instance's state (`GET /v1/vendors`, `usersync vendors`):
    circuit, rate, calls by outcome, vendor-reported usage, and its dead letters."""
    now_ms = _now_ms() if now_ms is None else now_ms
    _, dead = await dead_letters.counts(settings.vendors, now_ms)
    states = {}
    for name, vendor in settings.vendors.items():
        state = await guard.state(name, vendor, now_ms)
        states[name] = {
            "kind": state.pop("kind"),
            "enabled": vendor.enabled,
            **state,
            "dead_letters": dead[name],
        }
    return states


@dataclass(frozen=True)
class Backlog:
    """The deliveries waiting for one vendor instance (`keys.waiting`)."""

    waiting: int
    oldest_age_s: float
    """How long the oldest of them has waited (0 when none does)."""


@dataclass(frozen=True)
class Snapshot:
    """The values of one scrape."""

    queue_jobs: int
    queue_due: int
    dead_letters: int
    vendors: Mapping[str, Mapping[str, Any]]
    backlog: Mapping[str, Backlog]


async def backlogs(redis: Redis, vendors: Iterable[str], now_ms: int) -> dict[str, Backlog]:
    """Each vendor instance's waiting deliveries and the age of the oldest, one round trip."""
    names = list(vendors)
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zcard(keys.waiting(name))
            pipe.zrange(keys.waiting(name), 0, 0, withscores=True)
        replies = await pipe.execute()
    result = {}
    for n, name in enumerate(names):
        count, oldest = int(replies[2 * n]), replies[2 * n + 1]
        age_ms = max(0.0, now_ms - float(oldest[0][1])) if oldest else 0.0
        result[name] = Backlog(count, round(age_ms / 1000, 3))
    return result


async def snapshot(
    redis: Redis,
    queue_name: str,
    settings: Settings,
    guard: VendorGuard,
    dead_letters: DeadLetters,
) -> Snapshot:
    now_ms = _now_ms()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue_name)
        pipe.zcount(queue_name, "-inf", now_ms)
        jobs, due = await pipe.execute()
    total, _ = await dead_letters.counts((), now_ms)
    return Snapshot(
        queue_jobs=int(jobs),
        queue_due=int(due),
        dead_letters=total,
        vendors=await vendor_states(settings, guard, dead_letters, now_ms),
        backlog=await backlogs(redis, settings.vendors, now_ms),
    )


class ClusterState:
    """The deployment's values read from Redis, as a collector refreshed before each scrape
    (`core.telemetry.Telemetry.add_reader`); the gateway exports it."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        queue_name: str,
        guard: VendorGuard,
        dead_letters: DeadLetters,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.queue_name = queue_name
        self.guard = guard
        self.dead_letters = dead_letters
        self.values: Snapshot | None = None

    async def refresh(self, redis_up: bool) -> None:
        """Read a snapshot; None (the values left out) if Redis is down or too slow."""
        self.values = None
        if not redis_up:
            return
        try:
            self.values = await asyncio.wait_for(
                snapshot(self.redis, self.queue_name, self.settings, self.guard, self.dead_letters),
                READ_TIMEOUT_S,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("metrics_read_failed", error=type(exc).__name__)

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        if self.values is not None:
            yield from collect(self.values)


def collect(values: Snapshot) -> Iterable[Metric]:
    """The metric families of one snapshot."""
    yield GaugeMetricFamily(
        "usersync_queue_jobs",
        "Jobs in the arq queue, due now or deferred (retry backoff, open circuit, rate slot).",
        value=values.queue_jobs,
    )
    yield GaugeMetricFamily(
        "usersync_queue_jobs_due", "Jobs in the arq queue that are due now.", value=values.queue_due
    )
    yield GaugeMetricFamily(
        "usersync_dead_letters", "Dead letters of all vendors.", value=values.dead_letters
    )
    yield from _backlog(values.backlog)
    yield from _vendors(values.vendors)


def _backlog(backlog: Mapping[str, Backlog]) -> Iterable[Metric]:
    waiting = GaugeMetricFamily(
        "usersync_vendor_waiting_deliveries",
        "Deliveries (event, vendor instance) accepted and not yet delivered, skipped or dead: "
        "due, in retry backoff, or held by the circuit or the rate.",
        labels=["vendor"],
    )
    oldest = GaugeMetricFamily(
        "usersync_vendor_oldest_waiting_age_seconds",
        "How long the oldest waiting delivery has waited since it was received (or "
        "replayed); 0 when none waits.",
        labels=["vendor"],
    )
    for name, each in backlog.items():
        waiting.add_metric([name], each.waiting)
        oldest.add_metric([name], each.oldest_age_s)
    yield waiting
    yield oldest


def _vendors(vendors: Mapping[str, Mapping[str, Any]]) -> Iterable[Metric]:
    gauges = {
        "dead_letters": GaugeMetricFamily(
            "usersync_vendor_dead_letters", "Dead letters of the vendor.", labels=["vendor"]
        ),
        "circuit": GaugeMetricFamily(
            "usersync_vendor_circuit_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            labels=["vendor"],
        ),
        "failures": GaugeMetricFamily(
            "usersync_vendor_consecutive_failures",
            "Failed calls in a row (the breaker opens at its failure_threshold).",
            labels=["vendor"],
        ),
        "rate": GaugeMetricFamily(
            "usersync_vendor_rate_per_second",
            "Effective rate limit: the configured rate, lowered after a 429 while it recovers.",
            labels=["vendor"],
        ),
        "usage": GaugeMetricFamily(
            "usersync_vendor_api_usage",
            "Usage counters the vendor reports (Plaspy apiUsage, apiDailyUsage), last seen.",
            labels=["vendor", "counter"],
        ),
    }
    counters = {
        "calls": CounterMetricFamily(
            "usersync_vendor_calls", "Vendor calls by outcome.", labels=["vendor", "outcome"]
        ),
        "opened": CounterMetricFamily(
            "usersync_vendor_circuit_opened", "Times the circuit opened.", labels=["vendor"]
        ),
        "throttled": CounterMetricFamily(
            "usersync_vendor_throttled", "429 answers that lowered the rate.", labels=["vendor"]
        ),
    }
    for name, state in vendors.items():
        circuit = state["circuit"]
        gauges["dead_letters"].add_metric([name], state["dead_letters"])
        gauges["circuit"].add_metric([name], CIRCUIT_STATES[circuit["state"]])
        gauges["failures"].add_metric([name], circuit["consecutive_failures"])
        gauges["rate"].add_metric([name], state["rate"]["effective_per_second"])
        for counter, value in state["usage"].items():
            gauges["usage"].add_metric([name, counter], value)
        calls = state["calls"]
        for outcome in sorted({*CALL_OUTCOMES, *calls}):
            counters["calls"].add_metric([name, outcome], calls.get(outcome, 0))
        counters["opened"].add_metric([name], circuit["times_opened"])
        counters["throttled"].add_metric([name], state["rate"]["times_throttled"])
    yield from gauges.values()
    yield from counters.values()
