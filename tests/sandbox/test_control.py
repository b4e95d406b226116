"""The control API: users, request journal, reset, health, and app construction."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from sandbox import create_sandbox_app
from tests.kinds import FIXTURES

from .conftest import DEMO_USERS, KINDS, SIMULATORS, TOKENS, Sim, sandbox_app, serve_app


async def test_healthz(sim: Sim) -> None:
    """GET /_sandbox/healthz answers 200."""
    answer = await sim.request("GET", "/_sandbox/healthz")
    assert answer.status == 200


def test_demo_user_ids() -> None:
    """DEMO_USERS names the documented example user of each vendor: one per registered kind,
    the shipped four's as in their seeds."""
    assert set(DEMO_USERS) == set(KINDS)
    assert {
        "mileapp": "65c1f4eeca7c4816d94587b7",
        "fleet": "42",
        "plaspy": "usr-12345",
        "partoo": "5309c3a237bbc544d8e26737",
    }.items() <= dict(DEMO_USERS).items()


@pytest.mark.parametrize("kind", KINDS)
async def test_demo_users_are_seeded(sim: Sim, kind: str) -> None:
    """Each kind's demo user exists with an email set."""
    user = await sim.user(kind)
    assert FIXTURES[kind].stored_email(user)


@pytest.mark.parametrize("kind", KINDS)
async def test_no_demo_users_when_disabled(empty_sim: Sim, kind: str) -> None:
    """seed_demo_users=False starts with no users: the vendor answers 404."""
    answer = await empty_sim.request("GET", f"/_sandbox/{kind}/users/{DEMO_USERS[kind]}")
    assert answer.status == 404
    assert (await empty_sim.vendor(kind)).status == 404


@pytest.mark.parametrize("kind", KINDS)
async def test_only_the_vendors_media_type_is_read(sim: Sim, kind: str) -> None:
    """A valid body sent as text/plain is a 415 in the vendor's failure shape naming its
    media type; the same bytes sent as that media type are read and applied."""
    fixtures = FIXTURES[kind]
    data = json.dumps(fixtures.simulator_body).encode()
    refused = await sim.vendor(kind, data=data, headers={"Content-Type": "text/plain"})
    assert refused.status == 415
    assert fixtures.media_type in fixtures.failure_message(refused.body)
    read = await sim.vendor(kind, data=data, headers={"Content-Type": fixtures.media_type})
    assert read.status == 200


async def test_unknown_kind_is_404(sim: Sim) -> None:
    """A kind that is not one of the four: 404 naming the known kinds."""
    answer = await sim.request("GET", "/_sandbox/salesforce/requests")
    assert answer.status == 404
    assert "mileapp" in answer.body["error"]


async def test_put_user_merges_onto_defaults(empty_sim: Sim) -> None:
    """PUT creates a user with every documented field, the given ones overriding defaults."""
    answer = await empty_sim.put_user("fleet", "7", {"first_name": "Grace", "id": 99})
    assert answer.status == 200
    assert answer.body["id"] == 7
    assert answer.body["first_name"] == "Grace"
    assert answer.body["role"] == "EMPLOYEE"
    assert answer.body["departure_date"] is None
    patched = await empty_sim.vendor("fleet", {"last_name": "Hopper"}, user_id="7")
    assert patched.body["data"]["first_name"] == "Grace"


async def test_put_user_replaces(sim: Sim) -> None:
    """PUT replaces a stored user: fields not given fall back to the defaults."""
    await sim.put_user("mileapp", DEMO_USERS["mileapp"], {"email": "new@mile.app"})
    user = await sim.user("mileapp")
    assert user["email"] == "new@mile.app"
    assert user["name"] is None
    assert user["_id"] == DEMO_USERS["mileapp"]


async def test_put_user_hides_passwords(sim: Sim) -> None:
    """A password given to the control API is not stored in clear."""
    await sim.put_user("partoo", "p1", {"password": "Secret!123"})
    await sim.put_user("plaspy", "u1", {"password": "Secret!123"})
    assert (await sim.user("partoo", "p1"))["password_set"] is True
    assert "Secret!123" not in str(await sim.user("partoo", "p1"))
    assert (await sim.user("plaspy", "u1"))["password"].startswith("sha256:")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sandbox/fleet/users/abc", {}),
        ("/_sandbox/fleet/users/042", {}),
        ("/_sandbox/partoo/users/p1", ["not", "an", "object"]),
    ],
)
async def test_put_user_refusals(sim: Sim, path: str, body: object) -> None:
    """A Fleet id the vendor could not have, or a body that is not an object: 400."""
    answer = await sim.request("PUT", path, body=body)
    assert answer.status == 400


async def test_put_user_not_json_is_400(sim: Sim) -> None:
    """A PUT body that is not JSON: 400."""
    answer = await sim.request(
        "PUT", "/_sandbox/partoo/users/p1", data=b"nope", headers={"Content-Type": "text/plain"}
    )
    assert answer.status == 400


async def test_journal_records_every_call_in_order(sim: Sim) -> None:
    """Each call is journaled per vendor with method, path, headers, body, time and status."""
    before = time.time()
    await sim.vendor("fleet", {"first_name": "One"})
    await sim.vendor("fleet", token="flt_sk_nope")
    await sim.vendor("fleet", data=b"not json", headers={"Content-Type": "application/json"})
    await sim.vendor("partoo")
    journal = await sim.journal("fleet")
    assert [entry["status"] for entry in journal] == [200, 401, 400]
    first = journal[0]
    assert first["method"] == "PATCH"
    assert first["path"] == "/fleet/api/users/42"
    assert first["body"] == {"first_name": "One"}
    assert first["headers"]["Authorization"] == f"Bearer {TOKENS['fleet']}"
    assert first["headers"]["Content-Type"] == "application/json"
    assert journal[2]["body"] == "not json"
    times = [entry["received_at"] for entry in journal]
    assert times == sorted(times)
    assert times[0] >= before
    partoo = await sim.journal("partoo")
    assert len(partoo) == 1
    assert partoo[0]["headers"]["x-APIKey"] == TOKENS["partoo"]
    assert partoo[0]["method"] == "POST"


async def test_journal_records_unknown_routes(sim: Sim) -> None:
    """A call to a path the vendor does not serve is journaled with its 404."""
    answer = await sim.request("PATCH", "/plaspy/users/usr-12345", body=[])
    assert answer.status == 404
    assert answer.body["success"] is False
    journal = await sim.journal("plaspy")
    assert [(e["path"], e["status"]) for e in journal] == [("/plaspy/users/usr-12345", 404)]


async def test_delete_requests_clears_every_journal(sim: Sim) -> None:
    """DELETE /_sandbox/requests empties the journals of all vendors."""
    for kind in KINDS:
        await sim.vendor(kind)
    answer = await sim.request("DELETE", "/_sandbox/requests")
    assert answer.status == 200
    for kind in KINDS:
        assert await sim.journal(kind) == []


async def test_draining_a_journal_returns_each_call_once(sim: Sim) -> None:
    """GET .../requests?drain=1 returns the calls and removes exactly those: the next read
    has only the calls made since; other kinds' journals are untouched."""
    await sim.vendor("fleet", {"last_name": "One"})
    await sim.vendor("mileapp")
    first = await sim.request("GET", "/_sandbox/fleet/requests?drain=1")
    assert [e["body"] for e in first.body] == [{"last_name": "One"}]
    await sim.vendor("fleet", {"last_name": "Two"})
    second = await sim.request("GET", "/_sandbox/fleet/requests?drain=1")
    assert [e["body"] for e in second.body] == [{"last_name": "Two"}]
    assert await sim.journal("fleet") == []
    assert len(await sim.journal("mileapp")) == 1


async def test_reset_restores_users_and_clears_faults_and_journals(sim: Sim) -> None:
    """POST /_sandbox/reset: demo users as seeded, no extra users, no faults, empty journals."""
    await sim.vendor("mileapp", {"_id": DEMO_USERS["mileapp"], "name": "Changed"})
    await sim.put_user("partoo", "extra", {})
    await sim.fault("fleet", status=503)
    answer = await sim.request("POST", "/_sandbox/reset")
    assert answer.status == 200
    assert (await sim.user("mileapp"))["name"] == "Example"
    assert (await sim.request("GET", "/_sandbox/partoo/users/extra")).status == 404
    assert await sim.journal("mileapp") == []
    assert (await sim.vendor("fleet")).status == 200


async def test_apps_do_not_share_state(sim: Sim, empty_sim: Sim) -> None:
    """Two sandbox apps in one process keep separate users and journals."""
    await sim.vendor("fleet")
    assert await empty_sim.journal("fleet") == []


def test_unknown_kind_in_tokens_is_refused() -> None:
    """A tokens mapping naming an unknown vendor kind is a configuration mistake."""
    with pytest.raises(ValueError, match="unknown vendor kinds"):
        sandbox_app({"salesforce": {"x"}})


async def test_kind_without_tokens_refuses_everyone(sim: Sim) -> None:
    """A kind left out of `tokens` accepts no credential at all."""
    app = sandbox_app({"fleet": {TOKENS["fleet"]}})
    async with serve_app(app) as url:
        other = Sim(url, sim.http)
        assert (await other.vendor("mileapp")).status == 401
        assert (await other.vendor("fleet")).status == 200


async def test_kinds_lists_every_simulated_kind(sim: Sim) -> None:
    """GET /_sandbox/kinds names each registered kind with its path prefix and demo user,
    and each demo user is there."""
    answer = await sim.request("GET", "/_sandbox/kinds")
    assert answer.status == 200
    assert list(answer.body["kinds"]) == list(KINDS)
    for kind, entry in answer.body["kinds"].items():
        assert entry["demo_user_id"] == DEMO_USERS[kind]
        assert entry["prefix"] == f"/{kind}"
        assert FIXTURES[kind].stored_email(await sim.user(kind, entry["demo_user_id"]))


def test_simulators_must_not_clash() -> None:
    """Two simulators of one kind, or a route outside its vendor's prefix, are refused when
    the app is created: calls would reach the wrong vendor."""
    first = SIMULATORS[0]
    with pytest.raises(ValueError, match="share a kind"):
        create_sandbox_app([first, first], {})
    moved = dataclasses.replace(first, routes=(("GET", "/elsewhere/x", first.routes[0][2]),))
    with pytest.raises(ValueError, match="outside"):
        create_sandbox_app([moved], {})
    with pytest.raises(ValueError, match="at least one"):
        create_sandbox_app([], {})
