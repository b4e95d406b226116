"""The shared circuit breaker and adaptive GCRA rate limit (core.vendor_guard), on the real
Redis. Every call passes an explicit `now_ms`, so nothing depends on the wall clock (only the
probe token's expiry is Redis's own)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from config.vendors import VendorSettings
from core import keys
from core.vendor_guard import CallOutcome, Permit, VendorGuard

T0 = 1_800_000_000_000
"""A realistic epoch time in ms; every test counts from it."""
NAME = "fleet-eu"


def vendor(
    per_second: float = 10.0,
    burst: int = 3,
    recovery_s: float = 10.0,
    failure_threshold: int = 3,
    cooldown_s: float = 10.0,
    max_cooldown_s: float = 25.0,
    timeout_s: float = 2.0,
) -> VendorSettings:
    return VendorSettings.model_validate(
        {
            "kind": "fleet",
            "base_url": "http://127.0.0.1:9/fleet/api",
            "auth": {"token": "flt_sk_test_token"},
            "timeout_s": timeout_s,
            "rate_limit": {"per_second": per_second, "burst": burst, "recovery_s": recovery_s},
            "circuit_breaker": {
                "failure_threshold": failure_threshold,
                "cooldown_s": cooldown_s,
                "max_cooldown_s": max_cooldown_s,
            },
        }
    )


async def permits(
    guard: VendorGuard, settings: VendorSettings, now_ms: int, count: int, name: str = NAME
) -> list[tuple[str, int]]:
    """(verdict, wait_ms) of `count` callers asking one after another at `now_ms`."""
    answers: list[tuple[str, int]] = []
    for n in range(count):
        permit = await guard.permit(name, settings, now_ms, f"caller-{now_ms}-{n}", None)
        answers.append((permit.verdict, permit.wait_ms))
    return answers


def near(actual: int, expected: int, tolerance: int = 1) -> bool:
    return abs(actual - expected) <= tolerance


async def open_circuit(
    guard: VendorGuard, settings: VendorSettings, now_ms: int, name: str = NAME
) -> None:
    """`failure_threshold` failed calls at `now_ms`."""
    for n in range(settings.circuit_breaker.failure_threshold):
        await guard.record(name, settings, now_ms, f"failing-{n}", "failure")


# rate


async def test_burst_goes_then_each_waiting_caller_gets_its_own_slot(redis: Redis) -> None:
    """At 10/s with burst 3, three callers at one instant go; the 4th is told `rate` in 100 ms,
    the 5th in 200 ms: each waiting caller reserves its own later slot."""
    guard, settings = VendorGuard(redis), vendor(per_second=10, burst=3)
    answers = await permits(guard, settings, T0, 5)
    assert [verdict for verdict, _ in answers] == ["go", "go", "go", "rate", "rate"]
    assert [wait for _, wait in answers[:3]] == [0, 0, 0]
    assert near(answers[3][1], 100), answers
    assert near(answers[4][1], 200), answers


async def test_a_due_reserved_slot_goes_without_taking_a_new_one(redis: Redis) -> None:
    """A caller told `rate` that comes back at its slot time with `reserved_slot_ms` goes, and
    takes no new slot: the next new caller's wait is as if it had not come back."""
    guard, settings = VendorGuard(redis), vendor(per_second=10, burst=3)
    answers = await permits(guard, settings, T0, 4)
    assert answers[3][0] == "rate"
    slot = T0 + answers[3][1]
    back = await guard.permit(NAME, settings, slot, "caller-4", slot)
    assert back == Permit("go", 0)
    # Four slots taken (T0..T0+300 spacing 100): a new caller at T0+100 may go at T0+200.
    newcomer = await guard.permit(NAME, settings, slot, "newcomer", None)
    assert newcomer.verdict == "rate"
    assert near(newcomer.wait_ms, 100), newcomer


async def test_a_quiet_period_makes_the_burst_available_again(redis: Redis) -> None:
    """After the slots reserved at T0 have passed, three callers at one instant go again, and
    no more than three."""
    guard, settings = VendorGuard(redis), vendor(per_second=10, burst=3)
    await permits(guard, settings, T0, 5)  # slots up to T0 + 400
    later = await permits(guard, settings, T0 + 500, 4)
    assert [verdict for verdict, _ in later] == ["go", "go", "go", "rate"]
    assert near(later[3][1], 100), later


# throttled (429)


async def test_a_429_halves_the_rate_and_doubles_the_spacing(redis: Redis) -> None:
    """After one `throttled`, `state()` shows half the configured rate, and new slots are 200 ms
    apart instead of 100 ms (the burst is unchanged)."""
    guard, settings = VendorGuard(redis), vendor(per_second=10, burst=3)
    await guard.record(NAME, settings, T0, "c", "throttled")
    rate = (await guard.state(NAME, settings, T0))["rate"]
    assert rate["configured_per_second"] == 10
    assert rate["effective_per_second"] == 5.0
    assert rate["times_throttled"] == 1
    answers = await permits(guard, settings, T0, 5)
    assert [verdict for verdict, _ in answers] == ["go", "go", "go", "rate", "rate"]
    assert near(answers[3][1], 200), answers
    assert near(answers[4][1], 400), answers


async def test_the_rate_recovers_linearly_over_recovery_s(redis: Redis) -> None:
    """Halved at T0 with recovery_s 10: 6.25/s at 2.5 s, 7.5/s at 5 s (slots 1000/7.5 ms apart),
    the configured 10/s from 10 s on."""
    guard, settings = VendorGuard(redis), vendor(per_second=10, burst=3, recovery_s=10)
    await guard.record(NAME, settings, T0, "c", "throttled")

    async def effective(now_ms: int) -> float:
        state = await guard.state(NAME, settings, now_ms)
        return float(state["rate"]["effective_per_second"])

    assert await effective(T0 + 2_500) == 6.25
    assert await effective(T0 + 5_000) == 7.5
    assert await effective(T0 + 10_000) == 10.0
    assert await effective(T0 + 60_000) == 10.0
    answers = await permits(guard, settings, T0 + 5_000, 5)
    assert [verdict for verdict, _ in answers] == ["go", "go", "go", "rate", "rate"]
    assert near(answers[3][1], 134), answers  # ceil(133.33)
    assert near(answers[4][1], 267), answers  # ceil(266.67)


async def test_a_429_while_recovering_halves_the_current_rate(redis: Redis) -> None:
    """A second 429 halfway through the recovery halves the rate reached then (7.5 -> 3.75),
    and recovery starts again from there."""
    guard, settings = VendorGuard(redis), vendor(per_second=10, recovery_s=10)
    await guard.record(NAME, settings, T0, "c", "throttled")
    await guard.record(NAME, settings, T0 + 5_000, "c", "throttled")
    state = await guard.state(NAME, settings, T0 + 5_000)
    assert state["rate"]["effective_per_second"] == 3.75
    assert state["rate"]["times_throttled"] == 2
    later = await guard.state(NAME, settings, T0 + 10_000)
    assert later["rate"]["effective_per_second"] == round(10 * (0.375 + 0.625 * 0.5), 3)


async def test_repeated_429s_never_go_below_five_percent(redis: Redis) -> None:
    """Each 429 halves the rate (5, 2.5, 1.25, 0.625) until the floor of 5% of the configured
    rate (0.5/s), where it stays; slots are then 2 s apart."""
    guard, settings = VendorGuard(redis), vendor(per_second=10, burst=3)
    seen = []
    for _ in range(8):
        await guard.record(NAME, settings, T0, "c", "throttled")
        seen.append((await guard.state(NAME, settings, T0))["rate"]["effective_per_second"])
    assert seen == [5.0, 2.5, 1.25, 0.625, 0.5, 0.5, 0.5, 0.5]
    answers = await permits(guard, settings, T0, 4)
    assert [verdict for verdict, _ in answers] == ["go", "go", "go", "rate"]
    assert near(answers[3][1], 2_000), answers


async def test_retry_after_pauses_every_caller_for_the_remaining_wait(redis: Redis) -> None:
    """A 429 with Retry-After 3 s at T0: `permit` answers `paused` with the time left (2 s at
    T0+1 s), `state()` shows it, a later shorter Retry-After does not shorten it, and calls
    resume when it has passed."""
    guard, settings = VendorGuard(redis), vendor()
    await guard.record(NAME, settings, T0, "c", "throttled", retry_after_s=3)
    assert await guard.permit(NAME, settings, T0 + 1_000, "a", None) == Permit("paused", 2_000)
    state = await guard.state(NAME, settings, T0 + 1_000)
    assert state["rate"]["paused_for_s"] == 2.0
    await guard.record(NAME, settings, T0 + 1_000, "c", "throttled", retry_after_s=0.5)
    assert await guard.permit(NAME, settings, T0 + 2_000, "b", None) == Permit("paused", 1_000)
    assert await guard.permit(NAME, settings, T0 + 3_000, "d", None) == Permit("go", 0)
    assert (await guard.state(NAME, settings, T0 + 3_000))["rate"]["paused_for_s"] == 0


# circuit breaker


async def test_consecutive_failures_open_the_circuit_for_the_cooldown(redis: Redis) -> None:
    """Below failure_threshold (3) the circuit stays closed; the 3rd consecutive failure opens
    it: `open` with the cool-down (10 s) as wait, counting down, and `state()` says so."""
    guard, settings = VendorGuard(redis), vendor(failure_threshold=3, cooldown_s=10)
    for n in range(2):
        await guard.record(NAME, settings, T0, f"f{n}", "failure")
    assert await guard.permit(NAME, settings, T0, "a", None) == Permit("go", 0)
    circuit = (await guard.state(NAME, settings, T0))["circuit"]
    assert (circuit["state"], circuit["consecutive_failures"]) == ("closed", 2)

    await guard.record(NAME, settings, T0, "f2", "failure")
    assert await guard.permit(NAME, settings, T0, "b", None) == Permit("open", 10_000)
    assert await guard.permit(NAME, settings, T0 + 4_000, "c", None) == Permit("open", 6_000)
    circuit = (await guard.state(NAME, settings, T0 + 4_000))["circuit"]
    assert circuit == {
        "state": "open",
        "consecutive_failures": 3,
        "open_for_s": 6.0,
        "times_opened": 1,
    }


async def test_a_success_or_a_refusal_in_between_resets_the_count(redis: Redis) -> None:
    """failure, failure, success, failure, failure leaves the circuit closed (2 consecutive), as
    does the same with a refusal (4xx: the vendor is up) in the middle; one more failure then
    opens it."""
    resets: list[CallOutcome] = ["success", "refused"]
    for reset in resets:
        name = f"vendor-{reset}"
        guard, settings = VendorGuard(redis), vendor(failure_threshold=3)
        outcomes: list[CallOutcome] = ["failure", "failure", reset, "failure", "failure"]
        for outcome in outcomes:
            await guard.record(name, settings, T0, "c", outcome)
        assert await guard.permit(name, settings, T0, "a", None) == Permit("go", 0), reset
        circuit = (await guard.state(name, settings, T0))["circuit"]
        assert (circuit["state"], circuit["consecutive_failures"]) == ("closed", 2), reset
        await guard.record(name, settings, T0, "c", "failure")
        assert (await guard.permit(name, settings, T0, "b", None)).verdict == "open", reset


async def test_after_the_cooldown_exactly_one_concurrent_caller_probes(redis: Redis) -> None:
    """When the cool-down ends, of eight callers asking at once exactly one gets `probe`; the
    others get `open`, told to wait about the probe token's life (timeout_s + 5 s = 7 s)."""
    guard, settings = VendorGuard(redis), vendor(cooldown_s=10, timeout_s=2)
    await open_circuit(guard, settings, T0)
    at = T0 + 10_000
    answers = await asyncio.gather(
        *(guard.permit(NAME, settings, at, f"caller-{n}", None) for n in range(8))
    )
    verdicts = [answer.verdict for answer in answers]
    assert verdicts.count("probe") == 1, verdicts
    assert verdicts.count("open") == 7, verdicts
    assert all(6_000 < a.wait_ms <= 7_000 for a in answers if a.verdict == "open"), answers
    assert (await guard.state(NAME, settings, at))["circuit"]["state"] == "half_open"


async def test_a_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_max(
    redis: Redis,
) -> None:
    """Cool-down 10 s, max 25 s: failed probes reopen the circuit for 20 s, then 25 s (not 40),
    then 25 s again; a successful probe closes it, after which the next opening is 10 s again."""
    guard, settings = VendorGuard(redis), vendor(cooldown_s=10, max_cooldown_s=25)
    await open_circuit(guard, settings, T0)
    at = T0 + 10_000
    for n, expected in enumerate([20_000, 25_000, 25_000]):
        token = f"prober-{n}"
        assert await guard.permit(NAME, settings, at, token, None) == Permit("probe", 0)
        await guard.record(NAME, settings, at, token, "failure")
        assert await guard.permit(NAME, settings, at, "other", None) == Permit("open", expected)
        at += expected
    assert await guard.permit(NAME, settings, at, "prober-last", None) == Permit("probe", 0)
    await guard.record(NAME, settings, at, "prober-last", "success")
    circuit = (await guard.state(NAME, settings, at))["circuit"]
    assert circuit == {
        "state": "closed",
        "consecutive_failures": 0,
        "open_for_s": 0,
        "times_opened": 4,
    }
    await open_circuit(guard, settings, at)
    assert await guard.permit(NAME, settings, at, "again", None) == Permit("open", 10_000)


async def test_a_successful_probe_closes_the_circuit(redis: Redis) -> None:
    """After the prober reports success, every caller goes again (the burst of 3 at once) and
    the probe token is gone."""
    guard, settings = VendorGuard(redis), vendor(burst=3)
    await open_circuit(guard, settings, T0)
    at = T0 + 10_000
    assert await guard.permit(NAME, settings, at, "prober", None) == Permit("probe", 0)
    await guard.record(NAME, settings, at, "prober", "success")
    assert await redis.exists(keys.probe(NAME)) == 0
    later = at + 1_000
    assert await permits(guard, settings, later, 3) == [("go", 0)] * 3
    assert (await guard.state(NAME, settings, later))["circuit"]["state"] == "closed"


async def test_a_probe_winner_held_back_by_a_pause_or_the_rate_keeps_no_token(
    redis: Redis,
) -> None:
    """A caller that wins the probe but is told `paused` or `rate` makes no call, so it must
    not keep the probe token: the next caller can probe at once."""
    guard, settings = VendorGuard(redis), vendor(cooldown_s=10, burst=1)
    await open_circuit(guard, settings, T0)
    await guard.record(NAME, settings, T0, "c", "throttled", retry_after_s=12)
    at = T0 + 10_000
    assert await guard.permit(NAME, settings, at, "paused", None) == Permit("paused", 2_000)
    assert await redis.exists(keys.probe(NAME)) == 0
    at = T0 + 12_000
    assert await guard.permit(NAME, settings, at, "first", None) == Permit("probe", 0)
    await guard.record(NAME, settings, at, "first", "throttled")  # no Retry-After this time
    rate = await guard.permit(NAME, settings, at, "limited", None)
    assert rate.verdict == "rate", rate
    assert await redis.exists(keys.probe(NAME)) == 0
    assert await guard.permit(NAME, settings, at + rate.wait_ms, "limited", at + rate.wait_ms) == (
        Permit("probe", 0)
    )


async def test_the_probe_token_expires_when_the_prober_never_reports(redis: Redis) -> None:
    """The probe token lives timeout_s + 5 s (7 s here); once it has expired another caller
    gets `probe`, and a late report from the lost prober neither takes the new prober's token
    nor reopens the circuit."""
    guard, settings = VendorGuard(redis), vendor(cooldown_s=10, timeout_s=2)
    await open_circuit(guard, settings, T0)
    at = T0 + 10_000
    assert await guard.permit(NAME, settings, at, "lost", None) == Permit("probe", 0)
    ttl = await redis.pttl(keys.probe(NAME))
    assert 6_000 < ttl <= 7_000, ttl
    assert (await guard.permit(NAME, settings, at, "other", None)).verdict == "open"

    await redis.pexpire(keys.probe(NAME), 1)  # stand in for the 7 s passing
    await asyncio.sleep(0.05)
    assert await guard.permit(NAME, settings, at + 7_000, "second", None) == Permit("probe", 0)
    await guard.record(NAME, settings, at + 7_000, "lost", "failure")
    assert await redis.get(keys.probe(NAME)) == b"second"
    circuit = (await guard.state(NAME, settings, at + 7_000))["circuit"]
    assert (circuit["state"], circuit["times_opened"]) == ("half_open", 1)


# usage and counters


async def test_usage_and_calls_by_outcome_are_kept(redis: Redis) -> None:
    """Usage counters a vendor reports show in `state()["usage"]` (the latest values), and
    calls are counted per outcome in `state()["calls"]`."""
    guard, settings = VendorGuard(redis), vendor(failure_threshold=10)
    await guard.record(
        NAME, settings, T0, "c", "success", usage={"apiUsage": 1, "apiDailyUsage": 7}
    )
    state = await guard.state(NAME, settings, T0)
    assert state["usage"] == {"apiUsage": 1, "apiDailyUsage": 7}
    assert state["calls"] == {"success": 1}
    await guard.record(
        NAME, settings, T0, "c", "success", usage={"apiUsage": 2, "apiDailyUsage": 8}
    )
    outcomes: list[CallOutcome] = ["failure", "failure", "refused"]
    outcomes += ["throttled", "throttled", "throttled"]
    for outcome in outcomes:
        await guard.record(NAME, settings, T0, "c", outcome)
    state = await guard.state(NAME, settings, T0)
    assert state["usage"] == {"apiUsage": 2, "apiDailyUsage": 8}
    assert state["calls"] == {"success": 2, "failure": 2, "refused": 1, "throttled": 3}
    assert state["kind"] == "fleet"


# isolation


async def test_two_vendor_instances_never_share_state(redis: Redis) -> None:
    """Opening, throttling, pausing, rate-limiting and usage of one instance leave another
    untouched, and each half-open instance has its own probe."""
    guard, settings = VendorGuard(redis), vendor(burst=3)
    await permits(guard, settings, T0, 5, name="alpha")
    await guard.record("alpha", settings, T0, "c", "throttled", retry_after_s=60)
    await guard.record("alpha", settings, T0, "c", "success", usage={"apiUsage": 5})
    await open_circuit(guard, settings, T0, name="alpha")

    assert (await guard.permit("alpha", settings, T0, "a", None)).verdict == "open"
    assert await permits(guard, settings, T0, 3, name="beta") == [("go", 0)] * 3
    beta = await guard.state("beta", settings, T0)
    assert beta["circuit"] == {
        "state": "closed",
        "consecutive_failures": 0,
        "open_for_s": 0,
        "times_opened": 0,
    }
    assert beta["rate"]["effective_per_second"] == 10
    assert beta["rate"]["paused_for_s"] == 0
    assert beta["rate"]["times_throttled"] == 0
    assert (beta["calls"], beta["usage"]) == ({}, {})

    await open_circuit(guard, settings, T0, name="beta")
    at = T0 + 120_000
    assert await guard.permit("alpha", settings, at, "alpha-prober", None) == Permit("probe", 0)
    assert await guard.permit("beta", settings, at, "beta-prober", None) == Permit("probe", 0)
    await guard.record("alpha", settings, at, "alpha-prober", "success")
    assert (await guard.state("alpha", settings, at))["circuit"]["state"] == "closed"
    assert (await guard.state("beta", settings, at))["circuit"]["state"] == "half_open"


async def test_without_a_time_the_guard_uses_redis_clock(redis: Redis) -> None:
    """Workers pass no time: the scripts read Redis's clock, so a worker whose `now` is old
    by the time its script runs (short of CPU, or another host's clock) cannot be held off by
    slots other workers took. A reserved slot comes back on that clock and is honoured."""
    guard, settings = VendorGuard(redis), vendor(per_second=10, burst=1)
    seconds, micros = await redis.time()
    redis_now = seconds * 1000 + micros // 1000
    first = await guard.permit(NAME, settings, None, "a", None)
    second = await guard.permit(NAME, settings, None, "b", None)
    assert first.verdict == "go" and first.slot_ms is None
    assert second.verdict == "rate" and 50 <= second.wait_ms <= 100
    assert second.slot_ms is not None and redis_now + 50 <= second.slot_ms <= redis_now + 1000
    # A caller whose own clock is a minute slow still sees the slot as not due...
    stale = await guard.permit(NAME, settings, redis_now - 60_000, "c", second.slot_ms)
    assert stale.verdict == "rate"
    # ...while on Redis's clock, once due, the reserved slot is used without taking another.
    await asyncio.sleep((second.slot_ms - redis_now) / 1000 + 0.05)
    again = await guard.permit(NAME, settings, None, "b", second.slot_ms)
    assert again.verdict == "go"
    await guard.record(NAME, settings, None, "b", "success")
    assert (await guard.state(NAME, settings, redis_now))["calls"]["success"] == 1
