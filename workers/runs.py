"""What one job run of a pair reads, decides and writes: its candidates and its records.

`Run` accumulates every event's new status while the engine decides; the engine hands them to
the pair's commit in one round trip (`core.pairs`).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from core.event import Event
from core.pairs import EventUpdate, PairBatch, PendingRef
from core.scripts import ScriptCall
from core.secrets import SecretBox
from core.status import DeliveryState, TargetStatus, WaitReason, utc_now_iso
from workers import coalesce
from workers.vendors.interface import Translation

log = structlog.get_logger("usersync.worker")

HISTORY_KEPT = 20
"""Attempt records kept per (event, target) for dead letters: the most recent ones."""


class RunAgain(Exception):
    """The pair's job must run again (same job) in `delay_s`: another run holds its lease."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s)
        self.delay_s = delay_s


@dataclass
class Candidate:
    """One pending event of the pair, read and parsed."""

    pending: PendingRef
    event: Event
    status: TargetStatus
    history: list[dict[str, Any]]
    values: coalesce.FieldValues
    fresh: dict[str, Any] = field(default_factory=dict)
    translation: Translation | None = None

    @property
    def event_id(self) -> str:
        return self.event.event_id


@dataclass
class Run:
    """What one job run accumulates before it commits."""

    target: str
    user_id: str
    token: str
    batch: PairBatch

    vendor_user_id: str | None = None
    updates: list[EventUpdate] = field(default_factory=list)
    guard_record: ScriptCall | None = None
    """How the run's call went, for the vendor guard: sent with the commit, one round trip."""
    settled: dict[DeliveryState, int] = field(default_factory=dict)
    """How many events each new status was given (`workers.instruments`, after the commit)."""
    delivered_received_at: list[str] = field(default_factory=list)
    """When each delivered event was received (its delivery latency, after the commit)."""

    def drop(self, pending: PendingRef) -> None:
        """Take a ref out of the pair without writing its event (gone, or already final)."""
        self.updates.append(EventUpdate(pending.ref, b"", b"", remove=True))

    def expire(self, pending: PendingRef) -> None:
        """A ref whose event record is gone (evicted, or removed by hand): the event cannot
        be delivered, so the delivery is `dead` (`expired`), indexed as a dead letter and
        counted, never dropped silently. Its status cannot be written: there is no hash."""
        self.settled["dead"] = self.settled.get("dead", 0) + 1
        self.updates.append(EventUpdate(pending.ref, b"", b"", remove=True, dead=True))

    def settle(
        self, candidate: Candidate, state: DeliveryState, error: str | None, **outcome: Any
    ) -> None:
        """Record an event's new status (see `settle_ref` for the keyword arguments)."""
        self.settle_ref(
            candidate.pending, candidate.status, candidate.history, state, error, **outcome
        )

    def settle_ref(
        self,
        pending: PendingRef,
        previous: TargetStatus,
        history: list[dict[str, Any]],
        state: DeliveryState,
        error: str | None,
        *,
        attempt: dict[str, Any] | None = None,
        remove: bool = True,
        next_attempt_at: str | None = None,
        coalesced: int | None = None,
        waiting_for: WaitReason | None = None,
    ) -> None:
        """Record an event's new status; `attempt` is the record of a call that carried it,
        `remove` takes it out of the pair's pending set, `coalesced` counts the call's events."""
        now = utc_now_iso()
        self.settled[state] = self.settled.get(state, 0) + 1
        if state == "delivered" and pending.received_at is not None:
            self.delivered_received_at.append(pending.received_at)
        if attempt is not None:
            history = [*history, {**attempt, "outcome": state, "error": error}][-HISTORY_KEPT:]
        status = TargetStatus(
            status=state,
            attempts=previous.attempts + (1 if attempt is not None else 0),
            last_http_status=attempt["http_status"] if attempt else previous.last_http_status,
            last_error=error,
            updated_at=now,
            first_attempt_at=previous.first_attempt_at or (now if attempt else None),
            next_attempt_at=next_attempt_at,
            coalesced=coalesced,
            replayed_at=previous.replayed_at,
            waiting_for=waiting_for,
        )
        self.updates.append(
            EventUpdate(
                pending.ref,
                status.to_json(),
                orjson.dumps(history),
                remove=remove,
                dead=state == "dead",
            )
        )

    def wait(self, carried: list[Candidate], reason: WaitReason, at_ms: int) -> None:
        """Say what the events a call would have carried wait for, and when they are tried
        again (`at_ms`): the call was not made, so no attempt is counted and each event's
        state and last error stay."""
        at = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
        changes = {
            "waiting_for": reason,
            "next_attempt_at": at.replace("+00:00", "Z"),
            "updated_at": utc_now_iso(),
        }
        for candidate in carried:
            status = candidate.status.model_copy(update=changes)
            history = orjson.dumps(candidate.history)
            self.updates.append(
                EventUpdate(candidate.pending.ref, status.to_json(), history, remove=False)
            )


def attempt_record(
    included: list[Candidate], http_status: int | None, duration_ms: float
) -> dict[str, Any]:
    """One call as the attempt history of each event it carried records it."""
    return {
        "at": utc_now_iso(),
        "attempt": max(c.status.attempts for c in included) + 1,
        "http_status": http_status,
        "duration_ms": duration_ms,
        "coalesced": len(included),
    }


def now_ms() -> int:
    return int(time.time() * 1000)


def ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def iso(value: dt.datetime) -> str:
    """A UTC time as the statuses write it (ms, `Z`)."""
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def parsed_event(stored_json: bytes, box: SecretBox) -> Event:
    """A stored event, its secrets decrypted; one without any is parsed straight from its
    JSON (pydantic's parser), the common case, skipping the walk for secrets."""
    if box.holds_ciphertext(stored_json):
        return Event.model_validate(box.open(orjson.loads(stored_json)))
    return Event.model_validate_json(stored_json)


def select_carried(candidates: list[Candidate], isolate_left: int) -> list[Candidate]:
    """The candidates one call may carry: one while isolating after a refused batch; else all,
    up to (not past) an event whose vendor fields cannot be merged, which goes alone."""
    if not candidates:
        return []
    if isolate_left or candidates[0].values.opaque is not None:
        return candidates[:1]
    selected = []
    for candidate in candidates:
        if candidate.values.opaque is not None:
            break
        selected.append(candidate)
    return selected


def log_unsent(candidate: Candidate, outcome: str, reason: str) -> None:
    """The line of an event settled without a call (stale, nothing to send, refused)."""
    emit = log.warning if outcome == "dead" else log.info
    emit(
        "delivery_attempt",
        event_id=candidate.event_id,
        attempt=candidate.status.attempts,
        http_status=None,
        duration_ms=0.0,
        outcome=outcome,
        error=reason,
    )


def log_call(
    included: list[Candidate],
    attempt: dict[str, Any],
    outcome: str,
    error: str | None,
    **extra: Any,
) -> None:
    """The one log line per vendor call: `event_id` is the newest change it carried,
    `event_ids` all of them."""
    emit = log.warning if outcome == "dead" else log.info
    if error is not None:
        extra["error"] = error
    emit(
        "delivery_attempt",
        event_id=included[-1].event_id,
        event_ids=[c.event_id for c in included],
        coalesced=len(included),
        attempt=attempt["attempt"],
        http_status=attempt["http_status"],
        duration_ms=attempt["duration_ms"],
        outcome=outcome,
        **extra,
    )
