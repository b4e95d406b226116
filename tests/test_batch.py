"""`POST /v1/events:batch`: each event accepted or refused as `POST /v1/events` would, all the
accepted ones stored in one pipeline, in order; the request's own errors for the whole batch."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from config.settings import Settings
from core import keys
from core.event import Event
from core.links import LinkDetail
from core.signing import signature_headers
from core.store import MAX_WRITE_BATCH, IngestRecord, Store
from gateway.batch import BODY_CAP, body_limit
from gateway.ingest import acceptance_body
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    IDP_TOKEN,
    Gateway,
    Sandbox,
    count_writes,
    event,
    make_settings,
    running_gateway,
)
from usersync.redis_server import EmbeddedRedis, free_port

BATCH = "/v1/events:batch"


async def post_batch(gateway: Gateway, events: list[Any], **kwargs: Any) -> tuple[int, Any]:
    return await gateway.post({"events": events}, path=BATCH, **kwargs)


async def queued_jobs(redis: Redis) -> int:
    return int(await redis.zcard("arq:queue"))


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert body["error"]["code"] == code, body


async def test_each_event_is_answered_as_a_single_post_would_be(
    gateway: Gateway, redis: Redis
) -> None:
    """Accepted (202), duplicate (200), and every per-event refusal: each result holds the
    status and body `POST /v1/events` answers for that event (checked against it)."""
    assert (await gateway.post(event("old-1", targets=["fleet-eu"])))[0] == 202
    too_big = event("big-1", changes={"job_title": "x" * 200})
    too_big["vendor_fields"] = {"partoo": {"note": "y" * 5000}}
    items: list[Any] = [
        event("b-1", targets=["fleet-eu"]),  # accepted
        event("old-1"),  # duplicate of an earlier post
        event("b-2", targets=["nowhere"]),  # 422 unknown vendor instance
        event("b-3", source="idp"),  # 403 source mismatch
        event("b-4", changes={}),  # 422 empty changes
        {"event_id": 12, "user": "x"},  # 422 several problems, event_id not a string
        ["not", "an", "object"],  # 422 not an object
        too_big,  # 413 on its own
        event("b-5", targets=["partoo"], unexpected=True),  # 422 unknown field
    ]
    status, answer = await post_batch(gateway, items)
    assert status == 200, answer
    assert [r["index"] for r in answer["results"]] == list(range(len(items)))
    assert [r["status"] for r in answer["results"]] == [202, 200, 422, 403, 422, 422, 422, 413, 422]
    assert [r["event_id"] for r in answer["results"]] == [
        "b-1", "old-1", "b-2", "b-3", "b-4", None, None, "big-1", "b-5",
    ]  # fmt: skip
    assert (answer["accepted"], answer["duplicates"], answer["refused"]) == (1, 1, 7)
    first = answer["results"][0]["body"]
    assert first == {
        "event_id": "b-1",
        "status": "accepted",
        "targets": ["fleet-eu"],
        "status_url": "/v1/events/b-1",
    }
    # Posted one by one now, each event answers what its result said (b-1 and old-1 are
    # duplicates by now, so they answer 200 with the same acceptance).
    for index, item in enumerate(items):
        single = await gateway.post(item)
        result = answer["results"][index]
        if result["status"] == 202:
            assert single == (200, {**result["body"], "duplicate": True})
        else:
            assert single == (result["status"], result["body"]), index
    assert await queued_jobs(redis) == 1  # fleet-eu/emp-42, shared by b-1 and old-1


async def test_one_pair_twice_in_a_batch_shares_one_job(gateway: Gateway, redis: Redis) -> None:
    """Two events of one user and target in one batch both wait in the pair's pending set,
    in order key order, behind a single job; another user gets a job of its own."""
    later = event("p-2", targets=["fleet-eu"], user={"id": "emp-42", "version": 2})
    earlier = event("p-1", targets=["fleet-eu"], user={"id": "emp-42", "version": 1})
    other = event("p-3", targets=["fleet-eu"], user={"id": "emp-43", "version": 1})
    status, answer = await post_batch(gateway, [later, earlier, other])
    assert status == 200 and answer["accepted"] == 3, answer
    assert await redis.zrange(keys.pending("fleet-eu", "emp-42"), 0, -1, withscores=True) == [
        (b"hris:p-1", 1.0),
        (b"hris:p-2", 2.0),
    ]
    assert await queued_jobs(redis) == 2
    assert await redis.hget(keys.pair("fleet-eu", "emp-42"), keys.PAIR_JOB) is not None


async def test_repeated_event_id_in_a_batch_is_a_duplicate_of_the_first(
    gateway: Gateway, redis: Redis
) -> None:
    """The second occurrence answers 200 with the first one's acceptance; the first is the
    one stored."""
    first = event("d-1", targets=["fleet-eu"], changes={"email": "first@example.com"})
    second = event("d-1", targets=["partoo"], changes={"email": "second@example.com"})
    status, answer = await post_batch(gateway, [first, second])
    assert status == 200, answer
    results = answer["results"]
    assert [r["status"] for r in results] == [202, 200]
    assert results[1]["body"] == {**results[0]["body"], "duplicate": True}
    assert results[1]["body"]["targets"] == ["fleet-eu"]
    stored = orjson.loads(await redis.hget(keys.event("hris", "d-1"), keys.EVENT_BODY))
    assert stored["changes"]["email"] == "first@example.com"
    assert (answer["accepted"], answer["duplicates"], answer["refused"]) == (1, 1, 0)
    assert await queued_jobs(redis) == 1


async def test_refused_events_store_nothing(gateway: Gateway, redis: Redis) -> None:
    """A batch whose events are all refused answers 200 with the refusals, and stores nothing."""
    status, answer = await post_batch(gateway, [event("r-1", targets=["nowhere"]), {}])
    assert status == 200
    assert (answer["accepted"], answer["duplicates"], answer["refused"]) == (0, 0, 2)
    assert await redis.keys(keys.event("*", "*")) == []
    assert await queued_jobs(redis) == 0


async def test_idp_targets_are_checked_per_event(gateway: Gateway) -> None:
    """A source limited to some targets gets a 403 for the event naming another, and its
    allowed set for the event naming none."""
    body = [event("i-1", source="idp", targets=["partoo"]), event("i-2", source="idp")]
    status, answer = await post_batch(gateway, body, token=IDP_TOKEN)
    assert status == 200
    refused, accepted = answer["results"]
    assert refused["status"] == 403
    assert refused["body"]["error"]["code"] == "target_not_allowed"
    assert accepted["status"] == 202
    assert accepted["body"]["targets"] == ["fleet-eu"]


@pytest.mark.parametrize(
    ("body", "code", "paths"),
    [
        ({}, "schema_violation", ["events"]),
        ({"events": []}, "schema_violation", ["events"]),
        ({"events": {"0": {}}}, "schema_violation", ["events"]),
        ({"events": [{}], "extra": 1}, "schema_violation", ["extra"]),
        ([{"events": []}], "schema_violation", ["(body)"]),
    ],
)
async def test_a_bad_envelope_is_422_for_the_whole_batch(
    gateway: Gateway, redis: Redis, body: Any, code: str, paths: list[str]
) -> None:
    status, answer = await gateway.post(body, path=BATCH)
    assert_error(status, answer, 422, code)
    assert [problem["path"] for problem in answer["error"]["details"]] == paths
    assert await queued_jobs(redis) == 0


async def test_at_most_batch_max_events(
    settings: Settings, redis: Redis, http: aiohttp.ClientSession
) -> None:
    """`gateway.batch_max_events` events are accepted, one more is a 422 for the batch."""
    small = settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"batch_max_events": 3})}
    )
    async with running_gateway(small) as url:
        gateway = Gateway(url, http)
        status, answer = await post_batch(gateway, [event(f"m-{n}") for n in range(4)])
        assert_error(status, answer, 422, "schema_violation")
        assert "1-3 events" in answer["error"]["details"][0]["message"]
        status, answer = await post_batch(gateway, [event(f"m-{n}") for n in range(3)])
        assert status == 200 and answer["accepted"] == 3


@pytest.mark.parametrize(
    ("token", "expected", "code"),
    [(None, 401, "unauthorized"), ("x" * 20, 401, "unauthorized"), (ADMIN_TOKEN, 403, "forbidden")],
)
async def test_the_batch_is_authenticated_once(
    gateway: Gateway, redis: Redis, token: str | None, expected: int, code: str
) -> None:
    assert_error(*(await post_batch(gateway, [event()], token=token)), expected, code)
    assert await queued_jobs(redis) == 0


async def test_request_errors(gateway: Gateway) -> None:
    """Malformed JSON is a 400 and a body not declared JSON a 415, for the whole batch."""
    assert_error(*(await gateway.post(b'{"events": [', path=BATCH)), 400, "malformed_json")
    status, answer = await gateway.post(
        {"events": [event()]}, path=BATCH, headers={"Content-Type": "text/plain"}
    )
    assert_error(status, answer, 415, "unsupported_media_type")


def test_body_limit_is_the_events_limit_times_their_count(settings: Settings) -> None:
    assert body_limit(settings) == 4096 * 100
    big = settings.gateway.model_copy(
        update={"max_body_bytes": 1024 * 1024, "batch_max_events": 10_000}
    )
    assert body_limit(settings.model_copy(update={"gateway": big})) == BODY_CAP


async def test_a_batch_may_exceed_the_single_event_limit(gateway: Gateway, redis: Redis) -> None:
    """Many events whose total passes `max_body_bytes` (4096 here) are one valid batch."""
    events = [event(f"s-{n}", targets=["fleet-eu"]) for n in range(100)]
    assert len(orjson.dumps({"events": events})) > 4 * 4096
    status, answer = await post_batch(gateway, events)
    assert status == 200 and answer["accepted"] == 100, answer
    assert await redis.zcard(keys.pending("fleet-eu", "emp-42")) == 100


async def test_a_batch_over_its_limit_is_cut_off_while_streaming(
    gateway: Gateway, redis: Redis
) -> None:
    """A chunked body with no Content-Length is refused once it passes the batch limit; a
    declared one at once."""
    limit = 4096 * 100

    async def chunks() -> Any:
        yield b'{"events": ['
        for _ in range(limit // 1024 + 1):
            yield b" " * 1024

    async with gateway.http.post(
        gateway.url + BATCH,
        data=chunks(),
        headers={"Authorization": f"Bearer {HRIS_TOKEN}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert (await response.json())["error"]["details"] == {"limit": limit}
    status, answer = await gateway.post(b" " * (limit + 1), path=BATCH)
    assert_error(status, answer, 413, "body_too_large")
    assert await queued_jobs(redis) == 0


async def test_redis_down_is_503_for_the_whole_batch(http: aiohttp.ClientSession) -> None:
    down = make_settings(f"redis://127.0.0.1:{free_port()}/0", "http://127.0.0.1:1")
    async with (
        running_gateway(down) as url,
        http.post(
            url + BATCH,
            json={"events": [event("x-1"), event("x-2", targets=["nowhere"])]},
            headers={"Authorization": f"Bearer {HRIS_TOKEN}"},
        ) as response,
    ):
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "redis_unavailable"


def record(event_id: str, user_id: str = "emp-1", target: str = "fleet-eu") -> IngestRecord:
    parsed = Event.model_validate(event(event_id, targets=[target], user={"id": user_id}))
    return IngestRecord(
        source="hris",
        event_id=event_id,
        user_id=user_id,
        order_key=parsed.order_key,
        event_json=orjson.dumps(parsed.model_dump(mode="json", exclude_unset=True)),
        acceptance=acceptance_body(parsed, [target]),
        targets=[target],
        links={},
        name_parts={},
    )


async def test_ingest_many_is_one_round_trip(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many events, `Store.ingest_many` writes to Redis once (one pipeline holding every
    script, sent as EVALSHA with no SCRIPT EXISTS check first); the answers come back in
    order."""
    store = Store(redis, settings.retention.events_s)
    await store.ingest_many([record("warm-up")], "2026-11-22T10:15:00.000Z")  # loads the script
    writes = count_writes(monkeypatch)
    records = [record(f"many-{n}", user_id=f"emp-{n % 7}") for n in range(50)]
    records.append(record("many-3"))
    answers = await store.ingest_many(records, "2026-11-22T10:15:00.000Z")
    monkeypatch.undo()
    assert [created for created, _ in answers] == [True] * 50 + [False]
    assert orjson.loads(answers[-1][1]) == dict(records[3].acceptance)
    assert len(writes) == 1, [w[:60] for w in writes]
    assert b"SCRIPT" not in writes[0] and writes[0].count(b"EVALSHA") == 51
    assert await store.ingest_many([], "2026-11-22T10:15:00.000Z") == []


async def test_concurrent_ingests_share_one_pipeline(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingests posted by concurrent requests are written together: 100 callers at once cost
    one round trip, each gets its own answer, and an id posted twice in the same batch is a
    duplicate of the first (the scripts run in order)."""
    store = Store(redis, settings.retention.events_s)
    await store.ingest(record("warm-up"), "2026-11-22T10:15:00.000Z")
    writes = count_writes(monkeypatch)
    records = [record(f"conc-{n}", user_id=f"emp-{n % 9}") for n in range(100)]
    records.append(record("conc-7"))
    answers = await asyncio.gather(
        *(store.ingest(item, "2026-11-22T10:15:00.000Z") for item in records)
    )
    monkeypatch.undo()
    assert len(writes) == 1 and writes[0].count(b"EVALSHA") == 101
    assert [created for created, _ in answers] == [True] * 100 + [False]
    assert all(
        orjson.loads(answer)["event_id"] == item.event_id
        for item, (_, answer) in zip(records, answers, strict=True)
    )
    stored = [key async for key in redis.scan_iter(match=keys.event("hris", "conc-*"))]
    assert len(stored) == 100


async def test_ingest_reloads_a_flushed_script(redis: Redis, settings: Settings) -> None:
    """A Redis that lost its scripts (restarted, SCRIPT FLUSH) answers NOSCRIPT: the events of
    that batch are written again once the script is loaded, none is lost or doubled."""
    store = Store(redis, settings.retention.events_s)
    await store.ingest(record("before-flush"), "2026-11-22T10:15:00.000Z")
    await redis.script_flush()
    answers = await asyncio.gather(
        *(store.ingest(record(f"flushed-{n}"), "2026-11-22T10:15:00.000Z") for n in range(5))
    )
    assert [created for created, _ in answers] == [True] * 5
    assert await redis.zcard(keys.pending("fleet-eu", "emp-1")) == 6


async def test_a_cancelled_caller_does_not_stop_the_batch(redis: Redis, settings: Settings) -> None:
    """A request that goes away while its event is being written does not take the other
    events of its batch with it; its own event is stored all the same (a retry of it is then
    answered as a duplicate)."""
    store = Store(redis, settings.retention.events_s)
    await store.ingest(record("warm"), "2026-11-22T10:15:00.000Z")
    gone = asyncio.ensure_future(store.ingest(record("gone"), "2026-11-22T10:15:00.000Z"))
    stays = asyncio.ensure_future(store.ingest(record("stays"), "2026-11-22T10:15:00.000Z"))
    await asyncio.sleep(0)  # both are queued and the writer has started
    gone.cancel()
    created, _ = await stays
    assert created
    assert gone.cancelled()
    retry_created, _ = await store.ingest(record("gone"), "2026-11-22T10:15:00.000Z")
    assert not retry_created


def signing_sources(**hris: Any) -> list[dict[str, Any]]:
    return [
        {"name": "hris", "token": HRIS_TOKEN, "hmac_secret": "test-hris-hmac-secret-0123", **hris},
        {"name": "idp", "token": IDP_TOKEN, "allowed_targets": ["fleet-eu"]},
    ]


async def test_a_batch_is_signed_once_over_its_whole_body(
    redis_server: EmbeddedRedis, sandbox: Sandbox, redis: Redis, http: aiohttp.ClientSession
) -> None:
    """One signature covers the batch; a changed byte is a 401 and stores nothing; a source
    that must sign cannot send a batch with its token alone."""
    settings = make_settings(
        redis_server.url, sandbox.url, sources=signing_sources(require_signature=True)
    )
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        raw = orjson.dumps({"events": [event("sig-1"), event("sig-2")]})
        headers = signature_headers("hris", "test-hris-hmac-secret-0123", raw)
        tampered = raw.replace(b"sig-2", b"sig-3")
        assert_error(
            *(await gateway.post(tampered, token=None, path=BATCH, headers=headers)),
            401,
            "bad_signature",
        )
        assert await queued_jobs(redis) == 0
        status, answer = await gateway.post(raw, token=None, path=BATCH, headers=headers)
        assert status == 200 and answer["accepted"] == 2, answer
        assert_error(*(await post_batch(gateway, [event("sig-4")])), 401, "signature_required")


async def test_a_batch_costs_its_number_of_events(
    redis_server: EmbeddedRedis, sandbox: Sandbox, redis: Redis, http: aiohttp.ClientSession
) -> None:
    """Against the source's rate limit a batch counts as many posts as it has events: batching
    does not multiply the allowance. A refused batch stores nothing."""
    limited = signing_sources(rate_limit={"per_second": 0.1, "burst": 5})
    settings = make_settings(redis_server.url, sandbox.url, sources=limited)
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        status, answer = await post_batch(gateway, [event(f"rl-{n}") for n in range(3)])
        assert status == 200 and answer["accepted"] == 3, answer
        async with http.post(
            url + BATCH,
            json={"events": [event(f"rl-{n}") for n in range(3, 6)]},
            headers={"Authorization": f"Bearer {HRIS_TOKEN}"},
        ) as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
            assert (await response.json())["error"]["code"] == "rate_limited"
        assert await redis.exists(keys.event("hris", "rl-3")) == 0
        assert (await gateway.post(event("rl-9")))[0] == 202  # one more post still fits


async def test_a_batch_larger_than_the_burst_is_charged_in_full(
    redis_server: EmbeddedRedis, sandbox: Sandbox, redis: Redis, http: aiohttp.ClientSession
) -> None:
    """A batch of 8 with a burst of 5 fits a full bucket, but costs all 8: the next post must
    wait for 4 intervals of 10 s, so batching never raises a source's average rate."""
    limited = signing_sources(rate_limit={"per_second": 0.1, "burst": 5})
    settings = make_settings(redis_server.url, sandbox.url, sources=limited)
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        status, answer = await post_batch(gateway, [event(f"big-{n}") for n in range(8)])
        assert status == 200 and answer["accepted"] == 8, answer
        async with http.post(
            url + "/v1/events",
            json=event("after"),
            headers={"Authorization": f"Bearer {HRIS_TOKEN}"},
        ) as response:
            assert response.status == 429
            assert 35 <= int(response.headers["Retry-After"]) <= 41


def named(event_id: str, order: int, **parts: str | None) -> IngestRecord:
    base = record(event_id)
    return IngestRecord(
        source=base.source,
        event_id=event_id,
        user_id=base.user_id,
        order_key=order,
        event_json=base.event_json,
        acceptance=base.acceptance,
        targets=["fleet-eu", "mileapp"],
        links={"fleet-eu": "42", "mileapp": "m-42"},
        name_parts=parts,
    )


async def test_ingest_writes_links_profile_and_every_targets_pending_entry(
    redis: Redis, settings: Settings
) -> None:
    """What one ingest writes besides the event: each target's pending entry (scored by the
    order key) and job, the links, and the name profile, where a part only moves forward in
    order and a null clears it."""
    store = Store(redis, settings.retention.events_s)
    at = "2026-11-22T10:15:00.000Z"
    await store.ingest(named("p-5", 5, given_name="Ada", family_name="Lovelace"), at)
    await store.ingest(named("p-3", 3, given_name="Old", display_name="Old Name"), at)
    await store.ingest(named("p-7", 7, family_name=None), at)
    assert await store.get_profile("emp-1") == {"given_name": "Ada", "display_name": "Old Name"}
    assert await store.get_links("emp-1") == {
        "fleet-eu": LinkDetail("42", "hris", at),
        "mileapp": LinkDetail("m-42", "hris", at),
    }
    for target in ("fleet-eu", "mileapp"):
        pending = await redis.zrange(keys.pending(target, "emp-1"), 0, -1, withscores=True)
        assert pending == [(b"hris:p-3", 3.0), (b"hris:p-5", 5.0), (b"hris:p-7", 7.0)]
        job = await redis.hget(keys.pair(target, "emp-1"), keys.PAIR_JOB)
        assert job is not None and await redis.zscore("arq:queue", job) is not None
    status = await store.event_status("hris", "p-7")
    assert status is not None and set(status["targets"]) == {"fleet-eu", "mileapp"}
    assert status["received_at"] == at and status["user_id"] == "emp-1"


async def test_one_callers_events_are_never_split_between_pipelines(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers may be in flight at once, so the order of a batch only holds if its events
    share one pipeline, even past MAX_WRITE_BATCH; a concurrent post goes in another."""
    store = Store(redis, settings.retention.events_s)
    await store.ingest(record("warm-up"), "2026-11-22T10:15:00.000Z")
    writes = count_writes(monkeypatch)
    big = [record(f"big-{n}", user_id=f"emp-{n % 5}") for n in range(MAX_WRITE_BATCH + 88)]
    answers, single = await asyncio.gather(
        store.ingest_many(big, "2026-11-22T10:15:00.000Z"),
        store.ingest(record("alone"), "2026-11-22T10:15:00.000Z"),
    )
    monkeypatch.undo()
    assert all(created for created, _ in answers) and single[0]
    counts = sorted(write.count(b"EVALSHA") for write in writes if b"EVALSHA" in write)
    assert counts == [1, MAX_WRITE_BATCH + 88], counts  # (the second writer's connection)
