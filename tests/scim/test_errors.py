"""Every bad input is a SCIM error (`urn:ietf:params:scim:api:messages:2.0:Error`, the status
as a string, the scimType RFC 7644 Table 9 gives), in `application/scim+json`, nothing
written; never a 500."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from redis.asyncio import Redis

from core import keys
from tests.conftest import stored_keys
from tests.scim.conftest import ERROR_SCHEMA, LINKS, SCIM_JSON, USER_SCHEMA, Scim


def _assert_error(answer: Any, status: int, scim_type: str | None) -> None:
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"].startswith(SCIM_JSON)
    assert answer.body["schemas"] == [ERROR_SCHEMA]
    assert answer.body["status"] == str(status)
    assert answer.body.get("scimType") == scim_type, answer.body
    assert answer.body["detail"]


CREATE_REFUSALS: list[tuple[str, bytes, int, str | None]] = [
    ("malformed JSON", b'{"userName": "a",', 400, "invalidSyntax"),
    ("not an object", b'["userName"]', 400, "invalidSyntax"),
    ("unknown attribute", b'{"userName": "a", "shoeSize": 44}', 400, "invalidSyntax"),
    ("wrong type: userName", b'{"userName": 5}', 400, "invalidValue"),
    ("wrong type: active", b'{"userName": "a", "active": "maybe"}', 400, "invalidValue"),
    ("wrong type: emails", b'{"userName": "a", "emails": "a@example.com"}', 400, "invalidValue"),
    ("missing userName", b'{"name": {"givenName": "A"}}', 400, "invalidValue"),
    (
        "unknown vendor instance in links",
        b'{"userName": "a", "' + LINKS.encode() + b'": {"links": {"nowhere": "1"}}}',
        400,
        "invalidSyntax",
    ),
    ("ciphertext as password", b'{"userName": "a", "password": "enc:v1:abc"}', 400, "invalidValue"),
]


@pytest.mark.parametrize(
    ("what", "body", "status", "scim_type"), CREATE_REFUSALS, ids=[c[0] for c in CREATE_REFUSALS]
)
async def test_a_bad_create_is_a_scim_error(
    scim: Scim, redis: Redis, what: str, body: bytes, status: int, scim_type: str | None
) -> None:
    """A create the SCIM schema refuses is a 400 with its scimType, and nothing is stored."""
    _assert_error(await scim.call("POST", "/Users", raw=body), status, scim_type)
    assert await redis.keys(keys.scim_users("okta")) == []
    assert [key for key in await stored_keys(redis) if b":event:" in key] == []


PATCH_REFUSALS: list[tuple[str, list[dict[str, Any]], int, str]] = [
    ("unknown op", [{"op": "frobnicate", "path": "title", "value": "x"}], 400, "invalidValue"),
    ("unknown path", [{"op": "replace", "path": "shoeSize", "value": 44}], 400, "invalidPath"),
    (
        "malformed path",
        [{"op": "replace", "path": "emails[type eq", "value": "x"}],
        400,
        "invalidPath",
    ),
    ("read-only path", [{"op": "replace", "path": "id", "value": "x"}], 400, "mutability"),
    ("remove without path", [{"op": "remove"}], 400, "noTarget"),
    ("wrong type", [{"op": "replace", "path": "active", "value": "perhaps"}], 400, "invalidValue"),
    ("no operations", [], 400, "invalidValue"),
]


@pytest.mark.parametrize(
    ("what", "operations", "status", "scim_type"),
    PATCH_REFUSALS,
    ids=[c[0] for c in PATCH_REFUSALS],
)
async def test_a_bad_patch_is_a_scim_error(
    scim: Scim, what: str, operations: list[dict[str, Any]], status: int, scim_type: str
) -> None:
    """A PATCH the RFC refuses is a 400 with its scimType; the resource is unchanged."""
    user_id = (await scim.create("ada@example.com")).body["id"]
    _assert_error(await scim.patch(user_id, *operations), status, scim_type)
    assert (await scim.call("GET", f"/Users/{user_id}")).headers["ETag"] == 'W/"1"'


@pytest.mark.parametrize(
    ("query", "scim_type"),
    [
        ("userName eq", "invalidFilter"),
        ('userName zz "a"', "invalidFilter"),
        ('shoeSize eq "44"', "invalidFilter"),
        ("active gt true", "invalidFilter"),
    ],
)
async def test_a_bad_filter_is_invalid_filter(scim: Scim, query: str, scim_type: str) -> None:
    """A filter that does not parse, names an unknown attribute or an operator its type has
    not is 400 invalidFilter."""
    _assert_error(await scim.call("GET", "/Users?filter=" + quote(query)), 400, scim_type)


async def test_paging_parameters_must_be_numbers(scim: Scim) -> None:
    """A startIndex or count that is no integer is 400 invalidValue."""
    _assert_error(await scim.call("GET", "/Users?count=many"), 400, "invalidValue")
    _assert_error(await scim.call("GET", "/Users?startIndex=first"), 400, "invalidValue")


async def test_transport_refusals_are_scim_errors(scim: Scim, redis: Redis) -> None:
    """A huge body is 413, a body not declared JSON 415, an unknown path 404 and a method a
    path lacks 405: SCIM errors all, nothing stored."""
    huge = b'{"userName": "a", "title": "' + b"x" * 10_000 + b'"}'
    _assert_error(await scim.call("POST", "/Users", raw=huge), 413, None)
    _assert_error(
        await scim.call("POST", "/Users", raw=b"userName=a", content_type="text/plain"), 415, None
    )
    _assert_error(await scim.call("GET", "/Groups"), 404, None)
    _assert_error(await scim.call("GET", "/Users/not-a-uuid"), 404, None)
    _assert_error(await scim.call("POST", "/Users/0b5f7f9e-0000-4000-8000-000000000000"), 405, None)
    assert await redis.keys(keys.scim_users("okta")) == []


async def test_both_media_types_are_taken(scim: Scim) -> None:
    """A body sent as application/json is read as one sent as application/scim+json."""
    body = {"schemas": [USER_SCHEMA], "userName": "plain@example.com"}
    answer = await scim.call("POST", "/Users", body, content_type="application/json")
    assert answer.status == 201
    assert answer.headers["Content-Type"].startswith(SCIM_JSON)


async def test_a_taken_user_name_is_uniqueness(scim: Scim) -> None:
    """A second user of the same source with the same userName (in any case) is 409
    uniqueness, on create and on rename."""
    await scim.create("ada@example.com")
    other = (await scim.create("grace@example.com")).body["id"]
    clash = {"schemas": [USER_SCHEMA], "userName": "ADA@example.com"}
    _assert_error(await scim.call("POST", "/Users", clash), 409, "uniqueness")
    renamed = await scim.patch(
        other, {"op": "replace", "path": "userName", "value": "Ada@Example.com"}
    )
    _assert_error(renamed, 409, "uniqueness")


async def test_a_patch_body_of_the_wrong_shape_is_a_scim_error(scim: Scim) -> None:
    """`Operations` that is not a list (found by schemathesis: it was a 500) is a 400."""
    user_id = (await scim.create("ada@example.com")).body["id"]
    body = b'{"Operations": -3.5, "schemas": [1.5, 2]}'
    answer = await scim.call("PATCH", f"/Users/{user_id}", raw=body)
    assert answer.status == 400, answer.body
    assert answer.body["schemas"] == [ERROR_SCHEMA]
