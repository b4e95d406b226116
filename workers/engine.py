"""One job run for one pair (vendor instance, user): at most one vendor call, then a commit.

A run takes the pair's lease and reads what is pending (`core.pairs`), decides what it can
without calling (stale, nothing to send, refused by the vendor's schema, no link), merges the
rest field by field into one request (`workers.coalesce`), asks the vendor guard for a permit
(circuit breaker, shared rate), makes the call, and commits every event's outcome together
with the pair's next job. The engine knows nothing vendor-specific: adapters translate and
read answers. docs/delivery.md describes the whole design.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Mapping

import aiohttp
import orjson
import structlog
from pydantic import ValidationError

from config.settings import Settings
from config.vendors import VendorSettings
from core import keys
from core.pairs import CLEAR_SLOT, Commit, PairQueue
from core.secrets import SecretUndecryptable, secret_box
from core.status import TargetStatus, utc_now_iso
from core.vendor_guard import CallOutcome, Permit, VendorGuard
from workers import coalesce, planning
from workers.backoff import retry_delay
from workers.bulkhead import Bulkhead
from workers.claim import JobEnd
from workers.errors import (
    NoLink,
    PermanentDeliveryError,
    RetryableDeliveryError,
    SchemaRefused,
)
from workers.instruments import DeliveryMetrics
from workers.runs import (
    Candidate,
    Run,
    RunAgain,
    attempt_record,
    iso,
    log_call,
    log_unsent,
    ms_since,
    now_ms,
    parse_iso,
    parsed_event,
    select_carried,
)
from workers.transport import send
from workers.vendors.interface import Translation, VendorAdapter, VendorRequest

log = structlog.get_logger("usersync.worker")

BULKHEAD_WAIT_S = (0.2, 0.5)
"""A run that finds no place in its vendor's bulkhead tries again this much later."""


class DeliveryEngine:
    """Runs pair jobs; holds the long-lived collaborators of one worker process."""

    def __init__(
        self,
        settings: Settings,
        pairs: PairQueue,
        guard: VendorGuard,
        adapters: Mapping[str, VendorAdapter],
        session: aiohttp.ClientSession,
        random_source: Callable[[], float] = random.random,
        metrics: DeliveryMetrics | None = None,
        worker_id: str = "",
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        """Put in each lease token: with its heartbeat gone, another run takes the lease."""
        self.pairs = pairs
        self.guard = guard
        self.adapters = adapters
        self.session = session
        self.random = random_source
        self.metrics = metrics or DeliveryMetrics.of(settings)
        self.box = secret_box(settings.secrets)
        self.bulkheads = {
            name: Bulkhead(settings.in_flight_limit(name)) for name in settings.vendors
        }

    async def run(self, target: str, user_id: str, job_id: str, end: JobEnd | None = None) -> None:
        """One run of the pair's job; RunAgain when another run holds the pair's lease.
        `end`: the arq job's end, sent with the commit (then marked sent)."""
        structlog.contextvars.bind_contextvars(vendor=target, user_id=user_id)
        vendor = self.settings.vendors.get(target)
        lease_ms = int(((vendor.timeout_s if vendor else 10) + 5) * 1000)
        token = keys.lease_token(job_id, self.worker_id, uuid.uuid4().hex[:12])
        begun = await self.pairs.begin(
            target, user_id, job_id, token, lease_ms, self.settings.worker.max_batch
        )
        if begun.verdict == "busy":
            raise RunAgain(begun.busy_ms / 1000 + 0.05)
        if begun.batch is None:
            return
        if begun.replaced is not None:  # its worker died mid-run: this run redoes its work
            log.warning("lease_taken_over", previous=begun.replaced, outcome="taken_over")
        run = Run(target, user_id, token, begun.batch)
        try:
            commit = await self._decide(run)
        except BaseException:
            # Give the lease back so the job's next run is not blocked; it redoes this run.
            await asyncio.shield(self._release(run))
            raise
        commit.updates = run.updates
        commit.urgent = run.batch.urgent
        committed = await self.pairs.commit(
            target, user_id, token, now_ms(), commit, run.guard_record, end.call if end else None
        )
        if end is not None:
            end.sent = True
        if not committed:
            log.warning("lease_lost", outcome="lease_lost", events=len(run.updates))
            return
        self.metrics.committed(target, run.settled, run.delivered_received_at, time.time())

    async def _release(self, run: Run) -> None:
        try:
            await self.pairs.commit(
                run.target,
                run.user_id,
                run.token,
                now_ms(),
                Commit("release"),
                before=run.guard_record,
            )
        except Exception:  # noqa: BLE001 - Redis may be why we are here; the lease then expires
            log.warning("lease_release_failed", outcome="lease_expires")
            return
        job_id = run.token.rpartition(":")[0]  # the pair's job runs again: no event is lost
        refs = [pending.ref for pending in run.batch.pending]
        log.info("lease_released", job_id=job_id, events=refs, outcome="handed_back")

    async def _decide(self, run: Run) -> Commit:
        adapter = self.adapters.get(run.target)
        vendor = self.settings.vendors.get(run.target)
        candidates = self._read(run)
        if adapter is None or vendor is None:
            for candidate in candidates:
                log_unsent(candidate, "dead", "vendor_not_configured")
                run.settle(candidate, "dead", "vendor_not_configured")
            return Commit("next")
        selected = select_carried(candidates, run.batch.isolate_left)
        isolate_left = max(0, run.batch.isolate_left - 1) if run.batch.isolate_left else None
        included = self._plan(run, adapter, selected)
        if not included:
            return Commit("next", isolate_left=isolate_left)
        if len(included) == 1:
            translation = included[0].translation
        else:
            try:
                translation = self._merged(run, adapter, included)
            except SchemaRefused as exc:
                log.info("coalesced_refused", outcome="isolate", error=exc.describe())
                return Commit("next", isolate_left=len(included))
        assert translation is not None and translation.request is not None
        bulkhead = self.bulkheads[run.target]
        if not await bulkhead.enter():
            self.metrics.deferral(run.target, "bulkhead")
            wait_s = BULKHEAD_WAIT_S[0] + self.random() * (BULKHEAD_WAIT_S[1] - BULKHEAD_WAIT_S[0])
            run.wait(included, "in_flight", at_ms := now_ms() + int(wait_s * 1000))
            return Commit("at", at_ms=at_ms)
        try:
            permit = await self.guard.permit(
                run.target,
                vendor,
                None,
                run.token,
                run.batch.reserved_slot_ms,
                urgent=run.batch.urgent,
            )
            if not permit.allowed:
                return self._deferred(run, included, permit)
            commit = await self._call(run, adapter, vendor, included, translation.request)
        finally:
            bulkhead.leave()
        if run.batch.reserved_slot_ms is not None:  # the call used it
            commit.reserved_slot_ms = CLEAR_SLOT
        if commit.isolate_left is None and commit.mode == "next":  # its event was settled
            commit.isolate_left = isolate_left
        return commit

    def _read(self, run: Run) -> list[Candidate]:
        """Parse the pending refs; unreadable or already-final ones are settled at once.

        A stored event's secrets are encrypted (`core.secrets`): they are decrypted here,
        in memory, before validation. One that no configured key opens is `dead` at once."""
        candidates = []
        for pending in run.batch.pending:
            if pending.event_json is None or pending.status_json is None:
                log.error(
                    "pending_event_missing", ref=pending.ref, outcome="dead", reason="expired"
                )
                run.expire(pending)
                continue
            status = TargetStatus.from_json(pending.status_json)
            if status.final:  # a ref that was already settled: nothing left to do
                run.drop(pending)
                continue
            history = orjson.loads(pending.history_json) if pending.history_json else []
            try:
                event = parsed_event(pending.event_json, self.box)
            except SecretUndecryptable as exc:
                log.warning(
                    "stored_secret_undecryptable", ref=pending.ref, field=exc.path, outcome="dead"
                )
                run.settle_ref(pending, status, history, "dead", f"secret_undecryptable: {exc}")
                continue
            except (ValidationError, orjson.JSONDecodeError) as exc:
                # Only where the problems are: the error's text would show the values, and the
                # event's secrets are in clear by now.
                where = (
                    [".".join(map(str, error["loc"])) for error in exc.errors()]
                    if isinstance(exc, ValidationError)
                    else ["(not JSON)"]
                )
                log.warning("stored_event_invalid", ref=pending.ref, outcome="dead", fields=where)
                run.settle_ref(pending, status, history, "dead", "stored_event_invalid")
                continue
            values = coalesce.flatten(event.changes.present(), event.vendor_fields.get(run.target))
            candidates.append(Candidate(pending, event, status, history, values))
        candidates.sort(key=lambda c: (c.pending.order, c.pending.received_at or ""))
        return candidates

    def _plan(self, run: Run, adapter: VendorAdapter, selected: list[Candidate]) -> list[Candidate]:
        """Settle what needs no call; return the candidates the call must carry."""
        if not selected:
            return []
        vendor_user_id = planning.vendor_user_id(
            run.target, [c.event for c in selected], run.batch.link
        )
        included = []
        for candidate in selected:
            if vendor_user_id is None:
                self._refuse(run, candidate, NoLink(run.target))
                continue
            candidate.fresh = coalesce.fresh(
                candidate.values.values, candidate.pending.order, run.batch.applied
            )
            if candidate.values.values and not candidate.fresh and not candidate.values.opaque:
                log_unsent(candidate, "skipped", "stale")
                run.settle(candidate, "skipped", "stale")
                continue
            try:
                candidate.translation = planning.translate(
                    adapter,
                    run.user_id,
                    vendor_user_id,
                    candidate.fresh,
                    candidate.values.opaque,
                    run.batch.profile,
                )
            except PermanentDeliveryError as exc:
                self._refuse(run, candidate, exc)
                continue
            for omission in candidate.translation.omitted:
                log.info(
                    "field_omitted",
                    event_id=candidate.event_id,
                    field=omission.field,
                    reason=omission.reason,
                )
            if candidate.translation.request is None:
                log_unsent(candidate, "skipped", "nothing_to_send")
                run.settle(candidate, "skipped", "nothing_to_send")
                continue
            included.append(candidate)
        run.vendor_user_id = vendor_user_id
        return included

    def _merged(self, run: Run, adapter: VendorAdapter, included: list[Candidate]) -> Translation:
        """One translation of every included change, newest value per field key."""
        merged, _ = coalesce.merge((c.pending.order, c.fresh) for c in included)
        return planning.translate(
            adapter, run.user_id, run.vendor_user_id or "", merged, None, run.batch.profile
        )

    def _deferred(self, run: Run, included: list[Candidate], permit: Permit) -> Commit:
        """The guard said not now: the pair's job runs again later; no attempt is counted,
        the carried events' statuses say what they wait for. A reserved rate slot is kept as
        the guard gave it (its clock is Redis's)."""
        verdict, wait_ms, slot_ms = permit.verdict, permit.wait_ms, permit.slot_ms
        spread = 0 if verdict == "rate" else int(self.random() * min(1000, wait_ms / 10 + 50))
        at_ms = now_ms() + wait_ms + spread
        log.info("delivery_deferred", reason=verdict, wait_ms=wait_ms + spread, outcome="deferred")
        self.metrics.deferral(run.target, verdict)
        reserved = slot_ms if verdict == "rate" else None
        run.wait(included, "circuit_open" if verdict == "open" else "rate_limit", at_ms)
        return Commit("at", at_ms=at_ms, reserved_slot_ms=reserved, held=verdict == "open")

    async def _call(
        self,
        run: Run,
        adapter: VendorAdapter,
        vendor: VendorSettings,
        included: list[Candidate],
        request: VendorRequest,
    ) -> Commit:
        """Make the call and turn its answer into every carried event's outcome."""
        started = time.monotonic()
        http_status: int | None = None
        try:
            response = await send(self.session, request, vendor.timeout_s)
            http_status = response.status
            result = adapter.read_response(response.status, response.headers, response.body)
        except RetryableDeliveryError as exc:
            outcome: CallOutcome = "throttled" if exc.http_status == 429 else "failure"
            self.metrics.call(run.target, outcome, time.monotonic() - started)
            run.guard_record = self.guard.record_call(
                run.target, vendor, None, run.token, outcome, exc.retry_after_s
            )
            return self._retry_or_die(run, vendor, included, exc, ms_since(started))
        except PermanentDeliveryError as exc:
            self.metrics.call(run.target, "refused", time.monotonic() - started)
            run.guard_record = self.guard.record_call(
                run.target, vendor, None, run.token, "refused"
            )
            attempt = attempt_record(included, exc.http_status or http_status, ms_since(started))
            if len(included) > 1:
                log_call(included, attempt, "isolate", exc.describe())
                return Commit("next", isolate_left=len(included))
            log_call(included, attempt, "dead", exc.describe())
            run.settle(included[0], "dead", exc.describe(), attempt=attempt)
            return Commit("next")
        self.metrics.call(run.target, "success", time.monotonic() - started)
        run.guard_record = self.guard.record_call(
            run.target, vendor, None, run.token, "success", usage=result.usage
        )
        attempt = attempt_record(included, http_status, ms_since(started))
        usage = {"vendor_usage": dict(result.usage)} if result.usage else {}
        log_call(included, attempt, "delivered", None, **usage)
        for candidate in included:
            run.settle(candidate, "delivered", None, attempt=attempt, coalesced=len(included))
        _, orders = coalesce.merge((c.pending.order, c.fresh) for c in included)
        return Commit("next", applied=orders)

    def _retry_or_die(
        self,
        run: Run,
        vendor: VendorSettings,
        included: list[Candidate],
        exc: RetryableDeliveryError,
        duration_ms: float,
    ) -> Commit:
        """After a retryable failure: each carried event retries later or, once its attempts
        or age run out, is dead; the pair's job is scheduled after the backoff."""
        policy = vendor.retry
        attempt = attempt_record(included, exc.http_status, duration_ms)
        number = attempt["attempt"]
        delay = retry_delay(number, policy, exc.retry_after_s, self.random)
        now = dt.datetime.now(dt.UTC)
        next_at = now + dt.timedelta(seconds=delay)
        retrying = False
        for candidate in included:
            since = candidate.status.replayed_at or candidate.pending.received_at
            age_s = (now - parse_iso(since or utc_now_iso())).total_seconds()
            if candidate.status.attempts + 1 >= policy.max_attempts:
                why = "max_attempts reached"
            elif age_s + delay > policy.max_age_s:
                why = "max_age exceeded"
            else:
                run.settle(
                    candidate,
                    "failed",
                    exc.describe(),
                    attempt=attempt,
                    remove=False,
                    next_attempt_at=iso(next_at),
                    waiting_for="retry_backoff",
                )
                retrying = True
                continue
            run.settle(candidate, "dead", f"{exc.describe()} ({why})", attempt=attempt)
        outcome = "retry" if retrying else "dead"
        extra = {"retry_in_s": round(delay, 3)} if retrying else {}  # a dead call retries never
        log_call(included, attempt, outcome, exc.describe(), **extra)
        if retrying:
            return Commit("at", at_ms=int(next_at.timestamp() * 1000))
        return Commit("next")

    def _refuse(self, run: Run, candidate: Candidate, exc: PermanentDeliveryError) -> None:
        """A refusal decided before any call: dead with 0 attempts, never sent."""
        log_unsent(candidate, "dead", exc.describe())
        run.settle(candidate, "dead", exc.describe())
