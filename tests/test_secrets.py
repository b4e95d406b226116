"""Secrets end to end (docs/contract.md §3): a password posted in an event reaches the vendor in clear (on
the wire, where it belongs) and nowhere else: no log line, no answer, no dead letter, no Redis
value of any type. Keys rotate without losing stored events; an event no key opens is dead, not
retried. Real Redis, the real gateway and worker in process, the sandbox vendors."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from core import keys
from core.secrets import PREFIX
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    USER_IDS,
    Gateway,
    Sandbox,
    event,
    log_lines,
    make_settings,
    running_gateway,
    running_worker,
    stored_keys,
    wait_until,
    write_config,
)
from usersync.redis_server import EmbeddedRedis

# Each accepted by every vendor it is sent to: Partoo wants 8+ characters, upper and lower case
# and a special one; Fleet and Plaspy take any string.
PASSWORD = "Zq7-Kx2f!Pw-delivered"
DEAD_PASSWORD = "Yv4-Rt9m!Pw-dies"
VENDOR_FIELD_PASSWORDS = {
    "fleet-eu": "Fl3-vendor-field!Pw",
    "partoo": "Pa9-vendor-field!Pw",
    "plaspy": "Pl4-json-patch!Pw",
}
TARGETS = ["fleet-eu", "plaspy", "partoo"]


async def redis_dump(redis: Redis) -> bytes:
    """Every key of the Redis database and every value under it, whatever its type."""
    parts: list[bytes] = []
    async for key in redis.scan_iter(count=1000):
        parts.append(key)
        kind = await redis.type(key)
        if kind == b"string":
            parts.append(await redis.get(key) or b"")
        elif kind == b"hash":
            for field, value in (await redis.hgetall(key)).items():
                parts += [field, value]
        elif kind == b"set":
            parts += list(await redis.smembers(key))
        elif kind == b"zset":
            parts += [member for member, _ in await redis.zrange(key, 0, -1, withscores=True)]
        elif kind == b"list":
            parts += list(await redis.lrange(key, 0, -1))
        elif kind == b"none":  # expired since the scan listed it (a source's allowance)
            continue
        elif kind == b"stream":
            for _, entry in await redis.xrange(key):
                for field, value in entry.items():
                    parts += [field, value]
        else:
            raise AssertionError(f"unexpected Redis type {kind!r} of {key!r}")
    return b"\n".join(parts)


async def admin_call(gateway: Gateway, method: str, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with gateway.http.request(method, gateway.url + path, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


def journal_bodies(requests: list[dict[str, Any]]) -> bytes:
    return orjson.dumps([request["body"] for request in requests])


async def test_a_password_is_on_the_wire_only(
    log_output: io.BytesIO,
    settings: Any,
    gateway: Gateway,
    sandbox: Sandbox,
    redis: Redis,
) -> None:
    """Posted for Fleet, Partoo and Plaspy: stored encrypted while pending, delivered in clear
    to each vendor, and absent from every log line, every answer (acceptance, status, preview,
    dead letters, vendors, metrics) and every Redis value, including one that died."""
    answers: list[Any] = []
    body = event(
        "evt-secret",
        targets=TARGETS,
        changes={"email": "ada@example.com", "password": PASSWORD},
    )
    status, answer = await gateway.post(body, path="/v1/events:preview")
    assert status == 200 and answer["targets"]["partoo"]["outcome"] == "send", answer
    answers.append(answer)

    status, answer = await gateway.post(body)  # no worker yet: the event waits in Redis
    assert status == 202, answer
    answers.append(answer)
    pending = await redis_dump(redis)
    assert PASSWORD.encode() not in pending
    stored = await redis.hget(keys.event("hris", "evt-secret"), keys.EVENT_BODY)
    assert orjson.loads(stored)["changes"]["password"].startswith(PREFIX)
    assert b"arq:job:" in pending  # the jobs were part of what was searched

    async with running_worker(settings):
        final = await gateway.wait_final("evt-secret")
        assert {t: s["status"] for t, s in final["targets"].items()} == dict.fromkeys(
            TARGETS, "delivered"
        ), final
        answers.append(final)

        # The same password again in an event that dies: the vendor refuses it (400).
        await sandbox.fault("partoo", status=400, body_failure="refused by test", count=1)
        dying = event(
            "evt-secret-dies",
            targets=["partoo"],
            user={"id": "emp-42", "version": 2, "external_ids": dict(USER_IDS)},
            changes={"password": DEAD_PASSWORD},
        )
        status, answer = await gateway.post(dying)
        assert status == 202, answer
        answers.append(answer)
        final = await gateway.wait_final("evt-secret-dies")
        assert final["targets"]["partoo"]["status"] == "dead", final
        assert final["targets"]["partoo"]["last_http_status"] == 400
        answers.append(final)

    for path in (
        "/v1/dead-letters",
        "/v1/dead-letters/hris:evt-secret-dies:partoo",
        "/v1/vendors",
        "/v1/events/evt-secret",
    ):
        status, answer = await admin_call(gateway, "GET", path)
        assert status == 200, (path, answer)
        answers.append(answer)
    letter = answers[-3]
    assert letter["event"]["changes"] == {"password": "***"}
    async with gateway.http.get(gateway.url + "/metrics") as response:
        answers.append(await response.text())

    secrets = (PASSWORD.encode(), DEAD_PASSWORD.encode())
    text = orjson.dumps(answers[:-1]) + answers[-1].encode()
    assert not any(secret in text for secret in secrets)

    at_rest = await redis_dump(redis)
    assert not any(secret in at_rest for secret in secrets)
    assert at_rest.count(PREFIX.encode()) >= 2  # both events, stored encrypted

    raw_logs = log_output.getvalue()
    assert not any(secret in raw_logs for secret in secrets)
    attempts = [line for line in log_lines(log_output) if line["event"] == "delivery_attempt"]
    assert {line["vendor"] for line in attempts} == set(TARGETS)  # the capture saw the worker
    assert any(line["event"] == "event_accepted" for line in log_lines(log_output))

    # The wire: each vendor received the password itself.
    fleet = await sandbox.requests("fleet")
    assert fleet[-1]["body"] == {"email": "ada@example.com", "password": PASSWORD}
    plaspy_ops = {op["path"]: op for op in (await sandbox.requests("plaspy"))[-1]["body"]}
    assert plaspy_ops["/password"] == {"op": "add", "path": "/password", "value": PASSWORD}
    partoo = await sandbox.requests("partoo")
    assert [request["body"].get("password") for request in partoo] == [PASSWORD, DEAD_PASSWORD]


@pytest.mark.usefixtures("worker")
async def test_vendor_field_passwords_are_encrypted_at_rest_and_delivered(
    gateway: Gateway, sandbox: Sandbox, redis: Redis
) -> None:
    """A password in a vendor_fields object (Fleet, Partoo) and the value of a Plaspy JSON
    Patch op on /password are stored encrypted, and each vendor receives its own in clear."""
    body = event(
        "evt-vendor-fields",
        targets=TARGETS,
        changes={"email": "ada@example.com"},
        vendor_fields={
            "fleet-eu": {"password": VENDOR_FIELD_PASSWORDS["fleet-eu"]},
            "partoo": {"password": VENDOR_FIELD_PASSWORDS["partoo"]},
            "plaspy": [
                {"op": "add", "path": "/password", "value": VENDOR_FIELD_PASSWORDS["plaspy"]}
            ],
        },
    )
    status, answer = await gateway.post(body)
    assert status == 202, answer
    stored = orjson.loads(
        await redis.hget(keys.event("hris", "evt-vendor-fields"), keys.EVENT_BODY)
    )
    fields = stored["vendor_fields"]
    assert fields["fleet-eu"]["password"].startswith(PREFIX)
    assert fields["partoo"]["password"].startswith(PREFIX)
    assert fields["plaspy"][0]["value"].startswith(PREFIX)
    assert fields["plaspy"][0]["path"] == "/password"

    final = await gateway.wait_final("evt-vendor-fields")
    assert {t: s["status"] for t, s in final["targets"].items()} == dict.fromkeys(
        TARGETS, "delivered"
    ), final
    wire = b"".join(
        [journal_bodies(await sandbox.requests(kind)) for kind in ("fleet", "partoo", "plaspy")]
    )
    for secret in VENDOR_FIELD_PASSWORDS.values():
        assert secret.encode() in wire
    at_rest = await redis_dump(redis)
    for secret in VENDOR_FIELD_PASSWORDS.values():
        assert secret.encode() not in at_rest


async def test_key_rotation_keeps_stored_events_deliverable(
    log_output: io.BytesIO,
    redis_server: EmbeddedRedis,
    sandbox: Sandbox,
    redis: Redis,
    http: Any,
) -> None:
    """Stored under key A: a worker with [B, A] delivers the right password. A worker with [B]
    only makes the event dead at once (secret_undecryptable, no call, no retry); once A is back,
    replaying the dead letter delivers it."""
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()

    def with_keys(*secret_keys: str) -> Any:
        return make_settings(redis_server.url, sandbox.url, secrets={"keys": list(secret_keys)})

    async with running_gateway(with_keys(key_a)) as url:
        gateway = Gateway(url, http)
        first = event("evt-rot-1", targets=["fleet-eu"], changes={"password": PASSWORD})
        assert (await gateway.post(first))[0] == 202
        async with running_worker(with_keys(key_b, key_a)):
            final = await gateway.wait_final("evt-rot-1")
        assert final["targets"]["fleet-eu"]["status"] == "delivered", final
        assert (await sandbox.requests("fleet"))[-1]["body"] == {"password": PASSWORD}

        second = event(
            "evt-rot-2",
            targets=["fleet-eu"],
            user={"id": "emp-42", "version": 2, "external_ids": dict(USER_IDS)},
            changes={"password": DEAD_PASSWORD},
        )
        assert (await gateway.post(second))[0] == 202
        async with running_worker(with_keys(key_b)):
            final = await gateway.wait_final("evt-rot-2")
            await asyncio.sleep(0.3)  # a crash loop would show as runs and jobs by now
            assert await redis.zcard("arq:queue") == 0
        fleet = final["targets"]["fleet-eu"]
        assert fleet["status"] == "dead" and fleet["attempts"] == 0, fleet
        assert fleet["last_error"].startswith("secret_undecryptable: changes.password:")
        assert len(await sandbox.requests("fleet")) == 1  # nothing sent for it
        undecryptable = [
            line for line in log_lines(log_output) if line["event"] == "stored_secret_undecryptable"
        ]
        assert len(undecryptable) == 1 and undecryptable[0]["outcome"] == "dead"

        status, answer = await admin_call(
            gateway, "POST", "/v1/dead-letters/hris:evt-rot-2:fleet-eu/replay"
        )
        assert status == 202, answer
        async with running_worker(with_keys(key_b, key_a)):
            final = await gateway.wait_final("evt-rot-2")
        assert final["targets"]["fleet-eu"]["status"] == "delivered", final
        assert (await sandbox.requests("fleet"))[-1]["body"] == {"password": DEAD_PASSWORD}
    assert DEAD_PASSWORD.encode() not in log_output.getvalue()


@pytest.mark.usefixtures("worker")
async def test_a_replayed_dead_letter_delivers_a_long_password(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """The longest password the schema takes is longer encrypted than the schema allows: a
    replay still reads the stored event and the vendor gets the password itself."""
    long_password = "Aa!" + "x" * 253
    body = event("evt-long", targets=["partoo"], changes={"password": long_password})
    await sandbox.fault("partoo", status=400, body_failure="refused once", count=1)
    assert (await gateway.post(body))[0] == 202
    final = await gateway.wait_final("evt-long")
    assert final["targets"]["partoo"]["status"] == "dead", final

    status, answer = await admin_call(
        gateway, "POST", "/v1/dead-letters/hris:evt-long:partoo/replay"
    )
    assert status == 202, answer

    async def delivered() -> bool:
        _, body = await gateway.get("/v1/events/evt-long")
        return bool(body["targets"]["partoo"]["status"] == "delivered")

    await wait_until(delivered, 10, "replay delivered")
    bodies = [request["body"] for request in await sandbox.requests("partoo")]
    assert bodies == [{"password": long_password}, {"password": long_password}]


async def test_without_keys_a_secret_is_refused_and_nothing_is_stored(
    redis_server: EmbeddedRedis, sandbox: Sandbox, redis: Redis, http: Any
) -> None:
    """No secrets.keys: an event carrying a password is a 422 (post and preview alike) rather
    than stored in clear; events without one are accepted as usual."""
    settings = make_settings(redis_server.url, sandbox.url, secrets={"keys": []})
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        carrying = [
            event("evt-k1", changes={"password": PASSWORD}),
            event("evt-k2", vendor_fields={"fleet-eu": {"password": PASSWORD}}),
            event(
                "evt-k3",
                vendor_fields={"plaspy": [{"op": "add", "path": "/password", "value": PASSWORD}]},
            ),
        ]
        paths = [
            "changes.password",
            "vendor_fields.fleet-eu.password",
            "vendor_fields.plaspy.0.value",
        ]
        for body, path in zip(carrying, paths, strict=True):
            for endpoint in ("/v1/events", "/v1/events:preview"):
                status, answer = await gateway.post(body, path=endpoint)
                assert status == 422, answer
                assert answer["error"]["code"] == "secrets_not_configured"
                assert answer["error"]["details"]["paths"] == [path]
                assert PASSWORD not in orjson.dumps(answer).decode()
        assert await stored_keys(redis) == []
        status, answer = await gateway.post(event("evt-k4"))
        assert status == 202, answer


async def test_a_password_that_looks_encrypted_is_refused(gateway: Gateway, redis: Redis) -> None:
    """A secret starting with enc:v1: (a stored event posted back, say) is a schema violation
    naming its path, at post and preview; nothing is stored."""
    lookalike = PREFIX + "gAAAAABlookslikeatoken"
    body = event(
        "evt-lookalike",
        changes={"email": "ada@example.com", "password": lookalike},
        vendor_fields={"plaspy": [{"op": "add", "path": "/password", "value": lookalike}]},
    )
    for endpoint in ("/v1/events", "/v1/events:preview"):
        status, answer = await gateway.post(body, path=endpoint, token=HRIS_TOKEN)
        assert status == 422, answer
        assert answer["error"]["code"] == "schema_violation"
        assert [problem["path"] for problem in answer["error"]["details"]] == [
            "changes.password",
            "vendor_fields.plaspy.0.value",
        ]
    assert await stored_keys(redis) == []


def test_check_config_says_whether_secrets_are_configured(tmp_path: Path) -> None:
    """`usersync check-config` tells an operator that passwords would be refused without keys."""

    def check(keys: list[str]) -> str:
        config = write_config(
            tmp_path, "redis://127.0.0.1:1/0", "http://127.0.0.1:1", secrets={"keys": keys}
        )
        result = subprocess.run(
            [sys.executable, "-m", "usersync", "check-config", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "secrets: not configured" in check([])
    assert "422 secrets_not_configured" in check([])
    assert "secrets: 2 key(s)" in check(
        [Fernet.generate_key().decode(), Fernet.generate_key().decode()]
    )


async def test_batch_ingest_encrypts_and_refuses_each_event_on_its_own(
    gateway: Gateway, redis: Redis
) -> None:
    """Through POST /v1/events:batch: a password is stored encrypted as by POST /v1/events,
    and an event with a lookalike one is refused alone."""
    good = event("evt-batch-1", changes={"password": PASSWORD})
    bad = event("evt-batch-2", changes={"password": PREFIX + "gAAAAABlookalike"})
    status, answer = await gateway.post({"events": [good, bad]}, path="/v1/events:batch")
    assert status == 200, answer
    assert [result["status"] for result in answer["results"]] == [202, 422]
    assert answer["results"][1]["body"]["error"]["details"][0]["path"] == "changes.password"
    stored = orjson.loads(await redis.hget(keys.event("hris", "evt-batch-1"), keys.EVENT_BODY))
    assert stored["changes"]["password"].startswith(PREFIX)
    assert PASSWORD.encode() not in await redis_dump(redis)
    assert await redis.hget(keys.event("hris", "evt-batch-2"), keys.EVENT_BODY) is None


@pytest.mark.parametrize("corrupt", [b"{not json", b'{"event_id": 5}', b'{"enc:v1:x": ['])
async def test_a_corrupt_stored_event_is_dead_without_a_call(
    corrupt: bytes,
    log_output: io.BytesIO,
    settings: Any,
    sandbox: Sandbox,
    redis: Redis,
    http: Any,
) -> None:
    """A stored event that no longer parses (with or without ciphertext in it, so through
    either parser) is dead at once, with no call, and its log line names no value."""
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        assert (await gateway.post(event("evt-corrupt", targets=["fleet-eu"])))[0] == 202
        await redis.hset(keys.event("hris", "evt-corrupt"), keys.EVENT_BODY, corrupt)
        async with running_worker(settings):
            final = await gateway.wait_final("evt-corrupt")
    fleet = final["targets"]["fleet-eu"]
    assert fleet["status"] == "dead" and fleet["attempts"] == 0, fleet
    assert fleet["last_error"] == "stored_event_invalid"
    assert await sandbox.requests("fleet") == []
    lines = [line for line in log_lines(log_output) if line["event"] == "stored_event_invalid"]
    assert len(lines) == 1 and lines[0]["outcome"] == "dead"
