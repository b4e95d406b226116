"""One delivery attempt of one event to one vendor instance, and what its outcome records.

The engine knows nothing vendor-specific: it resolves the vendor id, asks the adapter for a
request, sends it, asks the adapter what the answer means, and records the outcome. Every
outcome is written to the event's status before the job ends, so a job that arq drops can
never take an event's fate with it.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from pydantic import ValidationError

from config.settings import Settings
from gateway.events import Event
from usersync.status import DeliveryState, TargetStatus, utc_now_iso
from usersync.store import Store
from workers.backoff import retry_delay
from workers.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    VendorRefused,
)
from workers.planning import plan_delivery
from workers.transport import send
from workers.vendors.base import VendorAdapter

log = structlog.get_logger("usersync.worker")


@dataclass(frozen=True)
class RetryLater:
    """The engine's verdict that the job must run again in `delay_s` seconds."""

    delay_s: float


class DeliveryEngine:
    """Runs deliveries; holds the long-lived collaborators of one worker process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        adapters: Mapping[str, VendorAdapter],
        session: aiohttp.ClientSession,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.store = store
        self.adapters = adapters
        self.session = session
        self.random = random_source

    async def deliver(self, source: str, event_id: str, target: str) -> RetryLater | None:
        """Make one attempt; return RetryLater when the job must be run again."""
        structlog.contextvars.bind_contextvars(event_id=event_id, vendor=target, source=source)
        stored = await self.store.load_delivery(source, event_id, target)
        if stored is None:
            log.error("delivery_record_missing", outcome="missing")
            return None
        if stored.status.final:
            log.info("delivery_already_final", status=stored.status.status, outcome="noop")
            return None
        attempt = Attempt(
            source, event_id, target, stored.status, stored.status.attempts + 1, time.monotonic()
        )
        try:
            event = Event.model_validate_json(stored.event_json)
        except ValidationError:
            log.exception("stored_event_invalid", outcome="dead")
            await self._finish(attempt, "dead", "stored_event_invalid")
            return None
        structlog.contextvars.bind_contextvars(user_id=event.user.id)
        adapter = self.adapters.get(target)
        if adapter is None:
            attempt.log("dead", None, "vendor_not_configured")
            await self._finish(attempt, "dead", "vendor_not_configured")
            return None
        try:
            translation = await plan_delivery(self.store, adapter, event)
            for omission in translation.omitted:
                log.info("field_omitted", field=omission.field, reason=omission.reason)
            if translation.request is None:
                log.info("delivery_skipped", attempt=attempt.number, outcome="skipped")
                await self._finish(attempt, "skipped", "nothing_to_send")
                return None
            response = await send(self.session, translation.request, adapter.settings.timeout_s)
            result = adapter.read_response(response.status, response.headers, response.body)
        except RetryableDeliveryError as exc:
            return await self._retry_or_die(attempt, exc, stored.received_at)
        except PermanentDeliveryError as exc:
            attempt.log("dead", exc.http_status, exc.describe())
            await self._finish(
                attempt, "dead", exc.describe(), exc.http_status, attempted=not _unsent(exc)
            )
            return None
        usage: dict[str, Any] = {"vendor_usage": dict(result.usage)} if result.usage else {}
        attempt.log("delivered", response.status, None, **usage)
        await self._finish(attempt, "delivered", None, response.status, attempted=True)
        return None

    async def _retry_or_die(
        self, attempt: Attempt, exc: RetryableDeliveryError, received_at: str
    ) -> RetryLater | None:
        """After a retryable failure: retry later, or dead once attempts or age run out."""
        policy = self.settings.vendors[attempt.target].retry
        delay = retry_delay(attempt.number, policy, exc.retry_after_s, self.random)
        age_s = (dt.datetime.now(dt.UTC) - _parse_iso(received_at)).total_seconds()
        if attempt.number >= policy.max_attempts or age_s + delay > policy.max_age_s:
            why = (
                "max_attempts reached"
                if attempt.number >= policy.max_attempts
                else "max_age exceeded"
            )
            attempt.log("dead", exc.http_status, exc.describe())
            await self._finish(
                attempt, "dead", f"{exc.describe()} ({why})", exc.http_status, attempted=True
            )
            return None
        attempt.log("retry", exc.http_status, exc.describe(), retry_in_s=round(delay, 3))
        next_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        await self._finish(
            attempt,
            "failed",
            exc.describe(),
            exc.http_status,
            attempted=True,
            next_attempt_at=next_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        )
        return RetryLater(delay)

    async def _finish(
        self,
        attempt: Attempt,
        state: DeliveryState,
        error: str | None,
        http_status: int | None = None,
        *,
        attempted: bool = False,
        next_attempt_at: str | None = None,
    ) -> None:
        """Record the attempt's outcome as the target's new status."""
        now = utc_now_iso()
        previous = attempt.previous
        status = TargetStatus(
            status=state,
            attempts=previous.attempts + (1 if attempted else 0),
            last_http_status=http_status if attempted else previous.last_http_status,
            last_error=error,
            updated_at=now,
            first_attempt_at=previous.first_attempt_at or (now if attempted else None),
            next_attempt_at=next_attempt_at,
        )
        await self.store.set_status(attempt.source, attempt.event_id, attempt.target, status)


@dataclass(frozen=True)
class Attempt:
    """One attempt of one delivery: what its outcome is recorded and logged against."""

    source: str
    event_id: str
    target: str
    previous: TargetStatus
    number: int
    started: float

    def log(
        self, outcome: str, http_status: int | None, error: str | None = None, **extra: Any
    ) -> None:
        """The one log line per attempt that operators follow (event_id etc. come bound)."""
        emit = log.warning if outcome == "dead" else log.info
        if error is not None:
            extra["error"] = error
        emit(
            "delivery_attempt",
            attempt=self.number,
            http_status=http_status,
            duration_ms=_ms_since(self.started),
            outcome=outcome,
            **extra,
        )


def _unsent(exc: DeliveryError) -> bool:
    """Refusals decided before any call (no link, schema) are not attempts at the vendor."""
    return not isinstance(exc, VendorRefused)


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _parse_iso(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
