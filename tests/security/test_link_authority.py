"""Link authority: an identity link decides where every later delivery to a vendor instance
goes, whichever source posts it, so who may set one is checked (allowed_targets, link_mode),
recorded (set_by, set_at) and logged (link_changed). Real gateway, worker, sandbox and Redis."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from config.settings import Settings
from core import keys
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    IDP_TOKEN,
    USER_IDS,
    Gateway,
    Sandbox,
    event,
    log_lines,
    make_raw_settings,
    make_settings,
)
from usersync.redis_server import EmbeddedRedis

CREATOR_TOKEN = "test-creator-token-0123456789"
SILENT_TOKEN = "test-silent-token-0123456789"
PARTOO = USER_IDS["partoo"]
MALLORY = "aaaaaaaaaaaaaaaaaaaaaaaa"
"""A Partoo account the restricted source would like the HR source's changes to reach."""
PASSWORD = "Zq7-Kx2f!Pw-links"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def sources() -> list[dict[str, Any]]:
    """hris (every target, link_mode set), idp (fleet-eu only), creator (link_mode create),
    silent (link_mode none)."""
    return [
        {"name": "hris", "token": HRIS_TOKEN},
        {"name": "idp", "token": IDP_TOKEN, "allowed_targets": ["fleet-eu"]},
        {"name": "creator", "token": CREATOR_TOKEN, "link_mode": "create"},
        {"name": "silent", "token": SILENT_TOKEN, "link_mode": "none"},
    ]


@pytest.fixture
def settings(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    return make_settings(redis_server.url, sandbox.url, sources=sources())


def linked(source: str, event_id: str, user_id: str, ids: dict[str, str], **more: Any) -> Any:
    """An event of `source` for `user_id` carrying `ids` as its external ids."""
    body = event(event_id, source=source, **more)
    body["user"] = {"id": user_id, "version": 1, "external_ids": ids}
    return body


async def links(gateway: Gateway, user_id: str) -> dict[str, Any]:
    status, body = await gateway.get(f"/v1/users/{user_id}/links", token=ADMIN_TOKEN)
    assert status == 200, body
    return dict(body)


async def accept(gateway: Gateway, body: Any, token: str = HRIS_TOKEN) -> None:
    status, answer = await gateway.post(body, token)
    assert status == 202, answer


def error(answer: tuple[int, Any]) -> tuple[int, str, Any]:
    status, body = answer
    assert set(body) == {"error"}, body
    return status, body["error"]["code"], body["error"]["details"]


async def test_a_restricted_source_cannot_redirect_anothers_deliveries(
    gateway: Gateway, worker: None, sandbox: Sandbox, redis: Redis
) -> None:
    """The attack: idp may target only fleet-eu and posts a partoo external id. It is refused
    (403 target_not_allowed, nothing stored), the partoo link keeps hris's id, and hris's next
    event, carrying a password, reaches that account and never idp's choice."""
    await sandbox.put_user("partoo", MALLORY, {"email": "mallory@example.com"})
    first = linked("hris", "hr-1", "emp-9", {"partoo": PARTOO}, targets=["partoo"])
    await accept(gateway, first)
    await gateway.wait_final("hr-1")

    for n, targets in enumerate((["fleet-eu"], None)):  # named targets, and the default set
        attack = linked("idp", f"idp-{n}", "emp-9", {"fleet-eu": "42", "partoo": MALLORY})
        if targets is not None:
            attack["targets"] = targets
        status, code, details = error(await gateway.post(attack, token=IDP_TOKEN))
        assert (status, code, details) == (403, "target_not_allowed", {"external_ids": ["partoo"]})
        assert not await redis.exists(keys.event("idp", f"idp-{n}"))
    assert (await links(gateway, "emp-9"))["links"] == {"partoo": PARTOO}

    second = linked("hris", "hr-2", "emp-9", {}, targets=["partoo"])
    second["changes"] = {"password": PASSWORD}
    await accept(gateway, second)
    final = await gateway.wait_final("hr-2")
    assert final["targets"]["partoo"]["status"] == "delivered", final
    assert (await sandbox.user("partoo", PARTOO))["password_set"] is True
    assert (await sandbox.user("partoo", MALLORY))["password_set"] is False
    paths = [call["path"] for call in await sandbox.requests("partoo")]
    assert paths and not any(MALLORY in path for path in paths), paths


async def test_an_allowed_external_id_is_still_accepted(gateway: Gateway) -> None:
    """idp may link users at the instance it may target: its fleet-eu id becomes the link."""
    body = linked("idp", "idp-ok", "emp-3", {"fleet-eu": "43"})
    status, answer = await gateway.post(body, token=IDP_TOKEN)
    assert status == 202, answer
    detail = (await links(gateway, "emp-3"))["details"]["fleet-eu"]
    assert (detail["id"], detail["set_by"]) == ("43", "idp")


async def test_link_mode_create_creates_but_never_changes_a_link(
    gateway: Gateway, redis: Redis
) -> None:
    """A create-mode source may create a missing link and repeat it; a different id is a 409
    link_conflict naming user.external_ids.<vendor>, without the stored id, and nothing of
    that event is stored: no event, no pending entry, the link unchanged."""
    await accept(gateway, linked("creator", "c-1", "emp-4", {"partoo": PARTOO}), CREATOR_TOKEN)
    await accept(gateway, linked("creator", "c-2", "emp-4", {"partoo": PARTOO}), CREATOR_TOKEN)
    pending_before = await redis.zcard(keys.pending("partoo", "emp-4"))

    answer = await gateway.post(
        linked("creator", "c-3", "emp-4", {"partoo": MALLORY}), CREATOR_TOKEN
    )
    status, code, details = error(answer)
    assert (status, code) == (409, "link_conflict")
    assert [problem["path"] for problem in details] == ["user.external_ids.partoo"]
    assert PARTOO not in str(answer[1]) and MALLORY not in str(answer[1])
    assert not await redis.exists(keys.event("creator", "c-3"))
    assert await redis.zcard(keys.pending("partoo", "emp-4")) == pending_before
    detail = (await links(gateway, "emp-4"))["details"]["partoo"]
    assert (detail["id"], detail["set_by"]) == (PARTOO, "creator")

    # A repeated event id is answered as the duplicate it is, before any link is looked at.
    status, body = await gateway.post(
        linked("creator", "c-1", "emp-4", {"partoo": MALLORY}), CREATOR_TOKEN
    )
    assert (status, body.get("duplicate")) == (200, True)
    # The admin may still change it; hris (link_mode set) too.
    assert (await gateway.put("/v1/users/emp-4/links/partoo", {"id": MALLORY}))[0] == 200
    await accept(gateway, linked("hris", "h-4", "emp-4", {"partoo": PARTOO}))
    assert (await links(gateway, "emp-4"))["links"]["partoo"] == PARTOO


async def test_link_mode_create_is_atomic_between_concurrent_posts(gateway: Gateway) -> None:
    """Two create-mode events for a user with no link, each with another id, posted at once:
    exactly one is accepted and the link is its id (checked and written in one script)."""
    for round_ in range(5):
        user_id = f"emp-race-{round_}"
        bodies = [
            linked("creator", f"race-{round_}-{n}", user_id, {"partoo": vendor_id})
            for n, vendor_id in enumerate((PARTOO, MALLORY))
        ]
        answers = await asyncio.gather(*(gateway.post(b, CREATOR_TOKEN) for b in bodies))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [202, 409], answers
        winner = next(b for b, (s, _) in zip(bodies, answers, strict=True) if s == 202)
        stored = (await links(gateway, user_id))["links"]["partoo"]
        assert stored == winner["user"]["external_ids"]["partoo"]


async def test_link_mode_none_refuses_external_ids(gateway: Gateway, redis: Redis) -> None:
    """A source with link_mode none gets a 422 links_not_allowed for any external id (nothing
    stored); its events without external ids are accepted."""
    answer = await gateway.post(linked("silent", "s-1", "emp-5", {"fleet-eu": "42"}), SILENT_TOKEN)
    status, code, details = error(answer)
    assert (status, code) == (422, "links_not_allowed")
    assert details == [
        {"path": "user.external_ids.fleet-eu", "message": "external ids not allowed"}
    ]
    assert not await redis.exists(keys.event("silent", "s-1"))
    assert not await redis.exists(keys.links("emp-5"))
    await accept(gateway, linked("silent", "s-2", "emp-5", {}), SILENT_TOKEN)


async def test_links_show_who_set_them_and_when(gateway: Gateway) -> None:
    """GET links keeps `links` (vendor -> id) and adds `details`: id, set_by (the source, or
    admin) and set_at (the event's reception, or the PUT's time); the one-link GET too."""
    await accept(gateway, linked("hris", "w-1", "emp-6", {"fleet-eu": "42", "partoo": PARTOO}))
    received_at = (await gateway.get("/v1/events/w-1"))[1]["received_at"]
    status, put = await gateway.put("/v1/users/emp-6/links/partoo", {"id": MALLORY})
    assert status == 200 and put["set_by"] == "admin" and ISO_MS.match(put["set_at"]), put

    body = await links(gateway, "emp-6")
    assert body["links"] == {"fleet-eu": "42", "partoo": MALLORY}
    assert body["details"] == {
        "fleet-eu": {"id": "42", "set_by": "hris", "set_at": received_at},
        "partoo": {"id": MALLORY, "set_by": "admin", "set_at": put["set_at"]},
    }
    status, one = await gateway.get("/v1/users/emp-6/links/fleet-eu", token=ADMIN_TOKEN)
    assert (status, one) == (
        200,
        {
            "user_id": "emp-6",
            "vendor": "fleet-eu",
            "id": "42",
            "set_by": "hris",
            "set_at": received_at,
        },
    )


async def test_link_written_before_setters_were_kept_shows_null(
    gateway: Gateway, redis: Redis
) -> None:
    """A link stored by an earlier version (no setter recorded) is shown with set_by and
    set_at null, not hidden and not a 500."""
    await redis.hset(keys.links("emp-old"), "plaspy", "usr-1")
    body = await links(gateway, "emp-old")
    assert body["details"] == {"plaspy": {"id": "usr-1", "set_by": None, "set_at": None}}


async def test_batch_refuses_the_offending_events_alone(gateway: Gateway, redis: Redis) -> None:
    """In a batch, an idp event with a partoo external id is refused (403) and a create-mode
    event that would change a link earlier events of the batch created is refused (409); the
    events around them are accepted and counted."""
    batch = [
        linked("idp", "b-1", "emp-7", {"fleet-eu": "42"}),
        linked("idp", "b-2", "emp-7", {"fleet-eu": "42", "partoo": MALLORY}),
        linked("idp", "b-3", "emp-7", {}),
    ]
    status, answer = await gateway.post({"events": batch}, IDP_TOKEN, path="/v1/events:batch")
    assert status == 200, answer
    assert [r["status"] for r in answer["results"]] == [202, 403, 202]
    assert answer["results"][1]["body"]["error"]["code"] == "target_not_allowed"
    assert (answer["accepted"], answer["refused"]) == (2, 1)
    assert not await redis.hexists(keys.links("emp-7"), "partoo")

    batch = [
        linked("creator", "cb-1", "emp-8", {"partoo": PARTOO}),
        linked("creator", "cb-2", "emp-8", {"partoo": MALLORY}),
        linked("creator", "cb-3", "emp-8", {"partoo": PARTOO}),
    ]
    status, answer = await gateway.post({"events": batch}, CREATOR_TOKEN, path="/v1/events:batch")
    assert status == 200, answer
    assert [r["status"] for r in answer["results"]] == [202, 409, 202]
    refused = answer["results"][1]
    assert refused["event_id"] == "cb-2"
    assert refused["body"]["error"]["code"] == "link_conflict"
    assert (answer["accepted"], answer["duplicates"], answer["refused"]) == (2, 0, 1)
    assert not await redis.exists(keys.event("creator", "cb-2"))
    assert (await links(gateway, "emp-8"))["links"] == {"partoo": PARTOO}


async def test_preview_refuses_a_link_conflict_as_a_post_would(gateway: Gateway) -> None:
    """A create-mode preview that would change a stored link answers the post's 409."""
    await accept(gateway, linked("creator", "p-1", "emp-10", {"partoo": PARTOO}), CREATOR_TOKEN)
    body = linked("creator", "p-2", "emp-10", {"partoo": MALLORY})
    status, code, _ = error(await gateway.post(body, CREATOR_TOKEN, path="/v1/events:preview"))
    assert (status, code) == (409, "link_conflict")
    body = linked("creator", "p-3", "emp-10", {"partoo": PARTOO})
    assert (await gateway.post(body, CREATOR_TOKEN, path="/v1/events:preview"))[0] == 200


async def test_changed_links_are_logged_with_old_and_new_id(
    log_output: io.BytesIO, gateway: Gateway
) -> None:
    """A link moved to another id logs link_changed (user, vendor, old and new id, source),
    by an event or by the admin; creating or repeating a link logs none; a refused change
    logs link_refused. No line holds the event's secret."""
    first = linked("hris", "l-1", "emp-11", {"partoo": PARTOO})
    first["changes"] = {"password": PASSWORD}
    await accept(gateway, first)
    await accept(gateway, linked("hris", "l-2", "emp-11", {"partoo": PARTOO}))
    await accept(gateway, linked("hris", "l-3", "emp-11", {"partoo": MALLORY}))
    assert (await gateway.put("/v1/users/emp-11/links/partoo", {"id": PARTOO}))[0] == 200
    assert (await gateway.put("/v1/users/emp-11/links/partoo", {"id": PARTOO}))[0] == 200
    refused = linked("creator", "l-4", "emp-11", {"partoo": MALLORY})
    assert (await gateway.post(refused, CREATOR_TOKEN))[0] == 409

    lines = log_lines(log_output)
    changed = [
        {key: line[key] for key in ("user_id", "vendor", "old_id", "new_id", "source")}
        for line in lines
        if line["event"] == "link_changed"
    ]
    assert changed == [
        {
            "user_id": "emp-11",
            "vendor": "partoo",
            "old_id": PARTOO,
            "new_id": MALLORY,
            "source": "hris",
        },
        {
            "user_id": "emp-11",
            "vendor": "partoo",
            "old_id": MALLORY,
            "new_id": PARTOO,
            "source": "admin",
        },
    ]
    [refusal] = [line for line in lines if line["event"] == "link_refused"]
    assert (refusal["current_id"], refusal["refused_id"], refusal["source"]) == (
        PARTOO,
        MALLORY,
        "creator",
    )
    assert PASSWORD.encode() not in log_output.getvalue()


def test_link_mode_and_reserved_admin_name_are_checked_at_start(
    redis_server: EmbeddedRedis,
) -> None:
    """link_mode takes only set, create or none (default set), and no source may be named
    `admin`, the setter the admin API records."""
    raw = make_raw_settings(redis_server.url, "http://127.0.0.1:9")
    assert Settings.model_validate(raw).sources[0].link_mode == "set"
    bad_mode = {**raw, "sources": [{**raw["sources"][0], "link_mode": "change"}]}
    with pytest.raises(ValidationError, match="link_mode"):
        Settings.model_validate(bad_mode)
    admin = {**raw, "sources": [{**raw["sources"][0], "name": "admin"}]}
    with pytest.raises(ValidationError, match="reserved"):
        Settings.model_validate(admin)
