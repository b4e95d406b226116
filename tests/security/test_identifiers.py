"""Identifiers are whole-string matches: a trailing newline makes any of them a clean 4xx.

Python's `re.match` lets `$` match before a final newline, so `emp-log\\n` passed a check
written `re.match("^...$", value)` and was stored. Every identifier the gateway reads (in the
body, the path, the query, the config) is fed one here, against the real gateway and Redis;
each must be refused with a 4xx and leave nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from yarl import URL

from config.settings import Settings
from core import keys
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    Gateway,
    event,
    make_raw_settings,
)
from tests.test_dead_letters import no_link

Edit = Callable[[dict[str, Any]], None]

BODY_IDENTIFIERS: dict[str, tuple[Edit, str]] = {
    "event_id": (lambda e: e.update(event_id="evt-nl\n"), "event_id"),
    "user.id": (lambda e: e["user"].update(id="emp-42\n"), "user.id"),
    "source": (lambda e: e.update(source="hris\n"), "source"),
    "targets": (lambda e: e.update(targets=["fleet-eu\n"]), "targets.0"),
    "external_ids key": (
        lambda e: e["user"].update(external_ids={"fleet-eu\n": "42"}),
        "user.external_ids.fleet-eu\n.[key]",
    ),
    "external_ids value": (
        lambda e: e["user"].update(external_ids={"fleet-eu": "42\n"}),
        "user.external_ids.fleet-eu",
    ),
    "vendor_fields key": (
        lambda e: e.update(vendor_fields={"partoo\n": {"business_ids": ["b1"]}}),
        "vendor_fields.partoo\n.[key]",
    ),
    "tag key": (
        lambda e: e["changes"].update(tags={"team\n": "blue"}),
        "changes.tags.team\n.[key]",
    ),
    "phone": (lambda e: e["changes"].update(phone="+33123456789\n"), "changes.phone"),
    "language": (lambda e: e["changes"].update(language="fr\n"), "changes.language"),
    "start_date": (lambda e: e["changes"].update(start_date="2026-01-05\n"), "changes.start_date"),
    "occurred_at": (lambda e: e.update(occurred_at="2026-11-22T10:15:00Z\n"), "occurred_at"),
}
"""How to give each identifier (and each other value checked by a pattern) a trailing newline,
and the path the 422 must name."""


async def stored_keys(redis: Redis) -> list[bytes]:
    """Every key usersync or arq wrote (the test's Redis is emptied before each test) but the
    source's rate record, which counts requests, not what they carry."""
    rate = keys.source_rate("").encode()
    return [key async for key in redis.scan_iter(count=1000) if not key.startswith(rate)]


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, token: str = ADMIN_TOKEN
) -> tuple[int, Any]:
    """A request whose URL is sent exactly as written (`%0A` stays encoded on the wire)."""
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    async with http.request(method, URL(url, encoded=True), data=data, headers=headers) as answer:
        raw = await answer.read()
        return answer.status, orjson.loads(raw) if raw else None


@pytest.mark.parametrize("name", list(BODY_IDENTIFIERS))
async def test_a_trailing_newline_in_the_event_is_422_and_nothing_is_stored(
    gateway: Gateway, redis: Redis, name: str
) -> None:
    """Each identifier of the event with a trailing newline: 422 naming its path, at post,
    preview and in a batch, and Redis holds nothing afterwards."""
    edit, path = BODY_IDENTIFIERS[name]
    body = event("evt-nl")
    edit(body)
    for endpoint in ("/v1/events", "/v1/events:preview"):
        status, answer = await gateway.post(body, path=endpoint)
        assert status == 422, (endpoint, answer)
        assert path in [problem["path"] for problem in answer["error"]["details"]], answer
    status, answer = await gateway.post({"events": [body]}, path="/v1/events:batch")
    assert status == 200, answer
    assert answer["results"][0]["status"] == 422, answer
    assert answer["accepted"] == 0
    assert await stored_keys(redis) == []


async def test_a_user_id_with_a_trailing_newline_in_the_path_is_404(
    gateway: Gateway, redis: Redis
) -> None:
    """`PUT /v1/users/emp-log%0A/links/partoo` (the reported case) and every other call taking
    a user id in its path answer 404, and no link is stored for `emp-log\\n`."""
    http, url = gateway.http, gateway.url
    assert (await call(http, "PUT", f"{url}/v1/users/emp-log%0A/links/partoo", {"id": "7"}))[
        0
    ] == 404
    assert (await call(http, "GET", f"{url}/v1/users/emp-log%0A/links"))[0] == 404
    assert (await call(http, "GET", f"{url}/v1/users/emp-log%0A/links/partoo"))[0] == 404
    assert (await call(http, "DELETE", f"{url}/v1/users/emp-log%0A/ordering"))[0] == 404
    assert await stored_keys(redis) == []


async def test_a_link_id_or_vendor_with_a_trailing_newline_is_refused(
    gateway: Gateway, redis: Redis
) -> None:
    """`PUT .../links/{vendor}` with an id ending in a newline is 422, with a vendor instance
    name ending in one 404; nothing is stored either way."""
    http, url = gateway.http, gateway.url
    status, answer = await call(http, "PUT", f"{url}/v1/users/emp-42/links/partoo", {"id": "7\n"})
    assert status == 422, answer
    assert answer["error"]["details"][0]["path"] == "id"
    status, answer = await call(http, "PUT", f"{url}/v1/users/emp-42/links/partoo%0A", {"id": "7"})
    assert status == 404, answer
    assert await stored_keys(redis) == []
    status, answer = await call(http, "PUT", f"{url}/v1/users/emp-42/links/partoo", {"id": "7"})
    assert status == 200, answer  # the same call without the newline is taken


async def test_an_event_id_with_a_trailing_newline_in_the_path_is_404(
    gateway: Gateway, redis: Redis
) -> None:
    """`GET /v1/events/evt-1%0A` is 404 although `evt-1` exists, for a source and the admin."""
    assert (await gateway.post(event("evt-1", targets=["fleet-eu"])))[0] == 202
    http, url = gateway.http, gateway.url
    assert (await call(http, "GET", f"{url}/v1/events/evt-1", token=HRIS_TOKEN))[0] == 200
    assert (await call(http, "GET", f"{url}/v1/events/evt-1%0A", token=HRIS_TOKEN))[0] == 404
    assert (await call(http, "GET", f"{url}/v1/events/evt-1%0A"))[0] == 404


async def test_dead_letter_ids_and_filters_with_a_trailing_newline_are_refused(
    gateway: Gateway, worker: None, redis: Redis
) -> None:
    """A dead-letter id with a newline after any of its parts is 404 (show, replay, purge);
    a `vendor` or `source` filter or bulk vendor ending in one is 422; the letter stays."""
    [letter] = await no_link(gateway, "evt-dl", "emp-dl", ["partoo"])
    http, base = gateway.http, gateway.url + "/v1/dead-letters"
    for bad in ("hris%0A:evt-dl:partoo", "hris:evt-dl%0A:partoo", "hris:evt-dl:partoo%0A"):
        assert (await call(http, "GET", f"{base}/{bad}"))[0] == 404, bad
        assert (await call(http, "POST", f"{base}/{bad}/replay"))[0] == 404, bad
        assert (await call(http, "DELETE", f"{base}/{bad}"))[0] == 404, bad
    for query in ("vendor=partoo%0A", "source=hris%0A"):
        status, answer = await call(http, "GET", f"{base}?{query}")
        assert status == 422, (query, answer)
    status, answer = await call(http, "DELETE", f"{base}?vendor=partoo%0A")
    assert status == 422, answer
    status, answer = await call(http, "POST", f"{base}:replay", {"vendor": "partoo\n"})
    assert status == 422, answer
    status, answer = await call(http, "GET", f"{base}/{letter}")
    assert status == 200 and answer["status"]["status"] == "dead", answer


@pytest.mark.parametrize(
    "edit",
    [
        lambda raw: raw["sources"][0].update(name="hris\n"),
        lambda raw: raw["vendors"].update({"fleet\n": raw["vendors"].pop("fleet-eu")}),
    ],
    ids=["source name", "vendor instance name"],
)
def test_config_names_with_a_trailing_newline_are_refused(edit: Callable[[Any], None]) -> None:
    """A source or vendor instance name ending in a newline does not load as configuration."""
    raw = make_raw_settings("redis://127.0.0.1:1/0", "http://127.0.0.1:1")
    edit(raw)
    with pytest.raises(ValidationError):
        Settings.model_validate(raw)
