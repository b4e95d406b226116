"""What a worker process measures of its own runs: vendor call durations, the time from an
event's receipt to its delivery, settled deliveries and deferred runs.

Counted per process (sum them across workers); the vendor's shared state (circuit, rate,
dead letters, backlog) is read from Redis by `core.metrics`. One `DeliveryMetrics` lives as
long as the process, across arq workers restarted after losing Redis and settings reloaded,
and every labelled child is made once (for the configured vendors, here; for one added by a
reload, on its first use), so a run only looks one up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from config.settings import Settings
from core.status import DeliveryState
from core.vendor_guard import CallOutcome, CircuitTransition

CALL_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""A vendor call: milliseconds on a good day, up to its `timeout_s` (at most tens of s)."""
DELIVERY_BUCKETS_S = (
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
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    21600.0,
    86400.0,
)
"""Receipt to delivery: tens of ms when the vendor is up, up to `retry.max_age_s` (a day by
default) through backoffs and open circuits."""
CALL_OUTCOMES: tuple[CallOutcome, ...] = ("success", "refused", "failure", "throttled")
SETTLED: tuple[DeliveryState, ...] = ("delivered", "skipped", "failed", "dead")
TRANSITIONS: tuple[CircuitTransition, ...] = ("open", "half_open", "closed")
DEFERRALS = ("rate", "open", "paused", "bulkhead")
"""Why a run did not call: the vendor guard's verdicts (rate slot, open circuit, the vendor's
own pause) and this process's bulkhead (its `max_in_flight` reached)."""


class DeliveryMetrics:
    """The delivery engine's instruments, registered in one process's registry."""

    def __init__(self, registry: CollectorRegistry, vendors: Iterable[str]) -> None:
        names = list(vendors)
        calls = Histogram(
            "usersync_vendor_call_duration_seconds",
            "Vendor calls made by this process, by vendor and outcome (success, refused: a "
            "4xx or body-level refusal, failure: network, timeout, 5xx, throttled: 429).",
            ["vendor", "outcome"],
            buckets=CALL_BUCKETS_S,
            registry=registry,
        )
        latency = Histogram(
            "usersync_delivery_latency_seconds",
            "From the gateway's receipt of an event to its delivery to the vendor, by vendor "
            "(retries and waits included).",
            ["vendor"],
            buckets=DELIVERY_BUCKETS_S,
            registry=registry,
        )
        settled = Counter(
            "usersync_deliveries",
            "Deliveries (event, vendor) settled by this process's runs, by new status: "
            "delivered, skipped, failed (to be retried), dead.",
            ["vendor", "status"],
            registry=registry,
        )
        deferred = Counter(
            "usersync_delivery_deferrals",
            "Runs that waited instead of calling, by reason: rate (a rate-limit slot), open "
            "(the circuit), paused (the vendor's Retry-After), bulkhead (max_in_flight).",
            ["vendor", "reason"],
            registry=registry,
        )
        transitions = Counter(
            "usersync_vendor_circuit_transitions",
            "Circuit state changes this process caused, by the state moved to: open (failures "
            "reached the threshold, or a probe failed), half_open (a probe let through), closed "
            "(a call succeeded).",
            ["vendor", "to"],
            registry=registry,
        )
        self.worker_running = Gauge(
            "usersync_worker_running",
            "1 while this process's arq worker is running (connected, taking jobs), else 0.",
            registry=registry,
        )
        self.families = {
            "calls": calls,
            "latency": latency,
            "settled": settled,
            "deferred": deferred,
            "transitions": transitions,
        }
        self.calls = {(v, o): calls.labels(v, o) for v in names for o in CALL_OUTCOMES}
        self.latency = {(v,): latency.labels(v) for v in names}
        self.settled = {(v, s): settled.labels(v, s) for v in names for s in SETTLED}
        self.deferred = {(v, r): deferred.labels(v, r) for v in names for r in DEFERRALS}
        self.transitions = {(v, t): transitions.labels(v, t) for v in names for t in TRANSITIONS}

    @classmethod
    def of(cls, settings: Settings, registry: CollectorRegistry | None = None) -> DeliveryMetrics:
        """For the configured vendors; a registry of their own unless given one."""
        return cls(registry or CollectorRegistry(), settings.vendors)

    def _child(self, family: str, children: dict[Any, Any], key: tuple[str, ...]) -> Any:
        """The labelled child of `key`, made on first use (a vendor added by a reload)."""
        child = children.get(key)
        if child is None:
            child = children[key] = self.families[family].labels(*key)
        return child

    def call(self, vendor: str, outcome: CallOutcome, seconds: float) -> None:
        self._child("calls", self.calls, (vendor, outcome)).observe(seconds)

    def deferral(self, vendor: str, reason: str) -> None:
        self._child("deferred", self.deferred, (vendor, reason)).inc()

    def transition(self, vendor: str, to: CircuitTransition) -> None:
        """A `core.vendor_guard.TransitionHook`."""
        self._child("transitions", self.transitions, (vendor, to)).inc()

    def committed(
        self, vendor: str, settled: dict[DeliveryState, int], received_at: list[str], now: float
    ) -> None:
        """A run's commit landed: count its settled deliveries, and for each delivered one
        the time since its event was received (`received_at`, UTC ISO; `now`, unix s)."""
        for state, n in settled.items():
            if state in SETTLED:
                self._child("settled", self.settled, (vendor, state)).inc(n)
        if not received_at:
            return
        latency = self._child("latency", self.latency, (vendor,))
        for received in received_at:
            since = dt.datetime.fromisoformat(received).timestamp()
            latency.observe(max(0.0, now - since))
