"""The gateway's HTTP contract (docs/contract.md §2): acceptance, duplicates, auth, and every error code."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from core import keys
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    IDP_TOKEN,
    Gateway,
    event,
    make_settings,
    running_gateway,
)
from usersync.redis_server import free_port


async def queued_jobs(redis: Redis) -> int:
    return int(await redis.zcard("arq:queue"))


async def test_accepts_event_and_stores_one_job_per_target(gateway: Gateway, redis: Redis) -> None:
    """A valid event answers 202 with its targets, and Redis holds a job and status per target."""
    status, body = await gateway.post(event())
    assert status == 202, body
    assert body == {
        "event_id": "evt-1",
        "status": "accepted",
        "targets": ["mileapp", "fleet-eu", "plaspy", "partoo"],
        "status_url": "/v1/events/evt-1",
    }
    assert await queued_jobs(redis) == 4
    status, answer = await gateway.get("/v1/events/evt-1")
    assert status == 200
    assert answer["user_id"] == "emp-42"
    assert {t: v["status"] for t, v in answer["targets"].items()} == dict.fromkeys(
        ["fleet-eu", "mileapp", "partoo", "plaspy"], "pending"
    )


async def test_duplicate_event_id_answers_original_and_enqueues_nothing(
    gateway: Gateway, redis: Redis
) -> None:
    """Posting the same event_id again answers 200 with the original body and duplicate: true."""
    _, first = await gateway.post(event(targets=["fleet-eu"]))
    status, again = await gateway.post(event(changes={"email": "other@example.com"}))
    assert status == 200
    assert again == {**first, "duplicate": True}
    assert await queued_jobs(redis) == 1


async def test_event_ids_are_unique_per_source(gateway: Gateway, redis: Redis) -> None:
    """The same event_id from two sources is two events."""
    assert (await gateway.post(event(targets=["fleet-eu"])))[0] == 202
    idp_event = event(targets=["fleet-eu"], source="idp")
    assert (await gateway.post(idp_event, token=IDP_TOKEN))[0] == 202
    assert await redis.zrange(keys.pending("fleet-eu", "emp-42"), 0, -1) == [
        b"hris:evt-1",
        b"idp:evt-1",
    ]
    assert await queued_jobs(redis) == 1  # one job per (vendor, user) pair, not per event


async def test_external_ids_are_stored_as_links(gateway: Gateway) -> None:
    """user.external_ids become identity links readable through the admin API."""
    await gateway.post(event(targets=["fleet-eu"]))
    status, body = await gateway.get("/v1/users/emp-42/links", token=ADMIN_TOKEN)
    assert status == 200
    assert body["links"]["fleet-eu"] == "42"
    assert body["links"]["partoo"] == "5309c3a237bbc544d8e26737"


async def test_links_admin_api(gateway: Gateway) -> None:
    """An admin sets a link with PUT and reads it back, all or one vendor's; a source token is
    refused with 403."""
    assert (await gateway.put("/v1/users/emp-7/links/fleet-eu", {"id": "77"}))[0] == 200
    assert (await gateway.get("/v1/users/emp-7/links", token=ADMIN_TOKEN))[1]["links"] == {
        "fleet-eu": "77"
    }
    assert (await gateway.get("/v1/users/emp-7/links", token=HRIS_TOKEN))[0] == 403
    one = (await gateway.get("/v1/users/emp-7/links/fleet-eu", token=ADMIN_TOKEN))[1]
    assert {key: one[key] for key in ("user_id", "vendor", "id", "set_by")} == {
        "user_id": "emp-7",
        "vendor": "fleet-eu",
        "id": "77",
        "set_by": "admin",
    }
    assert (await gateway.get("/v1/users/emp-7/links/partoo", token=ADMIN_TOKEN))[0] == 404
    assert (await gateway.get("/v1/users/emp-7/links/fleet-eu", token=HRIS_TOKEN))[0] == 403
    assert (await gateway.put("/v1/users/emp-7/links/nope", {"id": "77"}))[0] == 404
    assert (await gateway.put("/v1/users/emp-7/links/fleet-eu", {"id": "77"}, HRIS_TOKEN))[0] == 403


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize(
    ("token", "expected", "code"),
    [
        (None, 401, "unauthorized"),
        ("wrong-token-wrong-token", 401, "unauthorized"),
        (ADMIN_TOKEN, 403, "forbidden"),
    ],
)
async def test_posting_needs_a_source_token(
    gateway: Gateway, redis: Redis, token: str | None, expected: int, code: str
) -> None:
    """No token, a wrong token, or the admin token cannot post events, and nothing is stored."""
    status, body = await gateway.post(event(), token=token)
    assert_error(status, body, expected, code)
    assert await queued_jobs(redis) == 0


async def test_malformed_json_is_400(gateway: Gateway) -> None:
    """A body that is not JSON answers 400."""
    assert_error(*(await gateway.post(b'{"event_id": "x",')), 400, "malformed_json")


async def test_non_utf8_json_is_400(gateway: Gateway) -> None:
    """A body that is not UTF-8 answers 400."""
    assert_error(*(await gateway.post(b'{"event_id": "\xff\xfe"}')), 400, "malformed_json")


async def test_deeply_nested_json_is_refused(gateway: Gateway) -> None:
    """A pathologically nested body is refused with a 4xx, not a crash."""
    status, body = await gateway.post(b"[" * 2000 + b"]" * 2000)
    assert status in (400, 413), body


async def test_nesting_deeper_than_32_levels_is_422_with_its_path(
    gateway: Gateway, redis: Redis
) -> None:
    """vendor_fields nested 40 levels deep (within the body limit, parseable) is refused with
    422 naming where, and nothing is stored."""
    deep: object = "x"
    for _ in range(40):
        deep = {"a": deep}
    status, body = await gateway.post(event(vendor_fields={"fleet-eu": {"notes": deep}}))
    assert status == 422, body
    [problem] = body["error"]["details"]
    assert problem["path"].startswith("vendor_fields.fleet-eu.notes.a.a")
    assert "deeper than 32" in problem["message"]
    assert await redis.zcard("arq:queue") == 0


async def test_an_array_longer_than_1000_items_is_422(gateway: Gateway) -> None:
    """A huge array anywhere in the body is refused before any model walks it."""
    fields = {"business_ids": [0] * 1001}
    status, body = await gateway.post(event(vendor_fields={"partoo": fields}), path="/v1/events")
    assert status == 422, body
    assert body["error"]["details"] == [
        {"path": "vendor_fields.partoo.business_ids", "message": "more than 1000 items"}
    ]


async def test_an_update_without_changes_is_422_and_a_deactivation_needs_none(
    gateway: Gateway, redis: Redis
) -> None:
    """`changes` left out of a `user.updated` is refused like an empty one (nothing stored); a
    `user.deactivated` without it is accepted, its `active: false` taken from the type."""
    body = event()
    del body["changes"]
    status, answer = await gateway.post(body)
    assert status == 422, answer
    assert [problem["path"] for problem in answer["error"]["details"]] == ["changes"]
    assert await redis.zcard("arq:queue") == 0
    deactivation = {**body, "event_id": "evt-2", "type": "user.deactivated"}
    status, answer = await gateway.post(deactivation)
    assert status == 202, answer
    status, preview = await gateway.post(
        {**deactivation, "event_id": "evt-3", "targets": ["partoo"]}, path="/v1/events:preview"
    )
    assert preview["targets"]["partoo"]["request"]["body"] == {"disabled": True}, preview


async def test_not_json_content_type_is_415(gateway: Gateway) -> None:
    """A body not declared as JSON answers 415."""
    status, body = await gateway.post(orjson.dumps(event()), headers={"Content-Type": "text/plain"})
    assert_error(status, body, 415, "unsupported_media_type")


async def test_body_over_limit_is_413(gateway: Gateway, redis: Redis) -> None:
    """A body larger than max_body_bytes answers 413 and stores nothing."""
    big = event(changes={"email": "a@example.com", "job_title": "x" * 100})
    big["padding"] = "y" * 8000
    assert_error(*(await gateway.post(big)), 413, "body_too_large")
    assert await queued_jobs(redis) == 0


async def test_streamed_body_over_limit_is_413(gateway: Gateway) -> None:
    """A chunked body without Content-Length is cut off once it passes the limit."""

    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1024

    async with gateway.http.post(
        gateway.url + "/v1/events",
        data=chunks(),
        headers={"Authorization": f"Bearer {HRIS_TOKEN}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("mutate", "paths"),
    [
        (lambda e: e.update(unexpected=1), ["unexpected"]),
        (lambda e: e["changes"].update(favourite_colour="blue"), ["changes.favourite_colour"]),
        (lambda e: e.update(changes={}), ["changes"]),
        (lambda e: e.pop("event_id"), ["event_id"]),
        (lambda e: e.update(event_id="has spaces"), ["event_id"]),
        (lambda e: e.update(occurred_at="2026-11-22T10:15:00"), ["occurred_at"]),
        (lambda e: e["user"].update(version="seventeen"), ["user.version"]),
        # JSON types, not pydantic's lax coercions (found by schemathesis)
        (lambda e: e.update(occurred_at=1700000000), ["occurred_at"]),
        (lambda e: e.update(occurred_at="1700000000"), ["occurred_at"]),
        (lambda e: e["user"].update(version="17"), ["user.version"]),
        (lambda e: e["user"].update(version=True), ["user.version"]),
        (lambda e: e["changes"].update(birth_date=0), ["changes.birth_date"]),
        (
            lambda e: e["changes"].update(
                email="not-an-email", phone="12345", timezone="Mars/Base"
            ),
            ["changes.email", "changes.phone", "changes.timezone"],
        ),
        (lambda e: e["changes"].update(language="not a tag!"), ["changes.language"]),
        (lambda e: e["changes"].update(start_date="31/12/2026"), ["changes.start_date"]),
        (lambda e: e["changes"].update(active="yes"), ["changes.active"]),
        (lambda e: e["changes"].update(password=None), ["changes"]),
        (lambda e: e["changes"].update(given_name="x" * 201), ["changes.given_name"]),
        (lambda e: e.update(targets=["nowhere"]), ["targets.nowhere"]),
        (
            lambda e: e["user"]["external_ids"].update(typo_vendor="1"),
            ["user.external_ids.typo_vendor"],
        ),
    ],
)
async def test_schema_violations_are_422_with_field_paths(
    gateway: Gateway, redis: Redis, mutate: Any, paths: list[str]
) -> None:
    """Each schema problem answers 422 naming the field path of every problem; nothing stored."""
    body = event()
    mutate(body)
    status, answer = await gateway.post(body)
    assert_error(status, answer, 422, "schema_violation")
    reported = [problem["path"] for problem in answer["error"]["details"]]
    for path in paths:
        assert any(r == path or r.startswith(path + ".") for r in reported), (path, reported)
    assert await queued_jobs(redis) == 0


async def test_json_array_body_is_422(gateway: Gateway) -> None:
    """A JSON body that is not an object answers 422."""
    assert_error(*(await gateway.post([event()])), 422, "schema_violation")


async def test_target_not_allowed_for_source_is_403(gateway: Gateway, redis: Redis) -> None:
    """A source limited to some targets gets 403 for another; its default is its allowed set."""
    body = event(targets=["partoo"], source="idp")
    assert_error(*(await gateway.post(body, token=IDP_TOKEN)), 403, "target_not_allowed")
    body = event(event_id="evt-2", source="idp")
    status, answer = await gateway.post(body, token=IDP_TOKEN)
    assert status == 202
    assert answer["targets"] == ["fleet-eu"]


async def test_source_field_must_match_token(gateway: Gateway) -> None:
    """An event naming another source than its token's is refused with 403."""
    assert_error(*(await gateway.post(event(source="idp"))), 403, "source_mismatch")


async def test_unknown_route_and_method_are_json_errors(gateway: Gateway) -> None:
    """404 and 405 come in the same JSON error shape."""
    assert_error(*(await gateway.get("/v2/nothing")), 404, "not_found")
    async with gateway.http.delete(gateway.url + "/v1/events") as response:
        assert response.status == 405
        assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_status_visibility(gateway: Gateway) -> None:
    """A source reads its own events; another source gets 404; the admin reads any."""
    await gateway.post(event(targets=["fleet-eu"]))
    assert (await gateway.get("/v1/events/evt-1", token=IDP_TOKEN))[0] == 404
    assert (await gateway.get("/v1/events/evt-1", token=ADMIN_TOKEN))[0] == 200
    assert (await gateway.get("/v1/events/evt-1", token=None))[0] == 401
    assert (await gateway.get("/v1/events/unknown-id"))[0] == 404


async def test_health_and_readiness(gateway: Gateway) -> None:
    """/healthz and /readyz answer 200 while Redis is up."""
    assert (await gateway.get("/healthz", token=None))[0] == 200
    assert (await gateway.get("/readyz", token=None))[0] == 200


async def test_redis_down_answers_503_and_accepts_nothing(http: aiohttp.ClientSession) -> None:
    """With Redis unreachable, posting answers 503 with Retry-After, and readiness fails."""
    down = make_settings(f"redis://127.0.0.1:{free_port()}/0", "http://127.0.0.1:1")
    async with running_gateway(down) as url:
        gw = Gateway(url, http)
        async with http.post(
            url + "/v1/events",
            json=event(),
            headers={"Authorization": f"Bearer {HRIS_TOKEN}"},
        ) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"]["code"] == "redis_unavailable"
        assert (await gw.get("/readyz", token=None))[0] == 503


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mutation=st.dictionaries(
        st.sampled_from(
            ["event_id", "type", "occurred_at", "user", "changes", "targets", "vendor_fields", "x"]
        ),
        json_values,
        max_size=3,
    )
)
async def test_arbitrary_bodies_never_give_a_500(
    gateway: Gateway, mutation: dict[str, Any]
) -> None:
    """Whatever JSON replaces parts of a valid event, the answer is never a 5xx."""
    body = event(event_id="fuzz-1")
    body.update(mutation)
    status, answer = await gateway.post(body)
    assert status in (200, 202, 400, 403, 413, 422), answer
