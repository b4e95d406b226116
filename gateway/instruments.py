"""What the gateway measures in its own process: requests by route and status, their latency,
and the events each source had stored.

Routes are labelled by their template (`/v1/events/{event_id}`), never the raw path, and a
request no route matched is `unmatched` (`gateway.access.UNMATCHED`), so a client cannot
make a series per URL. `observe` is on every request's path (the gateway's middleware,
benchmarked): it looks up labelled children in dicts it fills once per label set, instead of
building a label dict per request.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from config.settings import Settings
from core.dead_letters import DeadLetters
from core.metrics import ClusterState
from core.store import Store
from core.telemetry import CONTENT_TYPE, Telemetry
from core.vendor_guard import VendorGuard

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods labelled as themselves; any other is `other` (a client picks the method)."""
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Ingest answers in about a millisecond (docs/performance.md): the buckets start below it."""
INGEST_OUTCOMES = ("accepted", "duplicate", "refused")
TELEMETRY = web.AppKey("telemetry", Telemetry)


def instrument(
    app: web.Application,
    telemetry: Telemetry | None,
    settings: Settings,
    store: Store,
    guard: VendorGuard,
    dead_letters: DeadLetters,
) -> None:
    """Measure `app`'s requests into `telemetry` (the process's; one of the app's own without
    it): `app[GATEWAY_METRICS]`, which the gateway's middleware feeds; and export the
    deployment's values read from Redis."""
    telemetry = telemetry or Telemetry()
    metrics = GatewayMetrics(telemetry.registry, settings)
    telemetry.watch_redis(store.redis)
    telemetry.add_reader(ClusterState(settings, store.redis, store.queue_name, guard, dead_letters))
    app[TELEMETRY] = telemetry
    app[GATEWAY_METRICS] = metrics


async def get_metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: answered while Redis is down too (`usersync_redis_up 0`)."""
    body = await request.app[TELEMETRY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


class GatewayMetrics:
    """The gateway's instruments, registered in one process's registry."""

    def __init__(self, registry: CollectorRegistry, settings: Settings) -> None:
        self.requests = Counter(
            "usersync_gateway_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "usersync_gateway_request_duration_seconds",
            "Time from a request's headers to its answer, by route template and method "
            "(POST /v1/events: the ingest latency, Redis's write included).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        events = Counter(
            "usersync_ingest_events",
            "Events posted, by source and outcome: accepted (stored, 202), duplicate (an "
            "event_id already stored, 200), refused (an event a batch refused on its own; "
            "a single post's refusal is its request's status).",
            ["source", "outcome"],
            registry=registry,
        )
        self.events = {
            (source.name, outcome): events.labels(source.name, outcome)
            for source in settings.sources
            for outcome in INGEST_OUTCOMES
        }
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

    def ingested(
        self, source: str, accepted: int = 0, duplicate: int = 0, refused: int = 0
    ) -> None:
        """Count a post's (or a batch's) events by outcome."""
        for outcome, n in (("accepted", accepted), ("duplicate", duplicate), ("refused", refused)):
            if n:
                self.events[(source, outcome)].inc(n)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request (`route` its template, or `UNMATCHED`), measured by the
        gateway's middleware (`gateway.app`) with the status it rendered."""
        if method not in METHODS:
            method = "other"
        key = (route, method)
        duration = self._durations.get(key)
        if duration is None:
            duration = self._durations[key] = self.duration.labels(route, method)
        duration.observe(seconds)
        counted = self._requests.get((route, method, status))
        if counted is None:
            counted = self.requests.labels(route, method, str(status))
            self._requests[(route, method, status)] = counted
        counted.inc()


GATEWAY_METRICS = web.AppKey("gateway_metrics", GatewayMetrics)
