"""MileApp simulator: PATCH /mileapp/api/v3/user, strict body, status:false failures."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import DEMO_USERS, TOKENS, Sim

USER = DEMO_USERS["mileapp"]


async def test_valid_patch_updates_user_and_answers_full_property(sim: Sim) -> None:
    """A valid body is accepted: status true, the full user, and the stored user changed."""
    body = {"_id": USER, "name": "Ada Lovelace", "email": "ada@mile.app", "phoneNumber": "+628123"}
    answer = await sim.vendor("mileapp", body)
    assert answer.status == 200
    assert answer.body["status"] is True
    assert answer.body["message"] == "Data has been updated successfully."
    prop = answer.body["property"]
    assert prop["_id"] == USER
    assert (prop["name"], prop["email"], prop["phoneNumber"]) == (
        "Ada Lovelace",
        "ada@mile.app",
        "+628123",
    )
    for key in ("status", "updatedTime", "createdTime", "organizationId", "roleId"):
        assert key in prop
    stored = await sim.user("mileapp")
    assert stored["email"] == "ada@mile.app"
    assert stored["updatedTime"] != "2024-06-18T04:42:04+00:00"


async def test_partial_patch_leaves_other_fields(sim: Sim) -> None:
    """Only the given fields change."""
    await sim.vendor("mileapp", {"_id": USER, "email": "new@mile.app"})
    stored = await sim.user("mileapp")
    assert stored["name"] == "Example"
    assert stored["email"] == "new@mile.app"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_bad_or_missing_auth_is_401(sim: Sim, token: str | None) -> None:
    """Missing or unknown bearer token: 401 with the failure shape, user unchanged."""
    answer = await sim.vendor("mileapp", token=token)
    assert answer.status == 401
    assert answer.body["status"] is False
    assert answer.body["userId"] == 401
    assert (await sim.user("mileapp"))["name"] == "Example"


async def test_non_bearer_scheme_is_401(sim: Sim) -> None:
    """The token must come as `Bearer`, not another scheme."""
    answer = await sim.request(
        "PATCH",
        "/mileapp/api/v3/user",
        body={"_id": USER, "name": "X"},
        headers={"Authorization": f"Token {TOKENS['mileapp']}"},
    )
    assert answer.status == 401


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"_id": USER, "nickname": "x"}, "nickname field is not allowed"),
        ({"_id": USER, "first_name": "Ada"}, "first_name field is not allowed"),
        ({"_id": USER, "name": None}, "name field must be a string"),
        ({"_id": USER, "email": None}, "email field must be a string"),
        ({"_id": USER, "phoneNumber": None}, "phoneNumber field must be a string"),
        ({"_id": USER, "name": 42}, "name field must be a string"),
        ({"_id": USER, "email": "not-an-email"}, "valid email"),
        ({"_id": USER, "phoneNumber": "0812 345"}, "E.164"),
        ({"_id": USER, "phoneNumber": "+0123"}, "E.164"),
        ({"name": "Ada"}, "_id field is required"),
        ({"_id": 65, "name": "Ada"}, "_id field must be"),
        ({"_id": USER, "name": "  "}, "must not be empty"),
    ],
)
async def test_schema_refusals_are_400_status_false(sim: Sim, body: Any, words: str) -> None:
    """Unknown keys, nulls, wrong types, bad email/phone, missing _id: 400 status false."""
    answer = await sim.vendor("mileapp", body)
    assert answer.status == 400
    assert answer.body["status"] is False
    assert answer.body["userId"] == 400
    assert words in answer.body["message"]
    stored = await sim.user("mileapp")
    assert stored["name"] == "Example"
    assert stored["phoneNumber"] is None


async def test_body_not_an_object_is_refused(sim: Sim) -> None:
    """A JSON array is not a patchUserRequest."""
    answer = await sim.vendor("mileapp", [{"_id": USER}])
    assert answer.status == 400
    assert answer.body["status"] is False


async def test_unknown_id_is_404_status_false(sim: Sim) -> None:
    """An `_id` the sandbox does not know: 404 with status false."""
    answer = await sim.vendor("mileapp", {"_id": "000000000000000000000000", "name": "X"})
    assert answer.status == 404
    assert answer.body["status"] is False


async def test_not_json_body_is_400(sim: Sim) -> None:
    """A body that is not JSON: 400 in MileApp's failure shape."""
    answer = await sim.vendor(
        "mileapp", data=b"{name: oops", headers={"Content-Type": "application/json"}
    )
    assert answer.status == 400
    assert answer.body["status"] is False


async def test_wrong_content_type_is_415(sim: Sim) -> None:
    """Only application/json bodies are read."""
    answer = await sim.vendor(
        "mileapp", data=b'{"_id": "x", "name": "y"}', headers={"Content-Type": "text/plain"}
    )
    assert answer.status == 415
    assert answer.body["status"] is False


async def test_id_in_path_is_not_a_route(sim: Sim) -> None:
    """The documented path has no id: PATCH /user/{id} is a 404, journaled."""
    answer = await sim.request(
        "PATCH",
        f"/mileapp/api/v3/user/{USER}",
        body={"name": "x"},
        headers={"Authorization": f"Bearer {TOKENS['mileapp']}"},
    )
    assert answer.status == 404
    assert answer.body["status"] is False
    assert (await sim.journal("mileapp"))[-1]["status"] == 404


async def test_other_method_is_405(sim: Sim) -> None:
    """GET on the PATCH-only path is refused with 405."""
    answer = await sim.request("GET", "/mileapp/api/v3/user")
    assert answer.status == 405
