"""An order key far ahead cannot freeze a user's fields: refused at the door, or reset.

An event with `occurred_at: 9999-12-31T23:59:59Z` made every later change of its fields
`stale`, for good. The gateway now refuses an `occurred_at` more than
`gateway.max_future_skew_s` ahead of its clock; a `user.version` cannot be bounded that way
(docs/decisions.md), so the admin can clear a user's ordering state (`DELETE
/v1/users/{user_id}/ordering`, `usersync users reset-ordering`), never while a delivery to the
user is in flight. Real gateway, worker, sandbox vendors and Redis throughout.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from core import keys
from tests.conftest import (
    USER_IDS,
    Gateway,
    Sandbox,
    event,
    log_lines,
    run_cli,
    wait_until,
    write_config,
)
from tests.test_dead_letters import admin
from usersync.redis_server import EmbeddedRedis

HUGE = 2**53
"""The largest `user.version` the schema takes: a poisoned source's favourite."""


def at(seconds_from_now: float) -> str:
    """An RFC 3339 time this far from now (UTC)."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds_from_now)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def versioned(event_id: str, version: int, target: str, **changes: Any) -> dict[str, Any]:
    body = event(event_id, targets=[target], changes=changes)
    body["user"]["version"] = version
    return body


async def post_final(gateway: Gateway, body: dict[str, Any]) -> dict[str, Any]:
    """Post an event and wait until it is final: the state of its one target."""
    status, answer = await gateway.post(body)
    assert status == 202, answer
    final = await gateway.wait_final(body["event_id"])
    [state] = final["targets"].values()
    return dict(state)


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59Z", "far"], ids=["9999", "skew+60s"])
async def test_occurred_at_ahead_of_the_clock_is_422_and_nothing_is_stored(
    gateway: Gateway, redis: Redis, occurred_at: str
) -> None:
    """`occurred_at` more than max_future_skew_s (300 s) ahead is 422 naming `occurred_at`,
    at post, preview and in a batch; nothing is stored."""
    when = at(360) if occurred_at == "far" else occurred_at
    body = event("evt-future", occurred_at=when)
    body["user"].pop("version")
    for path in ("/v1/events", "/v1/events:preview"):
        status, answer = await gateway.post(body, path=path)
        assert status == 422, (path, answer)
        assert [p["path"] for p in answer["error"]["details"]] == ["occurred_at"], answer
    status, answer = await gateway.post({"events": [body]}, path="/v1/events:batch")
    assert status == 200 and answer["results"][0]["status"] == 422, answer
    rate = keys.source_rate("").encode()  # counts requests, holds nothing they carry
    assert [key async for key in redis.scan_iter() if not key.startswith(rate)] == []


async def test_occurred_at_within_the_skew_or_in_the_past_is_accepted(gateway: Gateway) -> None:
    """A clock a little ahead (240 s, within the 300 s skew) or any past time is accepted."""
    for n, when in enumerate((at(240), at(-86400 * 365 * 30), "1970-01-01T00:00:00Z")):
        status, answer = await gateway.post(event(f"evt-ok-{n}", occurred_at=when))
        assert status == 202, (when, answer)


async def test_reset_ordering_lets_changes_through_a_poisoned_version_again(
    gateway: Gateway, worker: None, sandbox: Sandbox, redis: Redis, log_output: io.BytesIO
) -> None:
    """A huge `user.version` makes a later change `skipped: stale`; after the admin's reset of
    that vendor's ordering (logged `ordering_reset` with `by: admin`) the next change is
    delivered, and other vendors' ordering state is left alone."""
    poison = versioned("evt-1", HUGE, "fleet-eu", email="poison@example.com")
    assert (await post_final(gateway, poison))["status"] == "delivered"
    other = versioned("evt-1b", HUGE, "partoo", email="poison@example.com")
    assert (await post_final(gateway, other))["status"] == "delivered"
    stale = await post_final(gateway, versioned("evt-2", 2, "fleet-eu", email="ada@example.com"))
    assert (stale["status"], stale["last_error"]) == ("skipped", "stale")

    status, answer = await admin(gateway, "DELETE", "/v1/users/emp-42/ordering?vendor=fleet-eu")
    assert status == 200, answer
    assert answer["vendors"] == ["fleet-eu"]
    assert answer["applied_cleared"] == {"fleet-eu": 1}
    assert answer["profile_cleared"] == 0
    assert await redis.hgetall(keys.applied("partoo", "emp-42"))  # untouched

    fresh = await post_final(gateway, versioned("evt-3", 3, "fleet-eu", email="ada@example.com"))
    assert fresh["status"] == "delivered", fresh
    assert (await sandbox.user("fleet", USER_IDS["fleet-eu"]))["email"] == "ada@example.com"
    [line] = [line for line in log_lines(log_output) if line["event"] == "ordering_reset"]
    assert (line["user_id"], line["vendors"], line["by"]) == ("emp-42", ["fleet-eu"], "admin")
    assert line["level"] == "warning"


async def test_reset_without_vendor_clears_every_pair_and_the_name_profile(
    gateway: Gateway, worker: None, sandbox: Sandbox, redis: Redis
) -> None:
    """A poisoned name part keeps the composed name from changing; a reset without `vendor`
    clears every vendor's field orders and the profile's part orders (not the parts), and the
    next name change reaches MileApp."""
    poison = versioned("evt-1", HUGE, "mileapp", given_name="Poison", family_name="Lovelace")
    assert (await post_final(gateway, poison))["status"] == "delivered"
    later = versioned("evt-2", 5, "mileapp", given_name="Ada")
    assert (await post_final(gateway, later))["last_error"] == "stale"

    status, answer = await admin(gateway, "DELETE", "/v1/users/emp-42/ordering")
    assert status == 200, answer
    assert sorted(answer["vendors"]) == sorted(USER_IDS)
    assert answer["applied_cleared"]["mileapp"] == 2  # given_name, family_name
    assert answer["profile_cleared"] == 2
    profile = await redis.hgetall(keys.profile("emp-42"))
    assert profile == {b"given_name": b"Poison", b"family_name": b"Lovelace"}

    fresh = versioned("evt-3", 6, "mileapp", given_name="Grace")
    assert (await post_final(gateway, fresh))["status"] == "delivered"
    mileapp = await sandbox.user("mileapp", USER_IDS["mileapp"])
    assert mileapp["name"] == "Grace Lovelace"


async def test_reset_refuses_while_a_delivery_is_in_flight_and_clears_nothing(
    gateway: Gateway, worker: None, sandbox: Sandbox, redis: Redis
) -> None:
    """While Fleet holds a call for the user, a reset answers 409 `pair_in_flight` with
    Retry-After and clears nothing (not even the idle pairs); the call completes as usual, and
    the reset succeeds once it has."""
    done = versioned("evt-1", HUGE, "partoo", email="poison@example.com")
    assert (await post_final(gateway, done))["status"] == "delivered"
    await sandbox.fault("fleet", latency_ms=3000, count=1)
    status, answer = await gateway.post(versioned("evt-2", 7, "fleet-eu", email="a@example.com"))
    assert status == 202, answer

    async def in_flight() -> bool:
        return len(await sandbox.requests("fleet")) == 1

    await wait_until(in_flight, 5, "the Fleet call in flight")
    async with gateway.http.delete(
        gateway.url + "/v1/users/emp-42/ordering",
        headers={"Authorization": "Bearer test-admin-token-0123456789"},
    ) as response:
        assert response.status == 409
        assert int(response.headers["Retry-After"]) >= 1
        refused = orjson.loads(await response.read())
    assert refused["error"]["code"] == "pair_in_flight"
    assert refused["error"]["details"] == {"vendors": ["fleet-eu"]}
    assert await redis.hgetall(keys.applied("partoo", "emp-42"))  # nothing cleared

    final = await gateway.wait_final("evt-2")
    assert final["targets"]["fleet-eu"]["status"] == "delivered"
    status, answer = await admin(gateway, "DELETE", "/v1/users/emp-42/ordering")
    assert status == 200, answer
    assert answer["applied_cleared"]["fleet-eu"] == 1
    assert answer["applied_cleared"]["partoo"] == 1
    assert not await redis.exists(keys.applied("partoo", "emp-42"))


async def test_reset_refuses_bad_input_and_source_tokens(gateway: Gateway) -> None:
    """A source's token is 403; an unconfigured vendor or an unknown query parameter is 422;
    a user id that cannot be one is 404."""
    path = "/v1/users/emp-42/ordering"
    assert (await admin(gateway, "DELETE", path, token="test-hris-token-0123456789"))[0] == 403
    status, answer = await admin(gateway, "DELETE", path + "?vendor=nowhere")
    assert status == 422 and answer["error"]["details"][0]["path"] == "vendor", answer
    status, answer = await admin(gateway, "DELETE", path + "?everything=1")
    assert status == 422 and answer["error"]["details"][0]["path"] == "everything", answer
    assert (await admin(gateway, "DELETE", "/v1/users/a%20b/ordering"))[0] == 404


async def test_cli_reset_ordering(
    gateway: Gateway, redis: Redis, redis_server: EmbeddedRedis, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`usersync users reset-ordering USER [--vendor V]` prints the API's answer and exits 0;
    an unconfigured vendor prints the 422 and exits 1."""
    await redis.hset(keys.applied("fleet-eu", "emp-42"), "email", HUGE)
    config = write_config(tmp_path, redis_server.url, sandbox.url)
    args = ("users", "reset-ordering", "emp-42", "--vendor", "fleet-eu")
    code, out, err = await run_cli(config, gateway.url, *args)
    assert code == 0, err
    assert orjson.loads(out)["applied_cleared"] == {"fleet-eu": 1}
    assert not await redis.exists(keys.applied("fleet-eu", "emp-42"))
    code, out, _ = await run_cli(config, gateway.url, *args[:3], "--vendor", "nowhere")
    assert code == 1
    assert orjson.loads(out)["error"]["code"] == "schema_violation"
