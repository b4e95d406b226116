"""A single post's source rate taken by its own ingest script (one round trip a post), and
what the ingest script is told instead of decoding the event (`IngestRecord.urgent`)."""

from __future__ import annotations

import orjson
import pytest
from redis.asyncio import Redis

from config.ingress import SourceRateLimit
from config.settings import Settings
from core import keys
from core.event import Event
from core.source_rate import RateLimited, SourceRates
from core.store import IngestRecord, Store
from gateway.ingest import acceptance_body
from tests.conftest import Gateway, count_writes, event

AT = "2026-11-22T10:15:00.000Z"


def record(event_id: str, urgent: bool | None = None, **overrides: object) -> IngestRecord:
    parsed = Event.model_validate(event(event_id, targets=["fleet-eu"], **overrides))
    return IngestRecord(
        source="hris",
        event_id=event_id,
        user_id=parsed.user.id,
        order_key=parsed.order_key,
        event_json=orjson.dumps(parsed.model_dump(mode="json", exclude_unset=True)),
        acceptance=acceptance_body(parsed, ["fleet-eu"]),
        targets=["fleet-eu"],
        links={},
        name_parts={},
        urgent=urgent,
    )


async def test_ingest_with_a_rate_takes_it_and_refuses_past_it(
    redis: Redis, settings: Settings
) -> None:
    """With a rate (burst 2), the first two ingests are stored, a duplicate of one counts as a
    post, the next raises RateLimited with the wait and stores nothing; the allowance is the
    one `SourceRates.take` (batches, previews) reads."""
    store = Store(redis, settings.retention.events_s)
    slow = SourceRateLimit(per_second=0.5, burst=3)
    assert (await store.ingest(record("r-1"), AT, slow))[0]
    assert (await store.ingest(record("r-2"), AT, slow))[0]
    assert not (await store.ingest(record("r-1"), AT, slow))[0]  # the third post
    with pytest.raises(RateLimited) as refused:
        await store.ingest(record("r-3"), AT, slow)
    assert refused.value.source == "hris" and 0 < refused.value.wait_ms <= 2000
    assert await redis.exists(keys.event("hris", "r-3")) == 0
    assert await redis.zcard(keys.pending("fleet-eu", "emp-42")) == 2
    assert await SourceRates(redis).take("hris", slow) > 0
    assert (await store.ingest(record("r-4"), AT))[0]  # no rate given: none taken


async def test_a_post_is_one_script_call_with_its_rate(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single post of a rate-limited source (the default limit) sends one EVALSHA, its
    ingest: the rate is not a round trip of its own."""
    assert (await gateway.post(event("warm-up")))[0] == 202  # loads the scripts
    writes = count_writes(monkeypatch)
    status, _ = await gateway.post(event("one-trip"))
    monkeypatch.undo()
    assert status == 202
    assert sum(write.count(b"EVALSHA") for write in writes) == 1, [w[:80] for w in writes]


@pytest.mark.parametrize(
    ("urgent", "overrides", "expected"),
    [
        (None, {"type": "user.deactivated", "changes": {}}, True),
        (None, {"priority": "urgent"}, True),
        (None, {}, False),
        (True, {}, True),
        (False, {"priority": "urgent"}, False),
    ],
)
async def test_the_pair_is_urgent_as_the_record_says(
    redis: Redis,
    settings: Settings,
    urgent: bool | None,
    overrides: dict[str, object],
    expected: bool,
) -> None:
    """The ingest script marks the pair urgent as `IngestRecord.urgent` says (the gateway sets
    it from `Event.urgent`); a record without it is read from its event as before."""
    store = Store(redis, settings.retention.events_s)
    assert (await store.ingest(record("u-1", urgent, **overrides), AT))[0]
    flag = await redis.hexists(keys.pair("fleet-eu", "emp-42"), keys.PAIR_URGENT)
    assert flag == expected
