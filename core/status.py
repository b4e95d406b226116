"""Per-target delivery status: what `GET /v1/events/{id}` shows and the worker updates."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict

DeliveryState = Literal["pending", "delivered", "skipped", "failed", "dead"]
FINAL_STATES: frozenset[str] = frozenset({"delivered", "skipped", "dead"})


def utc_now_iso() -> str:
    """Timestamps as SPEC §2 shows them: UTC, millisecond precision, `Z` suffix."""
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
