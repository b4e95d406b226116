"""Entra ID's and Okta's request sequences, as their public documentation shows them, reach the
sandbox vendors as the right calls (real gateway, worker and sandbox).

Entra ID ("Tutorial: Develop and plan provisioning for a SCIM endpoint in Microsoft Entra ID",
User operations; and its SCIM compatibility notes): lookup by `filter=userName eq`, create with
the enterprise schema and `meta`, PATCH with capitalised ops, filtered and dotted paths, an
`Add` on a phone entry it does not have yet, `"False"` as a string, then DELETE. Okta ("Okta
and SCIM Version 2.0", SCIM User operations): lookup with `startIndex=1&count=100`, create with
a password, `groups: []` and `locale`, replace with PUT, deactivate with a path-less
`{"op": "replace", "value": {"active": false}}`. Okta's examples use `okta.local` addresses, a
special-use domain that email validation refuses (the SCIM models' and the canonical schema's
alike): the transcription uses `okta.example.com`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
import pytest
from redis.asyncio import Redis

from config.settings import Settings
from core import keys
from tests.conftest import USER_IDS, Gateway, Sandbox, make_settings
from tests.scim.conftest import (
    ENTRA_TOKEN,
    LINKS,
    OKTA_TOKEN,
    PATCH_SCHEMA,
    USER_SCHEMA,
    Scim,
    scim_sources,
)
from usersync.redis_server import EmbeddedRedis

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
FLEET_ID = USER_IDS["fleet-eu"]
PLASPY_ID = USER_IDS["plaspy"]


@pytest.fixture
def settings(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    """The identity providers may target Fleet and Plaspy (their demo users are linked)."""
    sources = scim_sources()
    for source in sources:
        if source.get("scim"):
            source["allowed_targets"] = ["fleet-eu", "plaspy"]
    return make_settings(redis_server.url, sandbox.url, sources=sources)


def _filter(user_name: str) -> str:
    return "?filter=" + quote(f'userName eq "{user_name}"')


async def _delivered(scim: Scim, event_id: str, token: str) -> dict[str, Any]:
    """The event's final status, every target delivered."""
    status = await Gateway(scim.url, scim.http).wait_final(event_id, token=token)
    assert {t["status"] for t in status["targets"].values()} == {"delivered"}, status
    return status


async def _stored_event(redis: Redis, source: str, event_id: str) -> dict[str, Any]:
    raw = await redis.hget(keys.event(source, event_id), keys.EVENT_BODY)
    assert raw is not None
    return dict(orjson.loads(raw))


async def _last_body(sandbox: Sandbox, kind: str) -> Any:
    requests = await sandbox.requests(kind)
    assert requests, kind
    return requests[-1]["body"]


async def test_entra_id_sequence(scim: Scim, sandbox: Sandbox, redis: Redis, worker: None) -> None:
    """Entra ID's lookup, create, PATCHes (Replace/Add, filtered paths, "False") and DELETE
    each reach Fleet and Plaspy as the calls they mean; deactivation is user.deactivated."""
    entra = scim.as_source(ENTRA_TOKEN)
    user_name = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@testuser.com"
    found = await entra.call("GET", "/Users" + _filter(user_name))
    assert (found.status, found.body["totalResults"], found.body["Resources"]) == (200, 0, [])

    created = await entra.call(
        "POST",
        "/Users",
        {
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": user_name,
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": "test.user@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {
                "formatted": "givenName familyName",
                "familyName": "Family",
                "givenName": "Given",
            },
            "roles": [],
            ENTERPRISE: {"employeeNumber": "99887766", "department": "Provisioning"},
            LINKS: {"links": {"fleet-eu": FLEET_ID, "plaspy": PLASPY_ID}},
        },
    )
    assert created.status == 201, created.body
    user_id = created.body["id"]
    assert created.headers["ETag"] == 'W/"1"'
    assert created.body["meta"]["version"] == 'W/"1"'
    await _delivered(scim, f"scim:{user_id}:1", ENTRA_TOKEN)
    fleet = await _last_body(sandbox, "fleet")
    assert fleet == {
        "email": "test.user@testuser.com",
        "first_name": "Given",
        "last_name": "Family",
    }

    found = await entra.call("GET", "/Users" + _filter(user_name.upper()))
    assert [user["id"] for user in found.body["Resources"]] == [user_id]

    patched = await entra.call(
        "PATCH",
        f"/Users/{user_id}",
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {
                    "op": "Replace",
                    "path": 'emails[type eq "work"].value',
                    "value": "updatedEmail@testuser.com",
                },
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            ],
        },
    )
    assert patched.status == 200, patched.body
    await _delivered(scim, f"scim:{user_id}:2", ENTRA_TOKEN)
    assert await _last_body(sandbox, "fleet") == {
        "email": "updatedEmail@testuser.com",
        "last_name": "updatedFamilyName",
    }

    added = await entra.call(
        "PATCH",
        f"/Users/{user_id}",
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "Add", "path": 'phoneNumbers[type eq "work"].value', "value": "+1 555 0100"},
                {"op": "Add", "path": "title", "value": "Engineer"},
            ],
        },
    )
    assert added.status == 200, added.body
    assert added.body["phoneNumbers"] == [{"type": "work", "value": "+1 555 0100"}]
    await _delivered(scim, f"scim:{user_id}:3", ENTRA_TOKEN)
    assert await _last_body(sandbox, "fleet") == {"phone": "+15550100", "position": "Engineer"}

    disabled = await entra.call(
        "PATCH",
        f"/Users/{user_id}",
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        },
    )
    assert (disabled.status, disabled.body["active"]) == (200, False)
    event = await _stored_event(redis, "entra", f"scim:{user_id}:4")
    assert (event["type"], event["changes"], event["user"]["version"]) == (
        "user.deactivated",
        {"active": False},
        4,
    )
    status = await Gateway(scim.url, scim.http).wait_final(f"scim:{user_id}:4", token=ENTRA_TOKEN)
    assert status["targets"]["plaspy"]["status"] == "delivered"
    assert status["targets"]["fleet-eu"]["status"] == "skipped"  # Fleet has no `active`
    assert await _last_body(sandbox, "plaspy") == [
        {"op": "add", "path": "/disabled", "value": True}
    ]

    deleted = await entra.call("DELETE", f"/Users/{user_id}")
    assert deleted.status == 204
    event = await _stored_event(redis, "entra", f"scim:{user_id}:5")
    assert (event["type"], event["changes"]) == ("user.deactivated", {"active": False})
    gone = await entra.call("GET", f"/Users/{user_id}")
    assert gone.status == 404
    assert (await entra.call("GET", "/Users" + _filter(user_name))).body["totalResults"] == 0


async def test_okta_sequence(scim: Scim, sandbox: Sandbox, redis: Redis, worker: None) -> None:
    """Okta's lookup, create with a password, PUT replace and path-less deactivation reach
    Fleet and Plaspy as the calls they mean (the password reaches them, never an answer)."""
    okta = scim.as_source(OKTA_TOKEN)
    found = await okta.call(
        "GET", "/Users" + _filter("test.user@okta.example.com") + "&startIndex=1&count=100"
    )
    assert (found.status, found.body["totalResults"]) == (200, 0)

    created = await okta.call(
        "POST",
        "/Users",
        {
            "schemas": [USER_SCHEMA],
            "userName": "test.user@okta.example.com",
            "name": {"givenName": "Test", "familyName": "User"},
            "emails": [{"primary": True, "value": "test.user@okta.example.com", "type": "work"}],
            "displayName": "Test User",
            "locale": "en-US",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [],
            "password": "1mz050nq",
            "active": True,
            LINKS: {"links": {"fleet-eu": FLEET_ID, "plaspy": PLASPY_ID}},
        },
    )
    assert created.status == 201, created.body
    assert "password" not in created.body
    user_id = created.body["id"]
    await _delivered(scim, f"scim:{user_id}:1", OKTA_TOKEN)
    fleet = await _last_body(sandbox, "fleet")
    assert fleet == {
        "email": "test.user@okta.example.com",
        "first_name": "Test",
        "last_name": "User",
        "language": "en-US",
        "password": "1mz050nq",
    }
    plaspy = {op["path"]: op["value"] for op in await _last_body(sandbox, "plaspy")}
    assert plaspy == {
        "/disabled": False,
        "/email": "test.user@okta.example.com",
        "/name": "Test User",
        "/password": "1mz050nq",
    }

    read = await okta.call("GET", f"/Users/{user_id}")
    assert (read.status, read.body["userName"], read.headers["ETag"]) == (
        200,
        "test.user@okta.example.com",
        'W/"1"',
    )
    assert "password" not in read.body

    replaced = await okta.call(
        "PUT",
        f"/Users/{user_id}",
        {
            "schemas": [USER_SCHEMA],
            "id": user_id,
            "userName": "test.user@okta.example.com",
            "name": {"givenName": "Another", "middleName": "Test", "familyName": "User"},
            "emails": [{"primary": True, "value": "test.user@okta.example.com", "type": "work"}],
            "displayName": "Another Test User",
            "locale": "en-US",
            "groups": [],
            "password": "t1meMa$heen",
            "active": True,
            LINKS: {"links": {"fleet-eu": FLEET_ID, "plaspy": PLASPY_ID}},
        },
    )
    assert replaced.status == 200, replaced.body
    assert replaced.headers["ETag"] == 'W/"2"'
    await _delivered(scim, f"scim:{user_id}:2", OKTA_TOKEN)
    assert await _last_body(sandbox, "fleet") == {
        "first_name": "Another",
        "password": "t1meMa$heen",
    }

    deactivated = await okta.call(
        "PATCH",
        f"/Users/{user_id}",
        {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    assert (deactivated.status, deactivated.body["active"]) == (200, False)
    event = await _stored_event(redis, "okta", f"scim:{user_id}:3")
    assert event["type"] == "user.deactivated"
    assert event["user"]["id"] == f"scim:okta:{user_id}"
    await Gateway(scim.url, scim.http).wait_final(f"scim:{user_id}:3", token=OKTA_TOKEN)
    assert await _last_body(sandbox, "plaspy") == [
        {"op": "add", "path": "/disabled", "value": True}
    ]
    stored = await redis.hget(keys.scim_user("okta", user_id), keys.SCIM_RESOURCE)
    assert stored is not None and b"t1meMa" not in stored and b"enc:v1:" in stored
