"""The SCIM service's own rules: a retried write is delivered once, ETags and If-Match, one
source's users invisible to another, link authority as for v1 events, the password sealed."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import orjson
from redis.asyncio import Redis

from core import keys
from tests.conftest import USER_IDS, Gateway, Sandbox
from tests.scim.conftest import (
    ENTRA_TOKEN,
    ERROR_SCHEMA,
    LINKS,
    OKTA_TOKEN,
    RESTRICTED_TOKEN,
    SCIM_JSON,
    Scim,
)

FLEET_ID = USER_IDS["fleet-eu"]


async def _event_ids(redis: Redis, source: str) -> list[str]:
    prefix = keys.event(source, "")
    found = await redis.keys(prefix + "*")
    return sorted(key.decode().removeprefix(prefix) for key in found)


async def test_a_retried_patch_is_delivered_once(
    scim: Scim, sandbox: Sandbox, redis: Redis, worker: None
) -> None:
    """The same PATCH sent again (a lost answer retried), and twice at once, makes one version
    and one event, and Fleet gets one call."""
    created = await scim.create(
        "ada@example.com", **{LINKS: {"links": {"fleet-eu": FLEET_ID}}}, title="Analyst"
    )
    user_id = created.body["id"]
    await Gateway(scim.url, scim.http).wait_final(f"scim:{user_id}:1", token=OKTA_TOKEN)
    operation = {"op": "replace", "path": "title", "value": "Engineer"}
    answers = await asyncio.gather(*(scim.patch(user_id, operation) for _ in range(3)))
    again = await scim.patch(user_id, operation)
    assert [answer.status for answer in (*answers, again)] == [200] * 4
    assert {answer.headers["ETag"] for answer in (*answers, again)} == {'W/"2"'}
    assert await _event_ids(redis, "okta") == [f"scim:{user_id}:1", f"scim:{user_id}:2"]
    await Gateway(scim.url, scim.http).wait_final(f"scim:{user_id}:2", token=OKTA_TOKEN)
    positions = [r["body"].get("position") for r in await sandbox.requests("fleet")]
    assert positions == ["Analyst", "Engineer"]


async def test_if_match_is_honoured(scim: Scim) -> None:
    """Every answer carries the version as ETag; a write whose If-Match names another version
    is 412 (nothing written), the current one or `*` goes through."""
    created = await scim.create("grace@example.com")
    user_id = created.body["id"]
    assert created.headers["ETag"] == created.body["meta"]["version"] == 'W/"1"'
    title = {"op": "replace", "path": "title", "value": "Admiral"}
    assert (await scim.patch(user_id, title, headers={"If-Match": 'W/"1"'})).status == 200
    stale = await scim.patch(
        user_id, {"op": "replace", "path": "title", "value": "x"}, headers={"If-Match": 'W/"1"'}
    )
    assert (stale.status, stale.body["schemas"], stale.body["status"]) == (
        412,
        [ERROR_SCHEMA],
        "412",
    )
    stale_put = await scim.call(
        "PUT",
        f"/Users/{user_id}",
        {"userName": "grace@example.com"},
        headers={"If-Match": 'W/"1"'},
    )
    assert stale_put.status == 412
    stale_delete = await scim.call("DELETE", f"/Users/{user_id}", headers={"If-Match": '"1"'})
    assert stale_delete.status == 412
    read = await scim.call("GET", f"/Users/{user_id}")
    assert (read.headers["ETag"], read.body["title"]) == ('W/"2"', "Admiral")
    starred = await scim.patch(
        user_id, {"op": "remove", "path": "title"}, headers={"If-Match": "*"}
    )
    assert (starred.status, starred.headers["ETag"]) == (200, 'W/"3"')


async def test_one_sources_users_are_invisible_to_another(scim: Scim, redis: Redis) -> None:
    """Okta's user cannot be read, listed, changed or deleted with Entra's token; Entra may
    have its own user of the same userName, a different canonical user."""
    created = await scim.create("linus@example.com")
    user_id = created.body["id"]
    entra = scim.as_source(ENTRA_TOKEN)
    assert (await entra.call("GET", f"/Users/{user_id}")).status == 404
    assert (await entra.call("GET", "/Users")).body["totalResults"] == 0
    lookup = "/Users?filter=" + quote('userName eq "linus@example.com"')
    assert (await entra.call("GET", lookup)).body["totalResults"] == 0
    title = {"op": "replace", "path": "title", "value": "x"}
    assert (await entra.patch(user_id, title)).status == 404
    assert (await entra.call("DELETE", f"/Users/{user_id}")).status == 404
    own = await entra.create("linus@example.com")
    assert own.body["id"] != user_id
    okta_event = orjson.loads(
        await redis.hget(keys.event("okta", f"scim:{user_id}:1"), keys.EVENT_BODY)
    )
    entra_event = orjson.loads(
        await redis.hget(keys.event("entra", f"scim:{own.body['id']}:1"), keys.EVENT_BODY)
    )
    assert okta_event["user"]["id"] == f"scim:okta:{user_id}"
    assert entra_event["user"]["id"] == f"scim:entra:{own.body['id']}"
    assert (await scim.call("GET", lookup)).body["totalResults"] == 1


async def test_only_scim_sources_get_in(scim: Scim) -> None:
    """No token is 401, a source without `scim: true` and the admin token are 403, all as
    SCIM errors."""
    from tests.conftest import ADMIN_TOKEN, HRIS_TOKEN

    for token, status in ((HRIS_TOKEN, 403), (ADMIN_TOKEN, 403), ("not-a-token-at-all-0000", 401)):
        answer = await scim.call("GET", "/Users", token=token)
        assert (answer.status, answer.body["schemas"]) == (status, [ERROR_SCHEMA]), token
        assert answer.headers["Content-Type"].startswith(SCIM_JSON)
    async with scim.http.get(f"{scim.url}/scim/v2/Users") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await response.json(content_type=None))["schemas"] == [ERROR_SCHEMA]


async def test_link_authority_applies_as_for_v1_events(scim: Scim, redis: Redis) -> None:
    """A vendor id for an instance outside the source's allowed targets is 403; under
    link_mode create, another id for an existing link is 409 and nothing is written."""
    restricted = scim.as_source(RESTRICTED_TOKEN)
    outside = await restricted.call(
        "POST",
        "/Users",
        {"userName": "ken@example.com", LINKS: {"links": {"plaspy": "usr-12345"}}},
    )
    assert (outside.status, outside.body["schemas"]) == (403, [ERROR_SCHEMA])
    assert await redis.keys(keys.scim_users("restricted")) == []
    created = await restricted.create("ken@example.com", **{LINKS: {"links": {"fleet-eu": "42"}}})
    user_id = created.body["id"]
    links = await redis.hgetall(keys.links(f"scim:restricted:{user_id}"))
    assert links == {b"fleet-eu": b"42"}
    moved = await restricted.patch(
        user_id, {"op": "replace", "path": f"{LINKS}:links.fleet-eu", "value": "43"}
    )
    assert (moved.status, moved.body["schemas"]) == (409, [ERROR_SCHEMA])
    read = await restricted.call("GET", f"/Users/{user_id}")
    assert read.headers["ETag"] == 'W/"1"'
    assert read.body[LINKS]["links"] == {"fleet-eu": "42"}


async def test_a_new_link_alone_brings_the_vendor_up_to_date(
    scim: Scim, sandbox: Sandbox, worker: None
) -> None:
    """Adding a vendor id (nothing else) sends that vendor the user's current values."""
    created = await scim.create(
        "barbara@example.com", name={"givenName": "Barbara", "familyName": "Liskov"}
    )
    user_id = created.body["id"]
    await Gateway(scim.url, scim.http).wait_final(f"scim:{user_id}:1", token=OKTA_TOKEN)
    linked = await scim.patch(
        user_id, {"op": "add", "path": f"{LINKS}:links.fleet-eu", "value": FLEET_ID}
    )
    assert linked.status == 200, linked.body
    status = await Gateway(scim.url, scim.http).wait_final(f"scim:{user_id}:2", token=OKTA_TOKEN)
    assert list(status["targets"]) == ["fleet-eu"]
    assert (await sandbox.requests("fleet"))[-1]["body"] == {
        "first_name": "Barbara",
        "last_name": "Liskov",
    }


async def test_password_is_write_only_and_sealed(scim: Scim, redis: Redis) -> None:
    """A password is never answered, is stored sealed, and setting it to the same value again
    is no change."""
    created = await scim.create("margaret@example.com", password="Apollo-11-guidance")
    user_id = created.body["id"]
    assert "password" not in created.body
    stored = await redis.hget(keys.scim_user("okta", user_id), keys.SCIM_RESOURCE)
    assert stored is not None and b"Apollo" not in stored and b"enc:v1:" in stored
    same = await scim.patch(
        user_id, {"op": "replace", "path": "password", "value": "Apollo-11-guidance"}
    )
    assert (same.status, same.headers["ETag"], "password" in same.body) == (200, 'W/"1"', False)
    changed = await scim.patch(user_id, {"op": "replace", "value": {"password": "Saturn-V"}})
    assert changed.headers["ETag"] == 'W/"2"'
    event = orjson.loads(await redis.hget(keys.event("okta", f"scim:{user_id}:2"), keys.EVENT_BODY))
    assert set(event["changes"]) == {"password"}
    assert event["changes"]["password"].startswith("enc:v1:")
    listed = await scim.call("GET", "/Users?attributes=password,userName")
    assert all("password" not in user for user in listed.body["Resources"])


async def test_lists_page_and_filter(scim: Scim) -> None:
    """startIndex and count page the source's users in creation order; filters with `and`,
    `co` and a multi-valued attribute select; count above the maximum is lowered."""
    for n in range(5):
        await scim.create(
            f"user{n}@example.com",
            title="Engineer" if n % 2 else "Analyst",
            emails=[{"value": f"user{n}@corp.example", "type": "work"}],
        )
    page = await scim.call("GET", "/Users?startIndex=2&count=2")
    assert (page.body["totalResults"], page.body["startIndex"], page.body["itemsPerPage"]) == (
        5,
        2,
        2,
    )
    assert [u["userName"] for u in page.body["Resources"]] == [
        "user1@example.com",
        "user2@example.com",
    ]
    both = "/Users?filter=" + quote('title eq "Engineer" and emails.value co "user3"')
    assert [u["userName"] for u in (await scim.call("GET", both)).body["Resources"]] == [
        "user3@example.com"
    ]
    pinned = "/Users?filter=" + quote('userName eq "USER4@example.com" and title eq "Analyst"')
    assert [u["userName"] for u in (await scim.call("GET", pinned)).body["Resources"]] == [
        "user4@example.com"
    ]
    assert (await scim.call("GET", "/Users?count=100000")).body["itemsPerPage"] == 5
    only = await scim.call("GET", "/Users?attributes=userName&count=1")
    assert set(only.body["Resources"][0]) == {"id", "schemas", "userName"}


async def test_concurrent_writes_of_one_user_all_land(scim: Scim, redis: Redis) -> None:
    """Twenty different PATCHes of one user sent at once all succeed, each its own version and
    event: none lost, none refused."""
    user_id = (await scim.create("concurrent@example.com")).body["id"]
    answers = await asyncio.gather(
        *(
            scim.patch(user_id, {"op": "Replace", "path": "title", "value": f"T{n}"})
            for n in range(20)
        )
    )
    assert [answer.status for answer in answers] == [200] * 20
    assert sorted(int(a.headers["ETag"][3:-1]) for a in answers) == list(range(2, 22))
    assert len(await _event_ids(redis, "okta")) == 21


async def test_a_renamed_user_is_found_by_its_new_name_only(scim: Scim) -> None:
    """A path-less rename moves the userName: the new name finds the user, the old one is free
    for another user."""
    user_id = (await scim.create("old.name@example.com")).body["id"]
    renamed = await scim.patch(
        user_id, {"op": "replace", "value": {"userName": "New.Name@example.com"}}
    )
    assert (renamed.status, renamed.body["userName"]) == (200, "New.Name@example.com")
    found = await scim.call("GET", "/Users?filter=" + quote('userName eq "new.name@example.com"'))
    assert [user["id"] for user in found.body["Resources"]] == [user_id]
    gone = await scim.call("GET", "/Users?filter=" + quote('userName eq "old.name@example.com"'))
    assert gone.body["totalResults"] == 0
    assert (await scim.create("old.name@example.com")).body["id"] != user_id
