"""Per-target delivery status: what `GET /v1/events/{id}` shows and the worker updates."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, model_validator

DeliveryState = Literal["pending", "delivered", "skipped", "failed", "dead"]
FINAL_STATES: frozenset[str] = frozenset({"delivered", "skipped", "dead"})
WaitReason = Literal["queued", "retry_backoff", "circuit_open", "rate_limit", "in_flight"]
"""Why a `pending` or `failed` target is not delivered yet (`TargetStatus.waiting_for`):
`queued`, accepted and waiting for a worker to take its (vendor, user) pair, at once or after
the call in flight to that user; `retry_backoff`, a call failed and the next one waits out
its backoff; `circuit_open`, the vendor's circuit breaker holds calls off; `rate_limit`, the
vendor's shared rate (or the pause its `Retry-After` asked for); `in_flight`, this worker's
`max_in_flight` calls to the vendor are all running."""


def utc_now_iso() -> str:
    """Timestamps as docs/contract.md §2 shows them: UTC, millisecond precision, `Z` suffix."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TargetStatus(BaseModel):
    """One target's state for one event. `last_error` never holds a secret."""

    model_config = ConfigDict(extra="ignore")

    status: DeliveryState = "pending"
    attempts: int = 0
    last_http_status: int | None = None
    last_error: str | None = None
    updated_at: str
    first_attempt_at: str | None = None
    next_attempt_at: str | None = None
    coalesced: int | None = None
    """How many events the call that delivered this one carried (1: it went alone)."""
    replayed_at: str | None = None
    """When a dead letter was last replayed: `retry.max_age_s` then counts from here."""
    waiting_for: WaitReason | None = None
    """What a target that is not final waits for (`WaitReason`), with `next_attempt_at` when
    it is known; None once final."""

    @model_validator(mode="after")
    def _waiting(self) -> TargetStatus:
        """A pending target nobody said more of is queued (statuses written at ingest or by
        a replay, and those stored before this field existed); a final one waits for
        nothing."""
        if self.status == "pending" and self.waiting_for is None:
            self.waiting_for = "queued"
        elif self.status in FINAL_STATES:
            self.waiting_for = None
        return self

    @classmethod
    def pending(cls) -> TargetStatus:
        return cls(updated_at=utc_now_iso())

    @classmethod
    def from_json(cls, raw: bytes | str) -> TargetStatus:
        return cls.model_validate_json(raw)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump())

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES
