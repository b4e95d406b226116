"""Partoo simulator: POST /partoo/v2/user/{user_id}, patch semantics, x-APIKey."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import DEMO_USERS, TOKENS, Sim

USER = DEMO_USERS["partoo"]


async def test_valid_update_changes_only_given_fields(sim: Sim) -> None:
    """A valid body: 200 {"id", "status": "success"}; only the given keys change."""
    body = {
        "email": "perceval@example.com",
        "role": "ORG_ADMIN",
        "lang": "pt-br",
        "disabled": True,
        "business_ids": ["b2", "b3"],
        "accesses": [[1, 2], [3]],
        "sidebar_pages": ["posts", "messages"],
        "status": "invited",
        "org_id": 7,
        "sso_only": True,
        "receive_reviews_email_notifications": True,
        "custom_role": "my_custom_role",
    }
    answer = await sim.vendor("partoo", body)
    assert answer.status == 200
    assert answer.body == {"id": USER, "status": "success"}
    stored = await sim.user("partoo")
    for key, value in body.items():
        assert stored[key] == value
    assert stored["first_name"] == "Perceval"


async def test_password_meeting_policy_is_stored_as_flag(sim: Sim) -> None:
    """A policy-compliant password is accepted and kept only as password_set."""
    answer = await sim.vendor("partoo", {"password": "Kaamel0tt!"})
    assert answer.status == 200
    stored = await sim.user("partoo")
    assert stored["password_set"] is True
    assert "Kaamel0tt!" not in str(stored)
    assert "Kaamel0tt!" not in answer.text


@pytest.mark.parametrize(
    "password", ["Sh0rt!", "alllower1!", "ALLUPPER1!", "NoSpecial12", "", "Aa!" * 2]
)
async def test_password_policy_is_enforced(sim: Sim, password: str) -> None:
    """Under 8 characters, missing a case, or no special character: 400 on password."""
    answer = await sim.vendor("partoo", {"password": password})
    assert answer.status == 400
    assert answer.body["errors"]["json"]["password"]
    assert (await sim.user("partoo"))["password_set"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nickname": "x"}, "nickname"),
        ({"phone": "+33123"}, "phone"),
        ({"first_name": None}, "first_name"),
        ({"email": None}, "email"),
        ({"disabled": None}, "disabled"),
        ({"email": "nope"}, "email"),
        ({"first_name": 3}, "first_name"),
        ({"org_id": "42"}, "org_id"),
        ({"org_id": True}, "org_id"),
        ({"accesses": [1, 2]}, "accesses"),
        ({"accesses": [["1"]]}, "accesses"),
        ({"business_ids": "b1"}, "business_ids"),
        ({"business_ids": [1]}, "business_ids"),
        ({"role": "PROVIDER"}, "role"),
        ({"role": "org_admin"}, "role"),
        ({"status": "disabled"}, "status"),
        ({"lang": "pt-BR"}, "lang"),
        ({"lang": "ja"}, "lang"),
        ({"sidebar_pages": ["dashboard"]}, "sidebar_pages"),
        ({"disabled": "true"}, "disabled"),
        ({"sso_only": 1}, "sso_only"),
        ({"receive_reviews_email_notifications": "yes"}, "receive_reviews_email_notifications"),
    ],
)
async def test_schema_refusals_are_400_with_field_errors(
    sim: Sim, body: dict[str, Any], field: str
) -> None:
    """Unknown keys, nulls, wrong types and bad enums: 400 errors.json.<field>, no change."""
    before = await sim.user("partoo")
    answer = await sim.vendor("partoo", body)
    assert answer.status == 400
    messages = answer.body["errors"]["json"][field]
    assert isinstance(messages, list)
    assert messages
    assert await sim.user("partoo") == before


async def test_body_not_an_object_is_400(sim: Sim) -> None:
    """A JSON array is refused with a _schema error."""
    answer = await sim.vendor("partoo", [{"first_name": "x"}])
    assert answer.status == 400
    assert answer.body["errors"]["json"]["_schema"]


@pytest.mark.parametrize("headers", [{}, {"x-APIKey": "wrong"}])
async def test_bad_or_missing_key_is_401(sim: Sim, headers: dict[str, str]) -> None:
    """Missing or unknown x-APIKey: 401 {"errors": {"authentication": ...}}."""
    answer = await sim.vendor("partoo", token=None, headers=headers)
    assert answer.status == 401
    assert answer.body == {"errors": {"authentication": "User not authenticated"}}


async def test_bearer_is_not_partoo_auth(sim: Sim) -> None:
    """Partoo reads x-APIKey, not Authorization: Bearer."""
    answer = await sim.vendor(
        "partoo", token=None, headers={"Authorization": f"Bearer {TOKENS['partoo']}"}
    )
    assert answer.status == 401


async def test_unknown_user_is_404(sim: Sim) -> None:
    """An unknown user: 404 {"errors": {"json": "Resource not found"}}."""
    answer = await sim.vendor("partoo", user_id="000000000000000000000000")
    assert answer.status == 404
    assert answer.body == {"errors": {"json": "Resource not found"}}


async def test_not_json_body_is_400(sim: Sim) -> None:
    """A body that is not JSON: 400 in Partoo's errors shape."""
    answer = await sim.vendor(
        "partoo", data=b"\xff\xfe", headers={"Content-Type": "application/json"}
    )
    assert answer.status == 400
    assert "json" in answer.body["errors"]


async def test_patch_method_is_not_partoo(sim: Sim) -> None:
    """Partoo's update is a POST: PATCH on the same path is a 405."""
    answer = await sim.request(
        "PATCH", f"/partoo/v2/user/{USER}", body={}, headers={"x-APIKey": TOKENS["partoo"]}
    )
    assert answer.status == 405
