"""The Redis layout lives in core.keys alone: what a real flow leaves in Redis is made of its
builders and declared fields, and the Lua scripts loaded from core/lua/ spell none themselves.

A key or hash field spelled anywhere else (a new `redis.call('HSET', KEYS[1], 'x', ...)`, a
Python f-string key) shows up here as one the layout does not know."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import get_args

import aiohttp
import arq.constants
import orjson
import pytest
from redis.asyncio import Redis

from config.ingress import SourceRateLimit
from core import keys, scripts
from core.pairs import Commit, EventUpdate, PairQueue
from core.source_rate import SourceRates
from core.status import TargetStatus
from core.store import IngestRecord, Store
from core.vendor_guard import CallOutcome, VendorGuard
from tests.conftest import (
    ADMIN_TOKEN,
    Gateway,
    Sandbox,
    event,
    make_settings,
    running_gateway,
    running_worker,
)
from tests.test_auth import post_signed, sources
from tests.test_vendor_guard import T0, vendor
from usersync.redis_server import EmbeddedRedis

ARQ_PREFIXES = (
    arq.constants.job_key_prefix,
    arq.constants.in_progress_key_prefix,
    arq.constants.result_key_prefix,
    arq.constants.retry_key_prefix,
    arq.constants.default_queue_name,
    arq.constants.abort_jobs_ss,
)
"""arq's own keys (its queue, jobs, claims, results): arq's layout, not usersync's."""


def _pattern(builder: Callable[..., str]) -> re.Pattern[str]:
    """The keys `builder` makes, whatever its arguments: each argument becomes `.+`."""
    arity = builder.__code__.co_argcount
    marks = [f"\x00{n}\x00" for n in range(arity)]
    text = re.escape(builder(*marks))
    for mark in marks:
        text = text.replace(re.escape(mark), ".+")
    return re.compile(text)


PATTERNS = [(builder, _pattern(builder)) for builder in keys.LAYOUT]


@dataclass
class Seen:
    """What the snapshots found: the builders each key came from, and each hash's fields."""

    builders: set[str] = field(default_factory=set)
    constants: set[str] = field(default_factory=set)
    fields: dict[str, set[str]] = field(default_factory=dict)

    async def check(self, redis: Redis) -> None:
        """Every key now in Redis is arq's, a constant key or one a builder makes; a hash
        holds only the fields `keys.LAYOUT` declares for it."""
        async for raw in redis.scan_iter(count=1000):
            key = raw.decode()
            if key.startswith(ARQ_PREFIXES):
                continue
            if key in keys.CONSTANT_KEYS:
                self.constants.add(key)
                continue
            matched = [builder for builder, pattern in PATTERNS if pattern.fullmatch(key)]
            assert len(matched) == 1, f"{key!r} matches builders {matched} of core.keys"
            [builder] = matched
            self.builders.add(builder.__name__)
            declared = keys.LAYOUT[builder]
            kind = (await redis.type(raw)).decode()
            assert (kind == "hash") == (declared is not None), (key, kind)
            if declared is None:
                continue
            for name in await redis.hkeys(raw):
                text = name.decode()
                assert declared.allows(text), f"{key!r}: field {text!r} not in core.keys"
                self.fields.setdefault(builder.__name__, set()).add(text)

    def prefixed(self, builder: str, prefix: str) -> bool:
        return any(name.startswith(prefix) for name in self.fields.get(builder, ()))


async def test_a_real_flow_leaves_only_the_declared_layout_in_redis(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """Ingest (links, name parts, a signed post) with no worker, delivery, a dead letter, its
    replay and an admin link: at each step every key and hash field is one core.keys makes
    or declares, and the flow went through the layout's main parts."""
    settings = make_settings(redis_server.url, sandbox.url, sources=sources())
    seen = Seen()
    names = {"given_name": "Ada", "family_name": "Lovelace", "display_name": "Ada L."}
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        assert (await gateway.post(event("evt-1", changes=names)))[0] == 202
        assert (await post_signed(gateway, event("evt-2", user={"id": "emp-7"})))[0] == 202
        await seen.check(redis)  # queued: pairs with their job, pending sets, arq jobs
        async with running_worker(settings):
            await gateway.wait_final("evt-1")
            await gateway.wait_final("evt-2")
            await seen.check(redis)
            await sandbox.fault("partoo", status=400, count=1)
            await gateway.post(event("evt-3", targets=["partoo"]))
            assert (await gateway.wait_final("evt-3"))["targets"]["partoo"]["status"] == "dead"
            await seen.check(redis)
            letter = keys.dead_letter_id("hris", "evt-3", "partoo")
            replay = f"{url}/v1/dead-letters/{letter}/replay"
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with http.post(replay, headers=headers) as response:
                assert response.status == 202, await response.text()
            final = await gateway.wait_final("evt-3")
            assert final["targets"]["partoo"]["status"] == "delivered"
            assert (await gateway.put("/v1/users/emp-42/links/fleet-eu", {"id": "43"}))[0] == 200
            await seen.check(redis)
    assert seen.constants == {keys.DEAD_LETTERS, keys.JOB_SEQUENCE, keys.OWED_PAIRS}
    assert {"event", "links", "link_setters", "profile", "pair", "pending", "applied"} <= (
        seen.builders
    )
    assert {"vendor", "signature", "dead_letters_of"} <= seen.builders
    assert {keys.EVENT_ACCEPTED, keys.EVENT_BODY, keys.EVENT_RECEIVED_AT} <= seen.fields["event"]
    assert seen.prefixed("event", keys.EVENT_STATUS_PREFIX)
    assert seen.prefixed("event", keys.EVENT_HISTORY_PREFIX)
    assert {*keys.PROFILE_PARTS, keys.profile_order_field("given_name")} <= seen.fields["profile"]
    assert keys.PAIR_JOB in seen.fields["pair"]
    assert {keys.link_set_by_field("fleet-eu"), keys.link_set_at_field("fleet-eu")} <= (
        seen.fields["link_setters"]
    )
    assert keys.VENDOR_TAT in seen.fields["vendor"]
    assert seen.prefixed("vendor", keys.VENDOR_CALLS_PREFIX)


async def test_waits_breaker_and_throttle_leave_only_declared_fields(redis: Redis) -> None:
    """What the flow passes through too fast to see: a pair's reserved slot, refs to isolate
    and held job, an open circuit and its probe, a throttled rate and reported usage, a
    source's rate allowance; every key and field is one core.keys makes or declares."""
    target, user = "fleet-eu", "emp-42"
    store, pairs, guard = Store(redis, 3600), PairQueue(redis, 3600), VendorGuard(redis)
    record = IngestRecord(
        source="hris",
        event_id="evt-1",
        user_id=user,
        order_key=1,
        event_json=orjson.dumps(event("evt-1")),
        acceptance={"event_id": "evt-1"},
        targets=[target],
        links={target: "42"},
        name_parts={"given_name": "Ada", "display_name": None},
    )
    created, _ = await store.ingest(record, "2026-11-22T10:15:00.000Z")
    assert created
    job = bytes(await redis.hget(keys.pair(target, user), keys.PAIR_JOB)).decode()
    assert (await pairs.begin(target, user, job, "run-1", 5000, 10)).verdict == "ok"
    seen = Seen()
    await seen.check(redis)  # the run's lease
    failed = TargetStatus(status="failed", updated_at="2026-11-22T10:15:01.000Z").to_json()
    commit = Commit(
        "at",
        at_ms=T0 + 60_000,
        updates=[EventUpdate(keys.event_ref("hris", "evt-1"), failed, b"[]", remove=False)],
        applied={"email": 1},
        reserved_slot_ms=T0 + 50,
        isolate_left=2,
        held=True,
    )
    assert await pairs.commit(target, user, "run-1", T0, commit)
    settings = vendor(failure_threshold=1, cooldown_s=1)
    await guard.record(target, settings, T0, "run-1", "failure")
    assert (await guard.permit(target, settings, T0 + 1_000, "probe", None)).verdict == "probe"
    await guard.record(target, settings, T0, "x", "throttled", 3, usage={"apiUsage": 5})
    slow = SourceRateLimit(per_second=0.01, burst=1)  # its allowance key lives 100 s
    assert await SourceRates(redis).take("hris", slow) == 0
    await seen.check(redis)
    assert seen.fields["pair"] == {keys.PAIR_JOB, keys.PAIR_SLOT, keys.PAIR_ISOLATE}
    assert {"held", "probe", "lease", "applied", "source_rate"} <= seen.builders
    assert {
        keys.VENDOR_FAILURES,
        keys.VENDOR_OPEN_UNTIL,
        keys.VENDOR_COOLDOWN,
        keys.VENDOR_OPENED,
        keys.VENDOR_PAUSED_UNTIL,
        keys.VENDOR_FACTOR,
        keys.VENDOR_FACTOR_AT,
        keys.VENDOR_THROTTLED,
        keys.VENDOR_TAT,
    } <= seen.fields["vendor"]
    assert keys.VENDOR_USAGE_PREFIX + "apiUsage" in seen.fields["vendor"]


@pytest.mark.parametrize("script", list(keys.Script))
async def test_every_script_loads_with_its_layout_put_in(redis: Redis, script: keys.Script) -> None:
    """Each core/lua script compiles in Redis, with every placeholder and include replaced."""
    text = scripts.load_lua(script)
    assert "${" not in text and "--!include" not in text
    assert len(await redis.script_load(text)) == 40


async def test_a_script_never_spells_a_field_itself() -> None:
    """No quoted Lua string in core/lua (comments aside) is one of core.keys' string constants
    or name parts: each is written as its `${NAME}` placeholder. Call outcomes are values the
    caller passes, named like the vendor hash's `throttled` counter: they are left out."""
    declared = {
        value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)
    } | set(keys.PROFILE_PARTS)
    declared -= set(get_args(CallOutcome))
    for script in keys.Script:
        code = re.sub(r"--[^\n]*", "", scripts.lua_source(script))
        quoted = set(re.findall(r"'([^'\n]*)'", code))
        assert quoted, script
        assert not quoted & declared, (script, quoted & declared)


async def test_a_constant_that_cannot_sit_in_a_lua_string_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A layout constant with a quote would break out of the Lua string it is put in."""
    monkeypatch.setattr(keys, "PAIR_JOB", "jo'b")
    scripts.lua_constants.cache_clear()
    try:
        with pytest.raises(ValueError, match="PAIR_JOB"):
            scripts.substitute("return '${PAIR_JOB}'")
    finally:
        monkeypatch.undo()
        scripts.lua_constants.cache_clear()


def test_a_placeholder_that_is_no_constant_raises() -> None:
    """Substitution is strict: an unknown `${NAME}` raises before anything is sent."""
    with pytest.raises(KeyError, match="NOT_A_FIELD"):
        scripts.substitute("return '${NOT_A_FIELD}'")
