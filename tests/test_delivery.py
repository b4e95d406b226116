"""One event in, the vendors' exact calls out: the full pipeline over real Redis and HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import USER_IDS, VENDOR_TOKENS, Gateway, Sandbox, event

pytestmark = pytest.mark.usefixtures("worker")

KIND = {"mileapp": "mileapp", "fleet-eu": "fleet", "plaspy": "plaspy", "partoo": "partoo"}


async def deliver(
    gateway: Gateway, target: str, changes: dict[str, Any], event_id: str = "evt-1", **extra: Any
) -> dict[str, Any]:
    status, body = await gateway.post(event(event_id, changes=changes, targets=[target], **extra))
    assert status == 202, body
    final = await gateway.wait_final(event_id)
    return dict(final["targets"][target])


async def test_one_event_reaches_all_four_vendors(gateway: Gateway, sandbox: Sandbox) -> None:
    """An event to every vendor is delivered to each, and each sandbox user holds the new values."""
    status, _ = await gateway.post(
        event(changes={"email": "ada@example.com", "given_name": "Ada", "family_name": "Lovelace"})
    )
    assert status == 202
    final = await gateway.wait_final("evt-1")
    for target, state in final["targets"].items():
        assert state["status"] == "delivered", (target, state)
        assert state["attempts"] == 1
        assert state["last_http_status"] == 200
        assert state["last_error"] is None
    assert (await sandbox.user("mileapp", USER_IDS["mileapp"]))["name"] == "Ada Lovelace"
    assert (await sandbox.user("mileapp", USER_IDS["mileapp"]))["email"] == "ada@example.com"
    fleet = await sandbox.user("fleet", USER_IDS["fleet-eu"])
    assert (fleet["first_name"], fleet["last_name"], fleet["email"]) == (
        "Ada",
        "Lovelace",
        "ada@example.com",
    )
    plaspy = await sandbox.user("plaspy", USER_IDS["plaspy"])
    assert (plaspy["name"], plaspy["email"]) == ("Ada Lovelace", "ada@example.com")
    partoo = await sandbox.user("partoo", USER_IDS["partoo"])
    assert (partoo["first_name"], partoo["last_name"], partoo["email"]) == (
        "Ada",
        "Lovelace",
        "ada@example.com",
    )


async def test_exact_requests_on_the_wire(gateway: Gateway, sandbox: Sandbox) -> None:
    """Each vendor receives its documented method, path, auth header, content type and body."""
    await gateway.post(event(changes={"email": "ada@example.com"}))
    await gateway.wait_final("evt-1")
    expected = {
        "mileapp": (
            "PATCH",
            "/mileapp/api/v3/user",
            "Authorization",
            f"Bearer {VENDOR_TOKENS['mileapp']}",
            {"_id": USER_IDS["mileapp"], "email": "ada@example.com"},
        ),
        "fleet": (
            "PATCH",
            "/fleet/api/users/42",
            "Authorization",
            f"Bearer {VENDOR_TOKENS['fleet']}",
            {"email": "ada@example.com"},
        ),
        "plaspy": (
            "PATCH",
            "/plaspy/api/users/usr-12345",
            "Authorization",
            f"Bearer {VENDOR_TOKENS['plaspy']}",
            [{"op": "add", "path": "/email", "value": "ada@example.com"}],
        ),
        "partoo": (
            "POST",
            f"/partoo/v2/user/{USER_IDS['partoo']}",
            "x-APIKey",
            VENDOR_TOKENS["partoo"],
            {"email": "ada@example.com"},
        ),
    }
    for kind, (method, path, header, value, body) in expected.items():
        requests = await sandbox.requests(kind)
        assert len(requests) == 1, (kind, requests)
        received = requests[0]
        headers = {name.lower(): v for name, v in received["headers"].items()}
        assert (received["method"], received["path"]) == (method, path), kind
        assert headers[header.lower()] == value, kind
        assert headers["content-type"].startswith("application/json"), kind
        assert received["body"] == body, kind
        if kind == "partoo":
            assert "authorization" not in headers


FIELD_CASES: list[tuple[str, dict[str, Any], Any]] = [
    # MileApp: name, email, phoneNumber; the id travels as _id; nothing is nullable.
    (
        "mileapp",
        {"email": "ada@example.com"},
        {"_id": USER_IDS["mileapp"], "email": "ada@example.com"},
    ),
    (
        "mileapp",
        {"given_name": "Ada", "family_name": "Lovelace"},
        {"_id": USER_IDS["mileapp"], "name": "Ada Lovelace"},
    ),
    (
        "mileapp",
        {"display_name": "Countess Ada"},
        {"_id": USER_IDS["mileapp"], "name": "Countess Ada"},
    ),
    (
        "mileapp",
        {"phone": "+33 1 23 45 67 89"},
        {"_id": USER_IDS["mileapp"], "phoneNumber": "+33123456789"},
    ),
    ("mileapp", {"phone": None}, None),
    ("mileapp", {"email": None}, None),
    ("mileapp", {"display_name": None, "given_name": None, "family_name": None}, None),
    ("mileapp", {"job_title": "Engineer", "role": "admin"}, None),
    # Fleet: partial body, null clears nullable fields.
    ("fleet-eu", {"email": "ada@example.com"}, {"email": "ada@example.com"}),
    ("fleet-eu", {"given_name": "Ada"}, {"first_name": "Ada"}),
    ("fleet-eu", {"given_name": None}, {"first_name": None}),
    ("fleet-eu", {"family_name": "Lovelace"}, {"last_name": "Lovelace"}),
    ("fleet-eu", {"family_name": None}, {"last_name": None}),
    ("fleet-eu", {"phone": "+33 1 23 45 67 89"}, {"phone": "+33123456789"}),
    ("fleet-eu", {"phone": None}, {"phone": None}),
    ("fleet-eu", {"phone_country": "FR"}, {"phone_country": "FR"}),
    ("fleet-eu", {"phone_country": None}, {"phone_country": None}),
    ("fleet-eu", {"language": "fr"}, {"language": "fr"}),
    ("fleet-eu", {"language": None}, {"language": None}),
    ("fleet-eu", {"job_title": "Engineer"}, {"position": "Engineer"}),
    ("fleet-eu", {"job_title": None}, {"position": None}),
    ("fleet-eu", {"start_date": "2024-01-15"}, {"arrival_date": "2024-01-15"}),
    ("fleet-eu", {"start_date": None}, {"arrival_date": None}),
    ("fleet-eu", {"end_date": "2026-12-31"}, {"departure_date": "2026-12-31"}),
    ("fleet-eu", {"end_date": None}, {"departure_date": None}),
    ("fleet-eu", {"birth_date": "1990-05-21"}, {"date_of_birth": "1990-05-21"}),
    ("fleet-eu", {"birth_date": None}, {"date_of_birth": None}),
    ("fleet-eu", {"birth_city": "Paris"}, {"city_of_birth": "Paris"}),
    ("fleet-eu", {"birth_city": None}, {"city_of_birth": None}),
    ("fleet-eu", {"birth_country": "FR"}, {"country_of_birth": "FR"}),
    ("fleet-eu", {"birth_country": None}, {"country_of_birth": None}),
    ("fleet-eu", {"role": "admin"}, {"role": "ADMIN"}),
    ("fleet-eu", {"password": "Secret-Passw0rd"}, {"password": "Secret-Passw0rd"}),
    ("fleet-eu", {"email": None}, None),
    ("fleet-eu", {"role": None}, None),
    (
        "fleet-eu",
        {"display_name": "Ada", "country": "FR", "timezone": "Europe/Paris", "active": False},
        None,
    ),
    # Plaspy: RFC 6902 JSON Patch; set = add, clear = remove.
    (
        "plaspy",
        {"email": "ada@example.com"},
        [{"op": "add", "path": "/email", "value": "ada@example.com"}],
    ),
    (
        "plaspy",
        {"given_name": "Ada", "family_name": "Lovelace"},
        [{"op": "add", "path": "/name", "value": "Ada Lovelace"}],
    ),
    (
        "plaspy",
        {"display_name": "Countess Ada"},
        [{"op": "add", "path": "/name", "value": "Countess Ada"}],
    ),
    (
        "plaspy",
        {"job_title": "Engineer"},
        [{"op": "add", "path": "/description", "value": "Engineer"}],
    ),
    ("plaspy", {"job_title": None}, [{"op": "remove", "path": "/description"}]),
    (
        "plaspy",
        {"start_date": "2024-01-15"},
        [{"op": "add", "path": "/from", "value": "2024-01-15T00:00:00Z"}],
    ),
    (
        "plaspy",
        {"end_date": "2026-12-31"},
        [{"op": "add", "path": "/expires", "value": "2026-12-31T00:00:00Z"}],
    ),
    ("plaspy", {"end_date": None}, [{"op": "remove", "path": "/expires"}]),
    ("plaspy", {"country": "Colombia"}, [{"op": "add", "path": "/country", "value": "Colombia"}]),
    ("plaspy", {"country": None}, [{"op": "remove", "path": "/country"}]),
    (
        "plaspy",
        {"timezone": "America/Bogota"},
        [{"op": "add", "path": "/timeZone", "value": "America/Bogota"}],
    ),
    ("plaspy", {"timezone": None}, [{"op": "remove", "path": "/timeZone"}]),
    ("plaspy", {"role": "admin"}, [{"op": "add", "path": "/group", "value": "administrators"}]),
    ("plaspy", {"active": False}, [{"op": "add", "path": "/disabled", "value": True}]),
    ("plaspy", {"active": True}, [{"op": "add", "path": "/disabled", "value": False}]),
    (
        "plaspy",
        {"password": "Secret-Passw0rd"},
        [{"op": "add", "path": "/password", "value": "Secret-Passw0rd"}],
    ),
    ("plaspy", {"tags": {"vip": "true"}}, [{"op": "add", "path": "/tags/vip", "value": "true"}]),
    ("plaspy", {"email": None}, [{"op": "remove", "path": "/email"}]),
    ("plaspy", {"display_name": None}, [{"op": "remove", "path": "/name"}]),
    ("plaspy", {"role": None}, [{"op": "remove", "path": "/group"}]),
    ("plaspy", {"phone": "+33123456789", "language": "fr"}, None),
    # Partoo: POST with patch semantics; no nullable field.
    ("partoo", {"email": "ada@example.com"}, {"email": "ada@example.com"}),
    (
        "partoo",
        {"given_name": "Ada", "family_name": "Lovelace"},
        {"first_name": "Ada", "last_name": "Lovelace"},
    ),
    ("partoo", {"role": "admin"}, {"role": "ORG_ADMIN"}),
    ("partoo", {"active": False}, {"disabled": True}),
    ("partoo", {"password": "Secret-Passw0rd!"}, {"password": "Secret-Passw0rd!"}),
    ("partoo", {"language": "pt-BR"}, {"lang": "pt-br"}),
    ("partoo", {"language": "en-GB"}, {"lang": "en"}),
    ("partoo", {"language": "ja"}, None),
    ("partoo", {"given_name": None}, None),
    ("partoo", {"email": None, "role": None, "family_name": None}, None),
    ("partoo", {"phone": "+33123456789", "job_title": "Engineer"}, None),
]


@pytest.mark.parametrize(("target", "changes", "expected"), FIELD_CASES)
async def test_canonical_field_mapping(
    gateway: Gateway, sandbox: Sandbox, target: str, changes: dict[str, Any], expected: Any
) -> None:
    """Each canonical field reaches each vendor as docs/contract.md §1 maps it; None = skipped, not sent."""
    state = await deliver(gateway, target, changes)
    requests = await sandbox.requests(KIND[target])
    if expected is None:
        assert state["status"] == "skipped", state
        assert requests == []
        return
    assert state["status"] == "delivered", state
    assert len(requests) == 1
    body = requests[0]["body"]
    if target == "plaspy":  # a JSON Patch array: ops compared in path order
        body = sorted(body, key=lambda op: op["path"])
    assert body == expected


async def test_plaspy_tag_removal(gateway: Gateway, sandbox: Sandbox) -> None:
    """A null tag removes that tag at Plaspy, and the sandbox user no longer has it."""
    await deliver(gateway, "plaspy", {"tags": {"vip": "true", "team": "blue"}})
    state = await deliver(gateway, "plaspy", {"tags": {"vip": None}}, event_id="evt-2")
    assert state["status"] == "delivered", state
    assert (await sandbox.requests("plaspy"))[-1]["body"] == [{"op": "remove", "path": "/tags/vip"}]
    assert (await sandbox.user("plaspy", USER_IDS["plaspy"]))["tags"] == {"team": "blue"}


async def test_name_is_composed_from_the_stored_profile(gateway: Gateway, sandbox: Sandbox) -> None:
    """A later event changing only the given name still sends the full name to MileApp."""
    await deliver(gateway, "mileapp", {"family_name": "Lovelace"})
    await deliver(
        gateway,
        "mileapp",
        {"given_name": "Ada"},
        event_id="evt-2",
        user={"id": "emp-42", "version": 2, "external_ids": USER_IDS},
    )
    assert (await sandbox.requests("mileapp"))[-1]["body"]["name"] == "Ada Lovelace"


async def test_link_learned_from_one_event_serves_the_next(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """An external id posted once is reused by a later event that carries none."""
    await deliver(gateway, "fleet-eu", {"email": "a@example.com"})
    state = await deliver(
        gateway,
        "fleet-eu",
        {"email": "b@example.com"},
        event_id="evt-2",
        user={"id": "emp-42", "version": 2},
    )
    assert state["status"] == "delivered"
    assert (await sandbox.user("fleet", "42"))["email"] == "b@example.com"


async def test_no_link_is_dead_with_reason(gateway: Gateway, sandbox: Sandbox) -> None:
    """A target with no known vendor id for the user is dead with reason no_link; nothing sent."""
    state = await deliver(gateway, "fleet-eu", {"email": "a@example.com"}, user={"id": "emp-404"})
    assert state["status"] == "dead"
    assert state["last_error"].startswith("no_link")
    assert await sandbox.requests("fleet") == []


async def test_fleet_id_format_is_refused_before_sending(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """A Fleet id not matching ^[1-9]\\d*$ is dead at once and never sent."""
    user = {"id": "emp-42", "external_ids": {"fleet-eu": "042"}}
    state = await deliver(gateway, "fleet-eu", {"email": "a@example.com"}, user=user)
    assert state["status"] == "dead"
    assert state["attempts"] == 0
    assert await sandbox.requests("fleet") == []


async def test_weak_partoo_password_is_refused_before_sending(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """A password under Partoo's policy is dead with a clear reason, never sent, never echoed."""
    state = await deliver(gateway, "partoo", {"password": "short"})
    assert state["status"] == "dead"
    assert "password" in state["last_error"]
    assert "short" not in state["last_error"].replace("too short", "")
    assert await sandbox.requests("partoo") == []


async def test_unmapped_role_is_refused(gateway: Gateway, sandbox: Sandbox) -> None:
    """A role with no mapping for the vendor is a permanent failure, not sent."""
    state = await deliver(gateway, "fleet-eu", {"role": "astronaut"})
    assert state["status"] == "dead"
    assert "role" in state["last_error"]
    assert await sandbox.requests("fleet") == []


@pytest.mark.parametrize(("target", "kind"), [("mileapp", "mileapp"), ("plaspy", "plaspy")])
async def test_body_level_failure_on_http_200_is_dead(
    gateway: Gateway, sandbox: Sandbox, target: str, kind: str
) -> None:
    """MileApp status:false and Plaspy success:false are failures even with HTTP 200."""
    await sandbox.fault(kind, body_failure="user is locked")
    state = await deliver(gateway, target, {"email": "a@example.com"})
    assert state["status"] == "dead", state
    assert state["attempts"] == 1
    assert "user is locked" in state["last_error"]


async def test_partoo_400_is_dead_with_partoo_message(gateway: Gateway, sandbox: Sandbox) -> None:
    """A Partoo 400 is permanent, and its `errors` message is in the status."""
    await sandbox.fault("partoo", status=400, body_failure="email already used by another user")
    state = await deliver(gateway, "partoo", {"email": "a@example.com"})
    assert state["status"] == "dead"
    assert state["last_http_status"] == 400
    assert state["attempts"] == 1
    assert "email already used by another user" in state["last_error"]


async def test_5xx_then_success_is_retried(gateway: Gateway, sandbox: Sandbox) -> None:
    """A 503 is retried, and the event ends delivered on the second attempt."""
    await sandbox.fault("fleet", status=503, count=1)
    state = await deliver(gateway, "fleet-eu", {"email": "a@example.com"})
    assert state["status"] == "delivered"
    assert state["attempts"] == 2
    assert [r["status"] for r in await sandbox.requests("fleet")] == [503, 200]


async def test_garbage_answer_is_retried(gateway: Gateway, sandbox: Sandbox) -> None:
    """A 200 with a non-JSON body is not taken as success: it is retried."""
    await sandbox.fault("mileapp", garbage=True, count=1)
    state = await deliver(gateway, "mileapp", {"email": "a@example.com"})
    assert state["status"] == "delivered"
    assert state["attempts"] == 2


async def test_timeout_is_retried(gateway: Gateway, sandbox: Sandbox) -> None:
    """A vendor slower than timeout_s is retried; the next, fast call delivers."""
    await sandbox.fault("partoo", latency_ms=2500, count=1)
    state = await deliver(gateway, "partoo", {"email": "a@example.com"})
    assert state["status"] == "delivered"
    assert state["attempts"] == 2


async def test_retries_are_bounded_then_dead(gateway: Gateway, sandbox: Sandbox) -> None:
    """A vendor failing every time is tried max_attempts times, then dead with its error."""
    await sandbox.fault("fleet", status=500, count=10)
    state = await deliver(gateway, "fleet-eu", {"email": "a@example.com"})
    assert state["status"] == "dead"
    assert state["attempts"] == 3
    assert state["last_http_status"] == 500
    assert "max_attempts" in state["last_error"]
    assert len(await sandbox.requests("fleet")) == 3


async def test_unknown_vendor_user_is_dead_with_404(gateway: Gateway, sandbox: Sandbox) -> None:
    """A vendor id the vendor does not know is a permanent 404, not retried."""
    user = {"id": "emp-42", "external_ids": {"fleet-eu": "999999"}}
    state = await deliver(gateway, "fleet-eu", {"email": "a@example.com"}, user=user)
    assert state["status"] == "dead"
    assert state["last_http_status"] == 404
    assert state["attempts"] == 1


async def test_vendor_fields_pass_through_after_validation(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """Vendor-native fields reach the vendor as-is: a Partoo object, a Plaspy JSON Patch array."""
    state = await deliver(
        gateway,
        "partoo",
        {"email": "a@example.com"},
        vendor_fields={"partoo": {"business_ids": ["b1"]}},
    )
    assert state["status"] == "delivered", state
    assert (await sandbox.requests("partoo"))[0]["body"] == {
        "email": "a@example.com",
        "business_ids": ["b1"],
    }
    ops = [{"op": "add", "path": "/tags/team", "value": "blue"}]
    state = await deliver(
        gateway,
        "plaspy",
        {"email": "a@example.com"},
        event_id="evt-2",
        vendor_fields={"plaspy": ops},
    )
    assert state["status"] == "delivered", state
    assert (await sandbox.user("plaspy", USER_IDS["plaspy"]))["tags"]["team"] == "blue"


async def test_vendor_fields_refused_by_the_vendor_schema_are_422_at_ingest(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """Vendor fields the vendor's schema refuses are a 422 naming the field path (the check
    the worker makes before sending, made at ingest): nothing is stored, nothing sent."""
    refused = {
        "fleet-eu": ({"shoe_size": 42}, "vendor_fields.fleet-eu.shoe_size"),
        "partoo": ([{"op": "add"}], "vendor_fields.partoo"),
        "plaspy": (
            [{"op": "add", "path": "/shoe_size", "value": 1}],
            "vendor_fields.plaspy.0.path",
        ),
    }
    for n, (target, (fields, path)) in enumerate(refused.items()):
        body = event(f"evt-{n}", targets=[target], vendor_fields={target: fields})
        status, answer = await gateway.post(body)
        assert status == 422, answer
        assert [problem["path"] for problem in answer["error"]["details"]] == [path]
        assert (await gateway.get(f"/v1/events/evt-{n}"))[0] == 404
    for kind in ("fleet", "partoo", "plaspy"):
        assert await sandbox.requests(kind) == []
