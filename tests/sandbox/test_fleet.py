"""Fleet simulator: PATCH /fleet/api/users/{user_id} against PatchUserBody, strictly."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Sim, sandbox_app

REQUIRED = {
    "id",
    "company_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "phone_country",
    "language",
    "position",
    "role",
    "arrival_date",
    "departure_date",
    "date_of_birth",
    "city_of_birth",
    "country_of_birth",
}


async def test_valid_patch_answers_get_user_response(sim: Sim) -> None:
    """A valid partial body: 200 {"data"} with every required GetUserResponse property."""
    body = {"email": "augusta@example.com", "position": "Analyst", "role": "ADMIN"}
    answer = await sim.vendor("fleet", body)
    assert answer.status == 200
    data = answer.body["data"]
    assert set(data) == REQUIRED
    assert data["id"] == 42
    assert isinstance(data["company_id"], int)
    assert (data["email"], data["position"], data["role"]) == (
        "augusta@example.com",
        "Analyst",
        "ADMIN",
    )
    stored = await sim.user("fleet", "42")
    assert stored["role"] == "ADMIN"
    assert stored["first_name"] == "Ada"


async def test_null_clears_nullable_fields(sim: Sim) -> None:
    """null clears a nullable field."""
    answer = await sim.vendor("fleet", {"phone": None, "date_of_birth": None})
    assert answer.status == 200
    assert answer.body["data"]["phone"] is None
    assert (await sim.user("fleet", "42"))["date_of_birth"] is None


async def test_phone_spaces_are_removed(sim: Sim) -> None:
    """The server removes spaces from `phone`."""
    answer = await sim.vendor("fleet", {"phone": "+33 1 23 45 67 89"})
    assert answer.body["data"]["phone"] == "+33123456789"


async def test_password_is_never_echoed_and_null_does_not_clear(sim: Sim) -> None:
    """A non-empty password sets a flag only; null leaves it set; it is never echoed."""
    answer = await sim.vendor("fleet", {"password": "hunter2"})
    assert answer.status == 200
    assert "password" not in answer.body["data"]
    assert "hunter2" not in answer.text
    stored = await sim.user("fleet", "42")
    assert stored["password_set"] is True
    assert "hunter2" not in str(stored)
    await sim.vendor("fleet", {"password": None})
    assert (await sim.user("fleet", "42"))["password_set"] is True


@pytest.mark.parametrize("token", [None, "flt_sk_wrong", "sk_live_something"])
async def test_bad_or_missing_key_is_401(sim: Sim, token: str | None) -> None:
    """Missing, unknown, or non-flt_sk_ keys: 401 with a JSON error."""
    answer = await sim.vendor("fleet", token=token)
    assert answer.status == 401
    assert answer.body["error"]["code"] == "unauthorized"


def test_non_fleet_key_is_refused_at_creation() -> None:
    """An accepted Fleet key must start with flt_sk_: anything else is a config mistake."""
    with pytest.raises(ValueError, match="flt_sk_"):
        sandbox_app({"fleet": {"not-a-fleet-key"}})


@pytest.mark.parametrize("user_id", ["0", "042", "abc", "-1", "4 2", "1.5"])
async def test_user_id_format_is_checked(sim: Sim, user_id: str) -> None:
    """A user_id not matching ^[1-9]\\d*$ is a 400 naming the pattern."""
    answer = await sim.vendor("fleet", user_id=user_id)
    assert answer.status == 400
    assert answer.body["error"]["code"] == "bad_request"
    assert "^[1-9]" in answer.body["error"]["message"]


async def test_unknown_user_is_404(sim: Sim) -> None:
    """A well-formed id the sandbox does not know: 404."""
    answer = await sim.vendor("fleet", user_id="999")
    assert answer.status == 404
    assert answer.body["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nickname": "x"}, "nickname"),
        ({"phone_number": "+33123"}, "phone_number"),
        ({"email": None}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": 42}, "email"),
        ({"first_name": 42}, "first_name"),
        ({"role": "OWNER"}, "role"),
        ({"role": None}, "role"),
        ({"arrival_date": "15/01/2024"}, "arrival_date"),
        ({"departure_date": "2026-02-30"}, "departure_date"),
        ({"date_of_birth": "1990-05-21T00:00:00Z"}, "date_of_birth"),
        ({"password": 12345}, "password"),
    ],
)
async def test_schema_violations_are_422(sim: Sim, body: Any, field: str) -> None:
    """Unknown keys, wrong types, null email or role, bad enum or date: 422 naming the field."""
    answer = await sim.vendor("fleet", body)
    assert answer.status == 422
    error = answer.body["error"]
    assert error["code"] == "validation_error"
    assert field in {detail["field"] for detail in error["details"]}
    stored = await sim.user("fleet", "42")
    assert stored["email"] == "ada@example.com"
    assert stored["role"] == "EMPLOYEE"


async def test_one_bad_field_refuses_the_whole_body(sim: Sim) -> None:
    """A body with one bad field changes nothing."""
    answer = await sim.vendor("fleet", {"first_name": "Zed", "role": "BOSS"})
    assert answer.status == 422
    assert (await sim.user("fleet", "42"))["first_name"] == "Ada"


async def test_body_not_an_object_is_422(sim: Sim) -> None:
    """A JSON array is not a PatchUserBody."""
    answer = await sim.vendor("fleet", [{"first_name": "x"}])
    assert answer.status == 422


async def test_email_of_another_user_is_409(sim: Sim) -> None:
    """An email that belongs to another user cannot be taken."""
    await sim.put_user("fleet", "7", {"email": "taken@example.com"})
    answer = await sim.vendor("fleet", {"email": "TAKEN@example.com"})
    assert answer.status == 409
    same = await sim.vendor("fleet", {"email": "ada@example.com"})
    assert same.status == 200


async def test_not_json_body_is_400(sim: Sim) -> None:
    """A body that is not JSON: 400 with a JSON error."""
    answer = await sim.vendor(
        "fleet", data=b"first_name=Ada", headers={"Content-Type": "application/json"}
    )
    assert answer.status == 400
    assert answer.body["error"]["code"] == "bad_request"
