"""Per vendor instance, shared by every worker process: circuit breaker and adaptive rate limit.

Both live in one Redis hash per instance (`keys.vendor`, its fields `keys.VENDOR_*`), changed
only by the two scripts `core/lua/vendor_permit.lua` and `vendor_record.lua`, so every worker
sees one breaker and one rate:

- `permit` is asked before a call. The breaker first: an open circuit holds calls off until
  its cool-down ends, then lets exactly one *probe* call through (a token with expiry). Then a
  pause a vendor asked for (`Retry-After` on a 429). Then the rate: GCRA with reservation, so
  each caller that must wait gets its own future slot (callers queue up instead of all polling
  for the next free token).
- `record` is told how the call went: success (or a refusal, which also proves the vendor up)
  closes the circuit and moves the pair jobs it held off (`keys.held`) to now in arq's queue; a failure counts towards opening it, and a failed probe reopens it with
  a doubled cool-down; a 429 halves the rate, which climbs back linearly over `recovery_s`.
  Usage counters a vendor reports (Plaspy's `apiUsage`, `apiDailyUsage`) are kept here too.

Their clock is Redis's own (`TIME`): a worker's clock may differ from another host's, and a
worker short of CPU sends a `now` that is already old when the script runs, which made the
rate hold calls off for no reason (seen in the soak benchmark). Tests pass an explicit `now`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from arq.constants import default_queue_name
from redis.asyncio import Redis

from config.vendors import VendorSettings
from core import keys
from core.scripts import ScriptCall, ScriptSender, load_lua, reply_or_raise, run_together

log = structlog.get_logger("usersync.vendors")

MIN_RATE_FACTOR = 0.05
"""A 429 storm never slows an instance below this share of its configured rate."""

Verdict = Literal["go", "probe", "open", "paused", "rate"]
CallOutcome = Literal["success", "refused", "failure", "throttled"]
CircuitTransition = Literal["open", "half_open", "closed"]
"""The state a circuit moved into."""
TransitionHook = Callable[[str, CircuitTransition], None]
"""Told (vendor instance, new state) of each transition this process caused (its metrics)."""


@dataclass(frozen=True)
class Permit:
    """`go`/`probe`: call now. `open`, `paused`, `rate`: do not call; try again in `wait_ms`
    (for `rate`, a slot is reserved at `slot_ms`, on the guard's clock: hand it back to
    `permit` as the reserved slot)."""

    verdict: Verdict
    wait_ms: int
    slot_ms: int | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict in ("go", "probe")


class VendorGuard:
    """The breaker and rate scripts bound to one Redis client; holds no other state."""

    def __init__(
        self,
        redis: Redis,
        queue_name: str = default_queue_name,
        on_transition: TransitionHook | None = None,
        send: ScriptSender | None = None,
    ) -> None:
        self.redis = redis
        self.send = send or functools.partial(run_together, redis)
        """How permit and record reach Redis: a worker's batcher shares its jobs' round trips."""
        self.queue_name = queue_name
        self.on_transition = on_transition
        self._commands: Any = redis
        self._permit = redis.register_script(load_lua(keys.Script.VENDOR_PERMIT))
        self._record = redis.register_script(load_lua(keys.Script.VENDOR_RECORD))

    async def permit(
        self,
        name: str,
        settings: VendorSettings,
        now_ms: int | None,
        token: str,
        reserved_slot_ms: int | None,
        urgent: bool = False,
    ) -> Permit:
        """May `name` be called now? A reserved slot that is due is used without a new one.
        `now_ms` None: Redis's clock (the workers); a time: that one (tests). `urgent`: the
        call takes the urgent lane, ahead of normal reserved slots (vendor_permit.lua)."""
        call = ScriptCall(
            self._permit,
            [keys.vendor(name), keys.probe(name)],
            [
                "" if now_ms is None else now_ms,
                settings.rate_limit.per_second,
                settings.rate_limit.burst,
                "" if reserved_slot_ms is None else reserved_slot_ms,
                int((settings.timeout_s + 5) * 1000),
                int(settings.rate_limit.recovery_s * 1000),
                token,
                "1" if urgent else "",
            ],
        )
        reply = reply_or_raise((await self.send([call]))[0])
        verdict = reply[0].decode()
        if verdict == "probe":  # the circuit goes half-open: this call is its probe
            log.info(
                "circuit_half_open",
                vendor=name,
                failures=int(reply[3]),
                cooldown_s=int(reply[4]) / 1000,
            )
            self._transitioned(name, "half_open")
        slot = int(reply[2]) if len(reply) > 2 and reply[2] else None
        return Permit(verdict, int(reply[1]), slot)

    async def record(
        self,
        name: str,
        settings: VendorSettings,
        now_ms: int | None,
        token: str,
        outcome: CallOutcome,
        retry_after_s: float | None = None,
        usage: Mapping[str, int] | None = None,
    ) -> None:
        """Tell the breaker and the rate how a call to `name` went."""
        call = self.record_call(name, settings, now_ms, token, outcome, retry_after_s, usage)
        reply_or_raise((await self.send([call]))[0])

    def record_call(
        self,
        name: str,
        settings: VendorSettings,
        now_ms: int | None,
        token: str,
        outcome: CallOutcome,
        retry_after_s: float | None = None,
        usage: Mapping[str, int] | None = None,
    ) -> ScriptCall:
        """`record` as a script call, for a caller sending it with others in one round trip
        (the engine sends it with the pair's commit)."""
        breaker = settings.circuit_breaker
        args: list[Any] = [
            "" if now_ms is None else now_ms,
            outcome,
            breaker.failure_threshold,
            int(breaker.cooldown_s * 1000),
            int(breaker.max_cooldown_s * 1000),
            "" if retry_after_s is None else int(retry_after_s * 1000),
            int(settings.rate_limit.recovery_s * 1000),
            token,
            MIN_RATE_FACTOR,
        ]
        for counter, value in (usage or {}).items():
            args += [counter, value]
        return ScriptCall(
            self._record,
            [keys.vendor(name), keys.probe(name), keys.held(name), self.queue_name],
            args,
            on_reply=lambda reply: self._transitioned(name, log_transition(name, reply)),
        )

    def _transitioned(self, name: str, to: CircuitTransition | None) -> None:
        if to is not None and self.on_transition is not None:
            self.on_transition(name, to)

    async def state(self, name: str, settings: VendorSettings, now_ms: int) -> dict[str, Any]:
        """What operators see of an instance (`GET /v1/vendors`, `usersync vendors`)."""
        raw = await self._commands.hgetall(keys.vendor(name))
        fields = {key.decode(): value.decode() for key, value in raw.items()}
        open_until = int(float(fields.get(keys.VENDOR_OPEN_UNTIL, 0)))
        factor = _current_factor(fields, now_ms, settings.rate_limit.recovery_s * 1000)
        paused_until = int(float(fields.get(keys.VENDOR_PAUSED_UNTIL, 0)))
        if open_until == 0:
            circuit = "closed"
        elif now_ms < open_until:
            circuit = "open"
        else:
            circuit = "half_open"
        return {
            "kind": settings.kind,
            "circuit": {
                "state": circuit,
                "consecutive_failures": int(fields.get(keys.VENDOR_FAILURES, 0)),
                "open_for_s": round(max(0, open_until - now_ms) / 1000, 3),
                "times_opened": int(fields.get(keys.VENDOR_OPENED, 0)),
            },
            "rate": {
                "configured_per_second": settings.rate_limit.per_second,
                "burst": settings.rate_limit.burst,
                "effective_per_second": round(settings.rate_limit.per_second * factor, 3),
                "paused_for_s": round(max(0, paused_until - now_ms) / 1000, 3),
                "times_throttled": int(fields.get(keys.VENDOR_THROTTLED, 0)),
            },
            "calls": {
                key.removeprefix(keys.VENDOR_CALLS_PREFIX): int(value)
                for key, value in sorted(fields.items())
                if key.startswith(keys.VENDOR_CALLS_PREFIX)
            },
            "usage": {
                key.removeprefix(keys.VENDOR_USAGE_PREFIX): int(value)
                for key, value in sorted(fields.items())
                if key.startswith(keys.VENDOR_USAGE_PREFIX)
            },
        }


def log_transition(name: str, reply: Any) -> CircuitTransition | None:
    """Log what the record script says of the circuit: opened (with the consecutive failures
    and the cool-down it holds calls off for; `probe_failed` when a half-open probe failed)
    or closed (with the failures and cool-down it had). The state it moved into, if any."""
    transition = reply[0].decode() if isinstance(reply, list) and reply else "none"
    if transition == "circuit_opened":
        log.warning(
            "circuit_opened",
            vendor=name,
            failures=int(reply[1]),
            cooldown_s=int(reply[2]) / 1000,
            probe_failed=bool(int(reply[3])),
        )
        return "open"
    if transition == "circuit_closed":
        log.info(
            "circuit_closed", vendor=name, failures=int(reply[1]), cooldown_s=int(reply[2]) / 1000
        )
        return "closed"
    return None


def _current_factor(fields: Mapping[str, str], now_ms: int, recovery_ms: float) -> float:
    """The rate factor as `permit` computes it (Python twin of the Lua `current_factor`)."""
    if keys.VENDOR_FACTOR not in fields:
        return 1.0
    factor = float(fields[keys.VENDOR_FACTOR])
    factor_at = float(fields[keys.VENDOR_FACTOR_AT])
    return min(1.0, factor + (1 - factor) * max(0.0, now_ms - factor_at) / recovery_ms)
