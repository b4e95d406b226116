"""The operators' API around the dead-letter queue: who may call it, what bad input gets (never
a 500), `GET /v1/vendors` and `/metrics` computed from Redis."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from config.settings import Settings
from core import keys
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    Gateway,
    Sandbox,
    event,
    make_raw_settings,
    make_settings,
    running_gateway,
    running_worker,
    wait_until,
)
from tests.test_dead_letters import admin, no_link, post_final
from usersync.redis_server import EmbeddedRedis, free_port

ADMIN_CALLS = [
    ("GET", "/v1/dead-letters", None),
    ("GET", "/v1/dead-letters/hris:evt-1:fleet-eu", None),
    ("POST", "/v1/dead-letters/hris:evt-1:fleet-eu/replay", None),
    ("DELETE", "/v1/dead-letters/hris:evt-1:fleet-eu", None),
    ("POST", "/v1/dead-letters:replay", {"all": True}),
    ("DELETE", "/v1/dead-letters?all=true", None),
    ("GET", "/v1/vendors", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
async def test_admin_calls_need_the_admin_token(
    gateway: Gateway, redis: Redis, method: str, path: str, body: Any
) -> None:
    """No token or a wrong one is 401, a source's token 403; nothing is touched either way."""
    await redis.zadd(keys.DEAD_LETTERS, {"hris:evt-1:fleet-eu": 1})
    await redis.zadd(keys.dead_letters_of("fleet-eu"), {"hris:evt-1:fleet-eu": 1})
    for token, expected, code in (
        (None, 401, "unauthorized"),
        ("not-a-token-at-all-0000", 401, "unauthorized"),
        (HRIS_TOKEN, 403, "forbidden"),
    ):
        status, answer = await admin(gateway, method, path, body, token=token)
        assert (status, answer["error"]["code"]) == (expected, code), (token, answer)
    assert await redis.zcard(keys.DEAD_LETTERS) == 1
    assert await redis.zcard(keys.dead_letters_of("fleet-eu")) == 1


async def test_metrics_need_no_token(gateway: Gateway) -> None:
    """Prometheus scrapes without credentials."""
    async with gateway.http.get(gateway.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize(
    ("query", "paths"),
    [
        ("?limit=0", ["limit"]),
        ("?limit=1001", ["limit"]),
        ("?limit=ten", ["limit"]),
        ("?limit=-1", ["limit"]),
        ("?limit=%C2%B2", ["limit"]),
        ("?limit=" + "9" * 5000, ["limit"]),
        ("?cursor=!!!", ["cursor"]),
        ("?cursor=aGVsbG8", ["cursor"]),  # base64 of "hello"
        ("?cursor=", ["cursor"]),
        ("?vendor=nope", ["vendor"]),
        ("?vendor=NOT%20A%20NAME", ["vendor"]),
        ("?source=Bad%20Source", ["source"]),
        ("?colour=red", ["colour"]),
        ("?limit=1&limit=2", ["limit"]),
        ("?limit=0&cursor=x&vendor=nope", ["limit", "cursor", "vendor"]),
    ],
)
async def test_bad_list_queries_are_422_naming_the_parameter(
    gateway: Gateway, query: str, paths: list[str]
) -> None:
    status, body = await admin(gateway, "GET", "/v1/dead-letters" + query)
    assert status == 422, body
    assert body["error"]["code"] == "schema_violation"
    assert sorted(p["path"] for p in body["error"]["details"]) == sorted(paths)


@pytest.mark.parametrize(
    "letter_id",
    [
        "junk",
        "hris:evt-1",
        "::",
        "hris::fleet-eu",
        "HRIS:evt-1:fleet-eu",
        "hris:evt%201:fleet-eu",
        "hris:%FF%FE:fleet-eu",
        "hris:" + "x" * 500 + ":fleet-eu",
        "hris:evt-1:fleet-eu%0A",
    ],
)
async def test_bad_ids_are_404_on_every_call(gateway: Gateway, letter_id: str) -> None:
    """Whatever the path holds, a letter call answers 404 in the error shape."""
    for method, suffix in (("GET", ""), ("POST", "/replay"), ("DELETE", "")):
        status, body = await admin(gateway, method, f"/v1/dead-letters/{letter_id}{suffix}")
        assert (status, body["error"]["code"]) == (404, "not_found"), (method, body)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"all": False},
        {"all": "true"},
        {"vendor": "fleet-eu", "all": True},
        {"vendor": 5},
        {"vendor": "nope"},
        {"vendors": ["fleet-eu"]},
    ],
)
async def test_bulk_replay_needs_exactly_vendor_or_all(
    gateway: Gateway, redis: Redis, body: Any
) -> None:
    await redis.zadd(keys.DEAD_LETTERS, {"hris:evt-1:fleet-eu": 1})
    status, answer = await admin(gateway, "POST", "/v1/dead-letters:replay", body)
    assert (status, answer["error"]["code"]) == (422, "schema_violation"), answer
    assert await redis.zcard(keys.DEAD_LETTERS) == 1


async def test_bulk_replay_bad_bodies(gateway: Gateway) -> None:
    """Malformed JSON 400, not JSON 415, not an object 422: the body errors of every call."""
    url = gateway.url + "/v1/dead-letters:replay"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for data, content_type, expected in (
        (b'{"all": tr', "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b'{"all": true}', "text/plain", 415),
        (b"[]", "application/json", 422),
        (b"", "application/json", 400),
    ):
        headers = {**auth, "Content-Type": content_type}
        async with gateway.http.post(url, data=data, headers=headers) as response:
            assert response.status == expected, (data, await response.text())
            assert "error" in await response.json()


@pytest.mark.parametrize(
    "query", ["", "?all=false", "?all=yes", "?vendor=nope", "?vendor=fleet-eu&all=true", "?x=1"]
)
async def test_bulk_purge_needs_exactly_vendor_or_all(
    gateway: Gateway, redis: Redis, query: str
) -> None:
    await redis.zadd(keys.DEAD_LETTERS, {"hris:evt-1:fleet-eu": 1})
    status, answer = await admin(gateway, "DELETE", "/v1/dead-letters" + query)
    assert (status, answer["error"]["code"]) == (422, "schema_violation"), answer
    assert await redis.zcard(keys.DEAD_LETTERS) == 1


async def test_letters_of_a_vendor_no_longer_configured_can_be_listed_and_purged(
    gateway: Gateway, redis: Redis
) -> None:
    """A vendor instance removed from the config still has its letters: the name is accepted
    while it has some, and refused once they are gone."""
    member = "hris:evt-1:old-vendor"
    await redis.zadd(keys.DEAD_LETTERS, {member: 1_900_000_000_000})
    await redis.zadd(keys.dead_letters_of("old-vendor"), {member: 1_900_000_000_000})
    page = (await admin(gateway, "GET", "/v1/dead-letters?vendor=old-vendor"))[1]
    assert [item["id"] for item in page["dead_letters"]] == [member]
    assert (await admin(gateway, "DELETE", "/v1/dead-letters?vendor=old-vendor"))[1] == {
        "purged": 1
    }
    assert (await admin(gateway, "GET", "/v1/dead-letters?vendor=old-vendor"))[0] == 422


@pytest.mark.usefixtures("worker")
async def test_vendors_show_state_calls_and_plaspy_usage(gateway: Gateway) -> None:
    """Every configured instance is listed with its circuit and rate; after a delivery to
    Plaspy its success is counted and Plaspy's apiUsage / apiDailyUsage are shown."""
    status, body = await admin(gateway, "GET", "/v1/vendors")
    assert status == 200
    assert {name: v["kind"] for name, v in body["vendors"].items()} == {
        "mileapp": "mileapp",
        "fleet-eu": "fleet",
        "plaspy": "plaspy",
        "partoo": "partoo",
    }
    assert body["vendors"]["plaspy"]["usage"] == {}
    assert (await post_final(gateway, event(targets=["plaspy"])))["plaspy"]["status"] == "delivered"
    await no_link(gateway, "evt-nl", "emp-404", ["partoo"])

    vendors = (await admin(gateway, "GET", "/v1/vendors"))[1]["vendors"]
    plaspy = vendors["plaspy"]
    assert plaspy["enabled"] is True
    assert plaspy["usage"]["apiUsage"] >= 1
    assert plaspy["usage"]["apiDailyUsage"] >= 1
    assert plaspy["calls"] == {"success": 1}
    assert plaspy["circuit"]["state"] == "closed"
    assert plaspy["rate"]["effective_per_second"] == plaspy["rate"]["configured_per_second"]
    assert vendors["partoo"]["dead_letters"] == 1
    assert vendors["partoo"]["calls"] == {}  # no_link: refused before any call
    assert vendors["plaspy"]["dead_letters"] == 0


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with gateway.http.get(gateway.url + "/metrics") as response:
        assert response.status == 200
        return parse_metrics(await response.text())


@pytest.mark.usefixtures("worker")
async def test_metrics_report_dead_letters_calls_usage_and_queue(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """/metrics parses as Prometheus text, with the dead letters (all and per vendor), calls by
    outcome, Plaspy's reported usage, the circuit and rate of each vendor, and the queue."""
    before = await scrape(gateway)
    assert before[("usersync_dead_letters", ())] == 0
    assert before[("usersync_queue_jobs", ())] == 0
    assert (
        before[("usersync_vendor_calls_total", (("outcome", "success"), ("vendor", "plaspy")))] == 0
    )

    await sandbox.fault("partoo", status=400, count=1)
    await post_final(gateway, event(targets=["plaspy", "partoo"]))
    await no_link(gateway, "evt-nl", "emp-404", ["fleet-eu"])
    after = await scrape(gateway)
    assert after[("usersync_dead_letters", ())] == 2
    for vendor, count in (("partoo", 1), ("fleet-eu", 1), ("plaspy", 0), ("mileapp", 0)):
        assert after[("usersync_vendor_dead_letters", (("vendor", vendor),))] == count
        assert after[("usersync_vendor_circuit_state", (("vendor", vendor),))] == 0
        assert after[("usersync_vendor_consecutive_failures", (("vendor", vendor),))] == 0
        assert after[("usersync_vendor_rate_per_second", (("vendor", vendor),))] == 10
    calls = "usersync_vendor_calls_total"
    assert after[(calls, (("outcome", "success"), ("vendor", "plaspy")))] == 1
    assert after[(calls, (("outcome", "refused"), ("vendor", "partoo")))] == 1
    assert after[(calls, (("outcome", "failure"), ("vendor", "partoo")))] == 0
    usage = "usersync_vendor_api_usage"
    assert after[(usage, (("counter", "apiUsage"), ("vendor", "plaspy")))] >= 1
    assert after[(usage, (("counter", "apiDailyUsage"), ("vendor", "plaspy")))] >= 1

    async def queue_empty() -> bool:  # arq drops a finished job just after its commit
        samples = await scrape(gateway)
        return samples[("usersync_queue_jobs", ())] == samples[("usersync_queue_jobs_due", ())] == 0

    await wait_until(queue_empty, 5, "the queue reads empty")


async def test_metrics_and_vendors_show_an_open_circuit_and_waiting_jobs(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """With a failure threshold of 1, one 503 opens Fleet's circuit: /v1/vendors says open with
    one failure, /metrics says 2, and the retry waits as a deferred job in the queue."""
    raw = make_raw_settings(redis_server.url, sandbox.url)
    raw["vendors"]["fleet-eu"]["circuit_breaker"] = {"failure_threshold": 1, "cooldown_s": 60}
    settings: Settings = make_settings(redis_server.url, sandbox.url, vendors=raw["vendors"])
    await sandbox.fault("fleet", status=503, count=1)
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        assert (await gateway.post(event(targets=["fleet-eu"])))[0] == 202

        async def opened() -> bool:
            vendors = (await admin(gateway, "GET", "/v1/vendors"))[1]["vendors"]
            return bool(vendors["fleet-eu"]["circuit"]["state"] == "open")

        await wait_until(opened, 10, "fleet-eu circuit open")
        fleet = (await admin(gateway, "GET", "/v1/vendors"))[1]["vendors"]["fleet-eu"]
        assert fleet["circuit"]["consecutive_failures"] == 1
        assert fleet["circuit"]["times_opened"] == 1
        assert fleet["calls"] == {"failure": 1}
        samples = await scrape(gateway)
        assert samples[("usersync_vendor_circuit_state", (("vendor", "fleet-eu"),))] == 2
        assert samples[("usersync_vendor_consecutive_failures", (("vendor", "fleet-eu"),))] == 1
        assert samples[("usersync_vendor_circuit_opened_total", (("vendor", "fleet-eu"),))] == 1

        async def deferred() -> bool:
            # One job waits: the retry's backoff, then the open circuit's cool-down.
            samples = await scrape(gateway)
            jobs, due = (
                samples[("usersync_queue_jobs", ())],
                samples[("usersync_queue_jobs_due", ())],
            )
            return (jobs, due) == (1, 0)

        await wait_until(deferred, 5, "one job deferred behind the open circuit")


async def test_metrics_escape_odd_vendor_usage_names(gateway: Gateway, redis: Redis) -> None:
    """A counter name a vendor reports is a label value: quoted and escaped, still parseable."""
    await redis.hset(keys.vendor("plaspy"), keys.VENDOR_USAGE_PREFIX + 'we"ird\\name', 7)
    samples = await scrape(gateway)
    assert (
        samples[("usersync_vendor_api_usage", (("counter", 'we"ird\\name'), ("vendor", "plaspy")))]
        == 7
    )


async def test_redis_down_is_503_for_admin_calls(http: aiohttp.ClientSession) -> None:
    """Without Redis the admin calls answer 503 in the error shape, not 500 (/metrics answers
    200 with `usersync_redis_up 0`: tests/test_metrics.py)."""
    down = make_settings(f"redis://127.0.0.1:{free_port()}/0", "http://127.0.0.1:1")
    async with running_gateway(down) as url:
        gateway = Gateway(url, http)
        for method, path, body in ADMIN_CALLS:
            status, answer = await admin(gateway, method, path, body)
            assert (status, answer["error"]["code"]) == (503, "redis_unavailable"), path


async def test_replay_sets_the_target_pending_and_queues_its_pair(
    redis: Redis, sandbox: Sandbox, settings: Settings, http: aiohttp.ClientSession
) -> None:
    """Between a replay and the worker: the target reads pending with 0 attempts, no error and
    its last HTTP status kept; the event waits in its pair's pending set with one job queued;
    the letter has left the queue. A worker started then delivers it."""
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        await sandbox.fault("partoo", status=400, count=1)
        async with running_worker(settings):
            assert (await post_final(gateway, event(targets=["partoo"])))["partoo"][
                "status"
            ] == "dead"

        async def queue_empty() -> bool:  # arq removes a job just after its last commit
            return bool(await redis.zcard("arq:queue") == 0)

        await wait_until(queue_empty, 5, "the dead delivery's job gone from the queue")

        status, _ = await admin(gateway, "POST", "/v1/dead-letters/hris:evt-1:partoo/replay")
        assert status == 202
        partoo = (await gateway.get("/v1/events/evt-1"))[1]["targets"]["partoo"]
        assert (partoo["status"], partoo["attempts"]) == ("pending", 0)
        assert (partoo["last_http_status"], partoo["last_error"]) == (400, None)
        assert await redis.zrange(keys.pending("partoo", "emp-42"), 0, -1) == [b"hris:evt-1"]
        samples = await scrape(gateway)
        assert samples[("usersync_queue_jobs", ())] == 1
        assert samples[("usersync_queue_jobs_due", ())] == 1
        assert samples[("usersync_dead_letters", ())] == 0

        async with running_worker(settings):
            final = await gateway.wait_final("evt-1")
        assert final["targets"]["partoo"]["status"] == "delivered"


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    letter_id=st.text(min_size=1, max_size=60),
    query=st.dictionaries(
        st.sampled_from(["vendor", "source", "limit", "cursor", "all", "x"]),
        st.text(max_size=30),
        max_size=3,
    ),
)
async def test_arbitrary_ids_and_queries_never_give_a_500(
    gateway: Gateway, letter_id: str, query: dict[str, str]
) -> None:
    """Whatever text is put in the id or the query, every admin call answers below 500."""
    path_id = quote(letter_id, safe="")
    qs = "?" + urlencode(query) if query else ""
    for method, path in (
        ("GET", f"/v1/dead-letters{qs}"),
        ("DELETE", f"/v1/dead-letters{qs}"),
        ("GET", f"/v1/dead-letters/{path_id}"),
        ("POST", f"/v1/dead-letters/{path_id}/replay"),
        ("DELETE", f"/v1/dead-letters/{path_id}{qs}"),
    ):
        status, body = await admin(gateway, method, path)
        assert status < 500, (method, path, body)
