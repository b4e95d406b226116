"""`POST /v1/events:preview`: the exact request per target, secrets masked, nothing stored."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tests.conftest import USER_IDS, Gateway, Sandbox, event, stored_keys


async def test_preview_shows_each_request_masked_and_stores_nothing(
    gateway: Gateway, redis: Redis
) -> None:
    """Preview answers every target's method, URL, masked headers and body; Redis stays empty."""
    body = event(changes={"email": "ada@example.com", "password": "Str0ng-Passw0rd!"})
    status, answer = await gateway.post(body, path="/v1/events:preview")
    assert status == 200, answer
    targets = answer["targets"]
    fleet = targets["fleet-eu"]
    assert fleet["outcome"] == "send"
    assert fleet["request"]["method"] == "PATCH"
    assert fleet["request"]["url"].endswith("/fleet/api/users/42")
    assert fleet["request"]["headers"]["Authorization"] == "***"
    assert fleet["request"]["body"] == {"email": "ada@example.com", "password": "***"}
    partoo = targets["partoo"]["request"]
    assert partoo["method"] == "POST"
    assert partoo["headers"]["x-APIKey"] == "***"
    assert partoo["body"] == {"email": "ada@example.com", "password": "***"}
    plaspy_ops = {op["path"]: op for op in targets["plaspy"]["request"]["body"]}
    assert plaspy_ops["/password"]["value"] == "***"
    assert targets["mileapp"]["request"]["body"] == {
        "_id": USER_IDS["mileapp"],
        "email": "ada@example.com",
    }
    assert "Str0ng-Passw0rd!" not in str(answer)
    assert await stored_keys(redis) == []


async def test_preview_reports_skipped_and_refused(gateway: Gateway) -> None:
    """A target with nothing to send is skipped; a value the vendor refuses is refused, with why."""
    body = event(
        changes={"phone_country": "FR", "password": "weak"},
        targets=["mileapp", "partoo", "fleet-eu"],
    )
    status, answer = await gateway.post(body, path="/v1/events:preview")
    assert status == 200
    assert answer["targets"]["mileapp"]["outcome"] == "skipped"
    assert answer["targets"]["partoo"]["outcome"] == "refused"
    assert answer["targets"]["partoo"]["reason"] == "password_policy"
    assert "weak" not in answer["targets"]["partoo"]["message"]
    assert answer["targets"]["fleet-eu"]["outcome"] == "send"


async def test_preview_without_link_is_refused_no_link(gateway: Gateway) -> None:
    """A user with no known vendor id previews as refused with reason no_link."""
    body = event(user={"id": "emp-new"}, targets=["fleet-eu"])
    _, answer = await gateway.post(body, path="/v1/events:preview")
    assert answer["targets"]["fleet-eu"] == {
        "outcome": "refused",
        "reason": "no_link",
        "message": "no_link: no fleet-eu id is known for this user",
    }


async def test_preview_validates_like_posting(gateway: Gateway) -> None:
    """Preview refuses what posting refuses, with the same codes."""
    assert (await gateway.post({"event_id": "x"}, path="/v1/events:preview"))[0] == 422
    assert (await gateway.post(event(), token=None, path="/v1/events:preview"))[0] == 401


@pytest.mark.usefixtures("worker")
async def test_preview_matches_what_the_vendor_receives(gateway: Gateway, sandbox: Sandbox) -> None:
    """The previewed body is byte for byte the body the sandbox then receives: both come from
    `workers.planning.translate`, the one planning path (no secrets here)."""
    changes = {
        "email": "ada@example.com",
        "given_name": "Ada",
        "job_title": "Engineer",
        "role": "admin",
    }
    _, preview = await gateway.post(event(changes=changes), path="/v1/events:preview")
    await gateway.post(event(changes=changes))
    await gateway.wait_final("evt-1")
    for target, kind in (
        ("mileapp", "mileapp"),
        ("fleet-eu", "fleet"),
        ("plaspy", "plaspy"),
        ("partoo", "partoo"),
    ):
        received = (await sandbox.requests(kind))[0]
        assert received["body"] == preview["targets"][target]["request"]["body"], target
        assert received["method"] == preview["targets"][target]["request"]["method"], target
