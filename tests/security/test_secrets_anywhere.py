"""A secret is never stored or shown in clear, wherever in the event it sits.

A Plaspy `vendor_fields` operation on `/password` without `"op"` was accepted, stored in clear
in Redis and its append-only file, and shown unmasked by `GET /v1/dead-letters/{id}`. Each
shape here is posted to the real gateway over the real Redis (its AOF read back from disk);
the ones a vendor's schema takes die `no_link` in the real worker and are read back as dead
letters; the ones it refuses must be a 422 that stores nothing and echoes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from core import keys, masking
from core.secrets import PREFIX, SecretBox
from tests.conftest import SECRET_KEY, Gateway, event
from tests.test_dead_letters import admin, no_link, post_final
from usersync.redis_server import EmbeddedRedis
from workers.vendors import interface

Shape = Callable[[str], tuple[str, dict[str, Any]]]
"""A secret -> (the target, the event's fields that carry it)."""

TAKEN: dict[str, Shape] = {
    "changes.password": lambda s: ("fleet-eu", {"changes": {"password": s}}),
    "vendor_fields object": lambda s: (
        "fleet-eu",
        {"vendor_fields": {"fleet-eu": {"password": s}}},
    ),
    "nested in a patch value": lambda s: (
        "plaspy",
        {"vendor_fields": {"plaspy": [{"op": "add", "path": "/tags", "value": {"password": s}}]}},
    ),
    "upper-case tag key": lambda s: ("plaspy", {"changes": {"tags": {"Password": s}}}),
    "upper-case patch path": lambda s: (
        "plaspy",
        {"vendor_fields": {"plaspy": [{"op": "add", "path": "/tags/PASSWORD", "value": s}]}},
    ),
}
"""Secrets in places the vendor's schema accepts: stored (encrypted), then dead letters."""

REFUSED: dict[str, Shape] = {
    "plaspy op without op": lambda s: (
        "plaspy",
        {"vendor_fields": {"plaspy": [{"path": "/password", "value": s}]}},
    ),
    "upper-case Password in a partoo object": lambda s: (
        "partoo",
        {"vendor_fields": {"partoo": {"Password": s}}},
    ),
    "password nested in a fleet object": lambda s: (
        "fleet-eu",
        {"vendor_fields": {"fleet-eu": {"notes": {"password": s}}}},
    ),
    "patch op on an upper-case /Password": lambda s: (
        "plaspy",
        {"vendor_fields": {"plaspy": [{"op": "add", "path": "/Password", "value": s}]}},
    ),
}
"""Secrets in shapes the vendor's schema refuses: a 422 at ingest, nothing stored."""


def a_secret() -> str:
    """A password no other test uses, so finding it anywhere means this test leaked it."""
    return "Sx-" + secrets.token_hex(12) + "!"


def aof_bytes(server: EmbeddedRedis) -> bytes:
    """Everything Redis wrote to its append-only file(s) so far."""
    return b"".join(path.read_bytes() for path in server.data_dir.rglob("*.aof*"))


async def redis_values(redis: Redis) -> bytes:
    """Every string and hash value in Redis, concatenated (sorted sets hold only ids)."""
    found = []
    async for key in redis.scan_iter(count=1000):
        kind = await redis.type(key)
        if kind == b"string":
            found.append(await redis.get(key) or b"")
        elif kind == b"hash":
            found += [b"%s=%s" % pair for pair in (await redis.hgetall(key)).items()]
    return b"\n".join(found)


@pytest.mark.parametrize("shape", list(TAKEN))
async def test_a_stored_secret_is_encrypted_and_its_dead_letter_masked(
    gateway: Gateway, worker: None, redis: Redis, redis_server: EmbeddedRedis, shape: str
) -> None:
    """Each shape the vendor accepts: no clear secret in Redis nor its AOF, the stored value is
    `enc:v1:`, and the dead letter shows `***` and never the secret."""
    secret = a_secret()
    target, fields = TAKEN[shape](secret)
    body = event("evt-sec", targets=[target], user={"id": "emp-sec"}, **fields)
    states = await post_final(gateway, body)
    assert states[target]["status"] == "dead", states  # no_link: the user has no vendor id
    stored = await redis.hget(keys.event("hris", "evt-sec"), keys.EVENT_BODY)
    assert stored is not None and secret.encode() not in stored
    assert stored.count(PREFIX.encode()) == 1
    status, shown = await admin(gateway, "GET", f"/v1/dead-letters/hris:evt-sec:{target}")
    assert status == 200, shown
    text = orjson.dumps(shown)
    assert masking.MASK.encode() in text
    assert secret.encode() not in text and PREFIX.encode() not in text
    assert secret.encode() not in await redis_values(redis)
    assert secret.encode() not in aof_bytes(redis_server)


@pytest.mark.parametrize("shape", list(REFUSED))
async def test_a_secret_in_fields_the_vendor_refuses_is_422_and_never_stored(
    gateway: Gateway, redis: Redis, redis_server: EmbeddedRedis, shape: str
) -> None:
    """Each shape the vendor's schema refuses: post, preview and batch answer 422 naming
    `vendor_fields.<instance>`, without the secret; Redis and its AOF never see it."""
    secret = a_secret()
    target, fields = REFUSED[shape](secret)
    body = event("evt-ref", targets=[target], **fields)
    for path in ("/v1/events", "/v1/events:preview"):
        status, answer = await gateway.post(body, path=path)
        assert status == 422, (path, answer)
        assert all(
            problem["path"].startswith(f"vendor_fields.{target}")
            for problem in answer["error"]["details"]
        ), answer
        assert secret not in orjson.dumps(answer).decode()
    status, answer = await gateway.post({"events": [body]}, path="/v1/events:batch")
    assert status == 200 and answer["results"][0]["status"] == 422, answer
    assert secret not in orjson.dumps(answer).decode()
    assert not await redis.exists(keys.event("hris", "evt-ref"))
    assert secret.encode() not in await redis_values(redis)
    assert secret.encode() not in aof_bytes(redis_server)


async def test_a_dead_letter_stored_before_masks_an_op_without_op(
    gateway: Gateway, worker: None, redis: Redis
) -> None:
    """A dead letter whose event was stored in clear by an earlier version, with a Plaspy
    operation on `/password` that has no `op`, is shown with that value masked."""
    secret = a_secret()
    [letter] = await no_link(gateway, "evt-old", "emp-old", ["plaspy"])
    key = keys.event("hris", "evt-old")
    stored = orjson.loads(await redis.hget(key, keys.EVENT_BODY))
    stored["vendor_fields"] = {"plaspy": [{"path": "/Password", "value": secret}]}
    await redis.hset(key, keys.EVENT_BODY, orjson.dumps(stored))
    status, shown = await admin(gateway, "GET", f"/v1/dead-letters/{letter}")
    assert status == 200, shown
    assert shown["event"]["vendor_fields"]["plaspy"] == [{"path": "/Password", "value": "***"}]
    assert secret not in orjson.dumps(shown).decode()


def test_the_workers_mask_with_the_one_rule() -> None:
    """The workers' request masking is `core.masking`'s (one definition of secret names
    and of the mask): case-insensitive keys, any patch path ending in one, `op` or not."""
    assert interface.mask_secrets is masking.mask_secrets
    assert interface.MASK == masking.MASK
    request = interface.VendorRequest(
        "PATCH",
        "http://127.0.0.1/x",
        {"Authorization": "Bearer t"},
        [
            {"op": "add", "path": "/password", "value": "a"},
            {"path": "/PassWord", "value": "b"},
            {"op": "add", "path": "/tags", "value": {"PASSWORD": "c"}},
        ],
    )
    assert request.masked()["body"] == [
        {"op": "add", "path": "/password", "value": "***"},
        {"path": "/PassWord", "value": "***"},
        {"op": "add", "path": "/tags", "value": {"PASSWORD": "***"}},
    ]


def casings(word: str) -> st.SearchStrategy[str]:
    """`word` with each letter upper- or lower-case."""
    return st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in word)).map("".join)


BOX = SecretBox([SECRET_KEY])


@given(
    name=st.sampled_from(sorted(masking.SECRET_KEYS)).flatmap(casings),
    where=st.sampled_from(["changes", "tag", "object", "nested", "patch", "patch without op"]),
    secret=st.text(min_size=1, max_size=20).filter(lambda text: not text.startswith(PREFIX)),
)
def test_seal_json_encrypts_every_secret_name_in_any_case(
    name: str, where: str, secret: str
) -> None:
    """Whatever the case of a secret name and wherever it sits, `seal_json` (with its fast
    path that skips texts without a secret word) leaves no clear secret: exactly one
    `enc:v1:` value, which opens to the secret."""
    place = {
        "changes": {"changes": {name: secret}},
        "tag": {"changes": {"tags": {name: secret}}},
        "object": {"vendor_fields": {"v": {name: secret}}},
        "nested": {"vendor_fields": {"v": {"a": [{"b": {name: secret}}]}}},
        "patch": {"vendor_fields": {"v": [{"op": "add", "path": f"/x/{name}", "value": secret}]}},
        "patch without op": {"vendor_fields": {"v": [{"path": f"/{name}", "value": secret}]}},
    }[where]
    sealed = BOX.seal_json({"event_id": "e", **place})
    found: list[Any] = []
    masking.map_secrets(orjson.loads(sealed), lambda _path, value: found.append(value))
    assert len(found) == 1 and found[0].startswith(PREFIX)
    assert BOX.decrypt(found[0]) == secret


def test_a_non_ascii_lookalike_is_no_secret_name() -> None:
    """Secret names are compared after ASCII lower-casing only, as the fast path reads bytes:
    a name that Unicode lower-casing would turn into a secret name is not one."""
    assert masking.is_secret_name("PassWord")
    assert not masking.is_secret_name("pa\u017f\u017fword")  # long s: upper-cases to S
    assert "\u212a".lower() == "k"  # the Kelvin sign: why Unicode lower-casing is not used


@pytest.mark.parametrize(
    "value",
    [
        {"urn:ietf:params:scim:schemas:core:2.0:User:password": "S3cret-Passw0rd!"},
        {"Operations": [{"op": "replace", "path": "password", "value": "S3cret-Passw0rd!"}]},
        {
            "Operations": [
                {
                    "op": "Replace",
                    "path": "urn:ietf:params:scim:schemas:core:2.0:User:password",
                    "value": "S3cret-Passw0rd!",
                }
            ]
        },
        {"user.password": "S3cret-Passw0rd!"},
    ],
)
def test_qualified_secret_names_are_secrets(value: dict[str, Any]) -> None:
    """A SCIM attribute URN, a bare PatchOp path or a dotted name ending in `password` is a
    secret like `/password`: masked, and sealed by the box's fast path too."""
    assert "S3cret-Passw0rd!" not in orjson.dumps(masking.mask_secrets(value)).decode()
    sealed = BOX.seal_json({"event_id": "e", "vendor_fields": {"v": value}})
    assert b"S3cret-Passw0rd!" not in sealed
