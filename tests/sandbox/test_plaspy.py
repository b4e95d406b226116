"""Plaspy simulator: PATCH /plaspy/api/users/{userId} with an RFC 6902 JSON Patch."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Sim

BAD_PATCHES: list[Any] = [
    {"op": "replace", "path": "/name", "value": "x"},
    [{"op": "rename", "path": "/name", "value": "x"}],
    [{"path": "/name", "value": "x"}],
    [{"op": "replace", "path": "name", "value": "x"}],
    [{"op": "replace", "path": "/name~2", "value": "x"}],
    [{"op": "replace", "path": "/name"}],
    [{"op": "add", "path": "/tags/a"}],
    [{"op": "test", "path": "/name"}],
    [{"op": "move", "path": "/name"}],
    [{"op": "copy", "from": "name", "path": "/description"}],
    [{"op": "replace", "path": "/id", "value": "usr-1"}],
    [{"op": "replace", "path": "/creation", "value": "2020-01-01T00:00:00Z"}],
    [{"op": "add", "path": "/nickname", "value": "x"}],
    [{"op": "replace", "path": "", "value": {}}],
    [{"op": "add", "path": "/tags/a/b", "value": "x"}],
    [{"op": "copy", "from": "/password", "path": "/description"}],
    ["replace"],
    [{"op": "replace", "path": "/disabled", "value": "yes"}],
    [{"op": "replace", "path": "/name", "value": 42}],
    [{"op": "add", "path": "/tags", "value": {"vip": 1}}],
    [{"op": "replace", "path": "/tags", "value": ["vip"]}],
    [{"op": "replace", "path": "/email", "value": "not-an-email"}],
]


async def test_seed_example_patch_is_applied(sim: Sim) -> None:
    """The seed's example patch: 200 success true, user fields and usage counters."""
    patch = [
        {"op": "replace", "path": "/email", "value": "nuevo_email@example.com"},
        {"op": "add", "path": "/tags", "value": {"vip": "true", "team": "north"}},
    ]
    answer = await sim.vendor("plaspy", patch)
    assert answer.status == 200
    assert answer.body["success"] is True
    assert answer.body["id"] == "usr-12345"
    assert answer.body["email"] == "nuevo_email@example.com"
    assert answer.body["tags"] == {"vip": "true", "team": "north"}
    assert answer.body["apiUsage"] == 1
    assert answer.body["apiDailyUsage"] >= 1
    stored = await sim.user("plaspy")
    assert stored["email"] == "nuevo_email@example.com"
    assert stored["name"] == "Juan Perez"


async def test_tag_add_and_remove_and_fields(sim: Sim) -> None:
    """/tags/{key} add and remove, booleans, and a remove of a present field."""
    patch = [
        {"op": "add", "path": "/tags/dept", "value": "ops"},
        {"op": "remove", "path": "/tags/vip"},
        {"op": "replace", "path": "/disabled", "value": True},
        {"op": "remove", "path": "/description"},
        {"op": "test", "path": "/id", "value": "usr-12345"},
    ]
    answer = await sim.vendor("plaspy", patch)
    assert answer.body["success"] is True, answer.body
    stored = await sim.user("plaspy")
    assert stored["tags"] == {"dept": "ops"}
    assert stored["disabled"] is True
    assert "description" not in stored


async def test_remove_of_a_present_field_works_once(sim: Sim) -> None:
    """Every documented field exists, so a remove works; a second remove fails."""
    first = await sim.vendor("plaspy", [{"op": "remove", "path": "/country"}])
    assert first.body["success"] is True
    second = await sim.vendor("plaspy", [{"op": "remove", "path": "/country"}])
    assert second.status == 200
    assert second.body["success"] is False


async def test_fresh_user_has_every_field(empty_sim: Sim) -> None:
    """A user created by the control API has every documented field, so removes work."""
    await empty_sim.put_user("plaspy", "usr-1", {"name": "Ana"})
    answer = await empty_sim.vendor(
        "plaspy", [{"op": "remove", "path": "/timeZone"}], user_id="usr-1"
    )
    assert answer.body["success"] is True
    assert answer.body["name"] == "Ana"


async def test_password_is_hashed_and_never_answered(sim: Sim) -> None:
    """A password set by patch is stored hashed and never appears in the answer."""
    answer = await sim.vendor(
        "plaspy", [{"op": "replace", "path": "/password", "value": "S3cret!"}]
    )
    assert answer.body["success"] is True
    assert "password" not in answer.body
    assert "S3cret!" not in answer.text
    stored = await sim.user("plaspy")
    assert stored["password"].startswith("sha256:")
    assert "S3cret!" not in str(stored)


@pytest.mark.parametrize("patch", BAD_PATCHES)
async def test_invalid_patch_is_200_success_false(sim: Sim, patch: Any) -> None:
    """An invalid patch: HTTP 200, success false, "Invalid patch operation", nothing changed."""
    before = await sim.user("plaspy")
    answer = await sim.vendor("plaspy", patch)
    assert answer.status == 200
    assert answer.body["success"] is False
    assert answer.body["error"] == "Invalid patch operation"
    assert answer.body["detail"]
    assert {"apiUsage", "apiDailyUsage"} <= answer.body.keys()
    assert await sim.user("plaspy") == before


async def test_failing_op_refuses_whole_patch_atomically(sim: Sim) -> None:
    """An op that fails to apply leaves the user as it was, earlier ops included."""
    before = await sim.user("plaspy")
    patch = [
        {"op": "replace", "path": "/name", "value": "Changed"},
        {"op": "remove", "path": "/tags/missing"},
    ]
    answer = await sim.vendor("plaspy", patch)
    assert answer.status == 200
    assert answer.body["success"] is False
    assert await sim.user("plaspy") == before


async def test_failing_test_op_refuses_patch(sim: Sim) -> None:
    """A `test` that does not hold refuses the patch."""
    patch = [
        {"op": "test", "path": "/name", "value": "Someone else"},
        {"op": "replace", "path": "/name", "value": "Changed"},
    ]
    answer = await sim.vendor("plaspy", patch)
    assert answer.body["success"] is False
    assert (await sim.user("plaspy"))["name"] == "Juan Perez"


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_bad_or_missing_auth_is_401(sim: Sim, token: str | None) -> None:
    """Missing or unknown bearer token: 401 success false with usage counters."""
    answer = await sim.vendor("plaspy", token=token)
    assert answer.status == 401
    assert answer.body["success"] is False
    assert {"apiUsage", "apiDailyUsage"} <= answer.body.keys()


async def test_unknown_user_is_404(sim: Sim) -> None:
    """An unknown userId: 404 success false."""
    answer = await sim.vendor("plaspy", user_id="usr-nobody")
    assert answer.status == 404
    assert answer.body["success"] is False


async def test_daily_usage_increases(sim: Sim) -> None:
    """apiDailyUsage grows with every call; apiUsage is the call's own count."""
    first = await sim.vendor("plaspy")
    second = await sim.vendor("plaspy", token="wrong")
    third = await sim.vendor("plaspy")
    counts = [a.body["apiDailyUsage"] for a in (first, second, third)]
    assert counts == sorted(counts)
    assert len(set(counts)) == 3
    assert third.body["apiUsage"] == 1


async def test_not_json_body_is_400(sim: Sim) -> None:
    """A body that is not JSON: 400 success false."""
    answer = await sim.vendor(
        "plaspy", data=b"[{op: replace}]", headers={"Content-Type": "application/json"}
    )
    assert answer.status == 400
    assert answer.body["success"] is False
