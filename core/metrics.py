"""What operators watch: each vendor instance's state, and `/metrics` in Prometheus text format.

Every number lives in Redis (the queue, the dead-letter index, each vendor's breaker, rate and
counters, shared by all processes), so a scrape of any gateway reads the same values: nothing
is counted in process memory. A scrape first fetches a `Snapshot` (async, a few round trips),
then renders it through prometheus_client with a collector built for that one scrape, so the
library does the text format (escaping, `# TYPE`, the `_total` of counters) and no metric
object outlives the request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis

from config.settings import Settings
from core.dead_letters import DeadLetters
from core.vendor_guard import VendorGuard

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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
class Snapshot:
    """The values of one scrape."""

    queue_jobs: int
    queue_due: int
    dead_letters: int
    vendors: Mapping[str, Mapping[str, Any]]


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
    )


class _SnapshotCollector:
    """A prometheus_client collector that yields one snapshot's values."""

    def __init__(self, values: Snapshot) -> None:
        self.values = values

    def collect(self) -> Iterable[Metric]:
        values = self.values
        yield GaugeMetricFamily(
            "usersync_queue_jobs",
            "Jobs in the arq queue, due now or deferred (retry backoff, open circuit, rate slot).",
            value=values.queue_jobs,
        )
        yield GaugeMetricFamily(
            "usersync_queue_jobs_due",
            "Jobs in the arq queue that are due now.",
            value=values.queue_due,
        )
        yield GaugeMetricFamily(
            "usersync_dead_letters", "Dead letters of all vendors.", value=values.dead_letters
        )
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
        for name, state in values.vendors.items():
            gauges["dead_letters"].add_metric([name], state["dead_letters"])
            gauges["circuit"].add_metric([name], CIRCUIT_STATES[state["circuit"]["state"]])
            gauges["failures"].add_metric([name], state["circuit"]["consecutive_failures"])
            gauges["rate"].add_metric([name], state["rate"]["effective_per_second"])
            for counter, value in state["usage"].items():
                gauges["usage"].add_metric([name, counter], value)
            calls = state["calls"]
            for outcome in sorted({*CALL_OUTCOMES, *calls}):
                counters["calls"].add_metric([name, outcome], calls.get(outcome, 0))
            counters["opened"].add_metric([name], state["circuit"]["times_opened"])
            counters["throttled"].add_metric([name], state["rate"]["times_throttled"])
        yield from gauges.values()
        yield from counters.values()


def render(values: Snapshot) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of a snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(values))
    return generate_latest(registry)
