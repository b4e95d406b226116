"""The dead-letter queue end to end: letters made by the real pipeline (worker running, sandbox
vendors), then listed, shown, replayed and purged through the gateway's admin API."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from core import keys
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    IDP_TOKEN,
    USER_IDS,
    Gateway,
    Sandbox,
    event,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("worker")

SECRETS = {
    "changes": "weakpw1",
    "partoo": "Partoo-S3cret-value",
    "fleet-eu": "Fleet-S3cret-value",
    "plaspy": "Plaspy-S3cret-value",
}


async def admin(
    gateway: Gateway, method: str, path: str, body: Any = None, token: str | None = ADMIN_TOKEN
) -> tuple[int, Any]:
    """An admin API call: (status, parsed JSON answer)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    async with gateway.http.request(
        method, gateway.url + path, data=data, headers=headers
    ) as response:
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None


async def post_final(
    gateway: Gateway, body: dict[str, Any], token: str = HRIS_TOKEN
) -> dict[str, Any]:
    """Post an event and wait until every target is final; the per-target statuses."""
    status, answer = await gateway.post(body, token=token)
    assert status == 202, answer
    final = await gateway.wait_final(body["event_id"], token=token)
    return dict(final["targets"])


async def no_link(
    gateway: Gateway,
    event_id: str,
    user_id: str,
    targets: list[str],
    token: str = HRIS_TOKEN,
    source: str = "hris",
) -> list[str]:
    """A dead letter per target for a user with no vendor id anywhere (reason no_link)."""
    body = event(event_id, targets=targets, source=source, user={"id": user_id})
    states = await post_final(gateway, body, token)
    assert {t: s["status"] for t, s in states.items()} == dict.fromkeys(targets, "dead"), states
    assert all(s["last_error"].startswith("no_link") for s in states.values())
    return [f"{source}:{event_id}:{target}" for target in targets]


async def listed(gateway: Gateway, query: str = "") -> dict[str, Any]:
    status, body = await admin(gateway, "GET", "/v1/dead-letters" + query)
    assert status == 200, body
    return dict(body)


async def test_weak_password_letter_is_listed_and_shown_with_every_secret_masked(
    gateway: Gateway, sandbox: Sandbox, redis: Redis
) -> None:
    """A Partoo password under its policy is dead at once, never sent; the letter is listed with
    its reason and shown with the event, where every password (changes, a vendor_fields object,
    a Plaspy JSON Patch op) reads ***, as Redis holds them encrypted."""
    body = event(
        "evt-pw",
        targets=["partoo"],
        changes={"password": SECRETS["changes"], "email": "ada@example.com"},
        vendor_fields={
            "partoo": {"password": SECRETS["partoo"]},
            "fleet-eu": {"password": SECRETS["fleet-eu"]},
            "plaspy": [{"op": "add", "path": "/password", "value": SECRETS["plaspy"]}],
        },
    )
    states = await post_final(gateway, body)
    assert states["partoo"]["status"] == "dead"
    assert await sandbox.requests("partoo") == []
    stored = await redis.hget(keys.event("hris", "evt-pw"), keys.EVENT_BODY)
    assert not any(secret.encode() in stored for secret in SECRETS.values())  # encrypted
    assert stored.count(b'"enc:v1:') == len(SECRETS)  # what is masked

    page = await listed(gateway)
    assert page["total"] == 1 and page["next_cursor"] is None
    [item] = page["dead_letters"]
    assert item["id"] == "hris:evt-pw:partoo"
    assert (item["source"], item["event_id"], item["vendor"]) == ("hris", "evt-pw", "partoo")
    assert item["user_id"] == "emp-42"
    assert item["expired"] is False
    assert item["dead_at"].endswith("Z")
    assert item["status"]["status"] == "dead"
    assert item["status"]["attempts"] == 0
    assert "password" in item["status"]["last_error"]

    status, letter = await admin(gateway, "GET", "/v1/dead-letters/hris:evt-pw:partoo")
    assert status == 200, letter
    assert letter["id"] == "hris:evt-pw:partoo"
    assert letter["history"] == []  # refused before any call
    shown = letter["event"]
    assert shown["changes"] == {"password": "***", "email": "ada@example.com"}
    assert shown["vendor_fields"]["partoo"] == {"password": "***"}
    assert shown["vendor_fields"]["fleet-eu"] == {"password": "***"}
    assert shown["vendor_fields"]["plaspy"] == [{"op": "add", "path": "/password", "value": "***"}]
    text = orjson.dumps(letter).decode()
    for secret in SECRETS.values():
        assert secret not in text


async def test_list_is_newest_first_with_filters_limit_and_cursor(gateway: Gateway) -> None:
    """Letters come newest first; vendor and source filters narrow the list and its total; a
    small limit pages through everything exactly once with next_cursor."""
    made: list[str] = []
    made += await no_link(gateway, "evt-a", "emp-a", ["fleet-eu"])
    made += await no_link(gateway, "evt-b", "emp-b", ["partoo"])
    made += await no_link(gateway, "evt-c", "emp-c", ["fleet-eu"], IDP_TOKEN, "idp")
    made += await no_link(gateway, "evt-d", "emp-d", ["fleet-eu"])
    made += await no_link(gateway, "evt-e", "emp-e", ["partoo"])
    newest_first = made[::-1]

    page = await listed(gateway)
    assert page["total"] == 5
    assert [item["id"] for item in page["dead_letters"]] == newest_first
    dead_at = [item["dead_at"] for item in page["dead_letters"]]
    assert dead_at == sorted(dead_at, reverse=True)

    fleet = await listed(gateway, "?vendor=fleet-eu")
    assert fleet["total"] == 3
    assert [i["id"] for i in fleet["dead_letters"]] == [m for m in newest_first if "fleet" in m]
    idp = await listed(gateway, "?source=idp")
    assert (idp["total"], [i["id"] for i in idp["dead_letters"]]) == (1, ["idp:evt-c:fleet-eu"])
    both = await listed(gateway, "?vendor=partoo&source=hris")
    assert [i["id"] for i in both["dead_letters"]] == ["hris:evt-e:partoo", "hris:evt-b:partoo"]
    assert (await listed(gateway, "?vendor=partoo&source=idp"))["total"] == 0

    seen: list[str] = []
    query = "?limit=2"
    pages = 0
    while True:
        page = await listed(gateway, query)
        pages += 1
        assert page["total"] == 5
        assert len(page["dead_letters"]) <= 2
        seen += [item["id"] for item in page["dead_letters"]]
        if page["next_cursor"] is None:
            break
        query = f"?limit=2&cursor={page['next_cursor']}"
    assert (seen, pages) == (newest_first, 3)

    page = await listed(gateway, "?vendor=fleet-eu&source=hris&limit=1")
    assert [i["id"] for i in page["dead_letters"]] == ["hris:evt-d:fleet-eu"]
    page = await listed(gateway, f"?vendor=fleet-eu&source=hris&cursor={page['next_cursor']}")
    assert [i["id"] for i in page["dead_letters"]] == ["hris:evt-a:fleet-eu"]
    assert page["next_cursor"] is None


async def test_cursor_pages_through_letters_that_died_in_the_same_millisecond(
    gateway: Gateway, redis: Redis
) -> None:
    """One commit can kill several letters at one time (a coalesced call): equal scores still
    page exactly once each, in Redis's order; letters whose event is gone show as expired."""
    members = {f"hris:evt-{n}:fleet-eu": 1_900_000_000_000 for n in range(5)}
    await redis.zadd(keys.DEAD_LETTERS, members)
    await redis.zadd(keys.dead_letters_of("fleet-eu"), members)
    seen: list[str] = []
    query = "?limit=2"
    while True:
        page = await listed(gateway, query)
        seen += [item["id"] for item in page["dead_letters"]]
        assert all(item["expired"] and item["user_id"] is None for item in page["dead_letters"])
        if page["next_cursor"] is None:
            break
        query = f"?limit=2&cursor={page['next_cursor']}"
    assert seen == sorted(members, reverse=True)


async def test_replay_of_a_no_link_letter_after_the_link_is_set_delivers(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """no_link is replayable once a link exists: the replay is accepted with 202, the event
    ends delivered to the linked vendor user, and the letter is gone from the queue."""
    [letter] = await no_link(gateway, "evt-nl", "emp-404", ["fleet-eu"])
    assert await sandbox.requests("fleet") == []
    assert (await gateway.put("/v1/users/emp-404/links/fleet-eu", {"id": "42"}))[0] == 200

    status, body = await admin(gateway, "POST", f"/v1/dead-letters/{letter}/replay")
    assert status == 202, body
    assert body == {
        "id": letter,
        "status": "replayed",
        "status_url": "/v1/events/evt-nl?source=hris",
    }
    final = await gateway.wait_final("evt-nl")
    fleet = final["targets"]["fleet-eu"]
    assert (fleet["status"], fleet["attempts"], fleet["last_error"]) == ("delivered", 1, None)
    calls = await sandbox.requests("fleet")
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("PATCH", "/fleet/api/users/42", 200)
    ]
    assert (await sandbox.user("fleet", "42"))["email"] == "ada@example.com"
    assert (await listed(gateway))["total"] == 0
    assert (await admin(gateway, "GET", f"/v1/dead-letters/{letter}"))[0] == 404
    assert (await admin(gateway, "POST", f"/v1/dead-letters/{letter}/replay"))[0] == 404


async def test_replay_once_the_vendor_answers_again_delivers_and_keeps_the_history(
    gateway: Gateway, sandbox: Sandbox, redis: Redis
) -> None:
    """A Partoo 400 is dead with Partoo's message and one attempt in the letter's history;
    replayed, the next call succeeds and its attempt is appended to that history."""
    await sandbox.fault("partoo", status=400, count=1, body_failure="email is blocked")
    states = await post_final(gateway, event("evt-400", targets=["partoo"]))
    assert states["partoo"]["status"] == "dead"
    status, letter = await admin(gateway, "GET", "/v1/dead-letters/hris:evt-400:partoo")
    assert status == 200, letter
    assert letter["status"]["last_http_status"] == 400
    assert "email is blocked" in letter["status"]["last_error"]
    [attempt] = letter["history"]
    assert (attempt["attempt"], attempt["http_status"], attempt["outcome"]) == (1, 400, "dead")
    assert "email is blocked" in attempt["error"]

    status, _ = await admin(gateway, "POST", "/v1/dead-letters/hris:evt-400:partoo/replay")
    assert status == 202
    partoo = (await gateway.wait_final("evt-400"))["targets"]["partoo"]
    assert (partoo["status"], partoo["attempts"], partoo["last_http_status"]) == (
        "delivered",
        1,
        200,
    )
    assert [c["status"] for c in await sandbox.requests("partoo")] == [400, 200]
    history = orjson.loads(
        await redis.hget(keys.event("hris", "evt-400"), keys.history_field("partoo"))
    )
    assert [(h["http_status"], h["outcome"]) for h in history] == [
        (400, "dead"),
        (200, "delivered"),
    ]


async def test_replayed_old_change_never_overwrites_newer_data(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """A replay goes through ordering like any change: an old email, dead at first, replayed
    after a newer email was delivered, is skipped as stale and the vendor keeps the newer one."""
    await sandbox.fault("partoo", status=400, count=1)
    old = event("evt-old", targets=["partoo"], changes={"email": "old@example.com"})
    assert (await post_final(gateway, old))["partoo"]["status"] == "dead"
    new = event(
        "evt-new",
        targets=["partoo"],
        changes={"email": "new@example.com"},
        user={"id": "emp-42", "version": 2, "external_ids": USER_IDS},
    )
    assert (await post_final(gateway, new))["partoo"]["status"] == "delivered"

    assert (await admin(gateway, "POST", "/v1/dead-letters/hris:evt-old:partoo/replay"))[0] == 202
    partoo = (await gateway.wait_final("evt-old"))["targets"]["partoo"]
    assert (partoo["status"], partoo["last_error"]) == ("skipped", "stale")
    user = await sandbox.user("partoo", USER_IDS["partoo"])
    assert user["email"] == "new@example.com"
    assert [c["status"] for c in await sandbox.requests("partoo")] == [400, 200]


async def test_replay_by_vendor_then_all(gateway: Gateway, sandbox: Sandbox) -> None:
    """Replaying one vendor's letters leaves the others' alone; replaying all takes the rest."""
    letters = await no_link(gateway, "evt-1", "emp-1", ["fleet-eu", "partoo"])
    letters += await no_link(gateway, "evt-2", "emp-2", ["fleet-eu"])
    for user_id in ("emp-1", "emp-2"):
        assert (await gateway.put(f"/v1/users/{user_id}/links/fleet-eu", {"id": "42"}))[0] == 200
    assert (await gateway.put("/v1/users/emp-1/links/partoo", {"id": USER_IDS["partoo"]}))[0] == 200

    status, body = await admin(gateway, "POST", "/v1/dead-letters:replay", {"vendor": "fleet-eu"})
    assert (status, body) == (202, {"replayed": 2, "expired": 0, "invalid": 0})
    for event_id in ("evt-1", "evt-2"):

        async def fleet_delivered(event_id: str = event_id) -> bool:
            _, answer = await gateway.get(f"/v1/events/{event_id}")
            return bool(answer["targets"]["fleet-eu"]["status"] == "delivered")

        await wait_until(fleet_delivered, 10, f"{event_id} delivered to fleet-eu")
    page = await listed(gateway)
    assert [item["id"] for item in page["dead_letters"]] == ["hris:evt-1:partoo"]
    assert len(await sandbox.requests("partoo")) == 0

    status, body = await admin(gateway, "POST", "/v1/dead-letters:replay", {"all": True})
    assert (status, body) == (202, {"replayed": 1, "expired": 0, "invalid": 0})
    final = await gateway.wait_final("evt-1")
    assert final["targets"]["partoo"]["status"] == "delivered"
    assert [c["status"] for c in await sandbox.requests("partoo")] == [200]
    assert (await listed(gateway))["total"] == 0
    status, body = await admin(gateway, "POST", "/v1/dead-letters:replay", {"all": True})
    assert (status, body) == (202, {"replayed": 0, "expired": 0, "invalid": 0})


async def test_purge_one_and_many_leaves_the_events_dead(gateway: Gateway) -> None:
    """Purging drops letters from the queue only: their events still read dead."""
    await no_link(gateway, "evt-1", "emp-1", ["fleet-eu", "partoo"])
    await no_link(gateway, "evt-2", "emp-2", ["fleet-eu", "partoo"])

    status, body = await admin(gateway, "DELETE", "/v1/dead-letters/hris:evt-1:partoo")
    assert (status, body) == (200, {"id": "hris:evt-1:partoo", "status": "purged"})
    assert (await admin(gateway, "DELETE", "/v1/dead-letters/hris:evt-1:partoo"))[0] == 404
    assert (await admin(gateway, "GET", "/v1/dead-letters/hris:evt-1:partoo"))[0] == 404
    assert (await listed(gateway))["total"] == 3

    status, body = await admin(gateway, "DELETE", "/v1/dead-letters?vendor=fleet-eu")
    assert (status, body) == (200, {"purged": 2})
    assert [i["id"] for i in (await listed(gateway))["dead_letters"]] == ["hris:evt-2:partoo"]
    assert (await listed(gateway, "?vendor=fleet-eu"))["total"] == 0

    status, body = await admin(gateway, "DELETE", "/v1/dead-letters?all=true")
    assert (status, body) == (200, {"purged": 1})
    assert (await listed(gateway))["total"] == 0
    for event_id in ("evt-1", "evt-2"):
        _, answer = await gateway.get(f"/v1/events/{event_id}")
        assert {s["status"] for s in answer["targets"].values()} == {"dead"}
    status, body = await admin(gateway, "POST", "/v1/dead-letters/hris:evt-2:partoo/replay")
    assert status == 404, body


async def test_replaying_what_is_not_dead_is_404_and_sends_nothing(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """A delivered target, an unknown event, a malformed id: 404, and no call is made again."""
    assert (await post_final(gateway, event(targets=["fleet-eu"])))["fleet-eu"][
        "status"
    ] == "delivered"
    for letter in ("hris:evt-1:fleet-eu", "hris:nope:fleet-eu", "hris:evt-1:partoo", "junk"):
        status, body = await admin(gateway, "POST", f"/v1/dead-letters/{letter}/replay")
        assert status == 404, (letter, body)
        assert body["error"]["code"] == "not_found"
    assert len(await sandbox.requests("fleet")) == 1
    _, answer = await gateway.get("/v1/events/evt-1")
    assert answer["targets"]["fleet-eu"]["status"] == "delivered"


async def test_letter_whose_event_expired_is_410_and_dropped(
    gateway: Gateway, redis: Redis
) -> None:
    """Once the event is past its retention, show and replay answer 410; the replay drops the
    letter from the queue (nothing is left to replay)."""
    [letter] = await no_link(gateway, "evt-x", "emp-x", ["partoo"])
    await redis.delete(keys.event("hris", "evt-x"))  # what retention does to the event
    [item] = (await listed(gateway))["dead_letters"]
    assert (item["id"], item["expired"], item["status"]) == (letter, True, None)
    status, body = await admin(gateway, "GET", f"/v1/dead-letters/{letter}")
    assert (status, body["error"]["code"]) == (410, "expired")
    status, body = await admin(gateway, "POST", f"/v1/dead-letters/{letter}/replay")
    assert (status, body["error"]["code"]) == (410, "expired")
    assert (await listed(gateway))["total"] == 0
    assert (await admin(gateway, "POST", f"/v1/dead-letters/{letter}/replay"))[0] == 404
