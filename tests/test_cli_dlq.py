"""`usersync dlq` and `usersync vendors` as operators run them: real processes talking to the
real gateway with the admin token from the config file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ADMIN_TOKEN, Gateway, Sandbox, run_cli, write_config
from tests.test_dead_letters import no_link
from usersync.redis_server import EmbeddedRedis

pytestmark = pytest.mark.usefixtures("worker")


async def usersync(gateway: Gateway, config: Path, *args: str) -> tuple[int, str, str]:
    """`run_cli` against the in-process gateway."""
    return await run_cli(config, gateway.url, *args)


def documents(text: str) -> list[Any]:
    """The JSON documents the CLI printed, one after another."""
    decoder = json.JSONDecoder()
    found, index = [], 0
    while index < len(text.rstrip()):
        value, index = decoder.raw_decode(text, index)
        found.append(value)
        while index < len(text) and text[index].isspace():
            index += 1
    return found


@pytest.fixture
def config(redis_server: EmbeddedRedis, sandbox: Sandbox, tmp_path: Path) -> Path:
    """The test settings as a file: the CLI takes the admin token from it."""
    return write_config(tmp_path, redis_server.url, sandbox.url)


async def test_dlq_list_show_replay_purge_and_vendors(
    gateway: Gateway, sandbox: Sandbox, config: Path
) -> None:
    """list and show print the API's answers; replay of a no_link letter once linked delivers;
    a second replay of it is an error answer (exit 1); purge --vendor empties that vendor;
    vendors lists every instance with its kind."""
    [fleet] = await no_link(gateway, "evt-1", "emp-404", ["fleet-eu"])
    [partoo] = await no_link(gateway, "evt-2", "emp-405", ["partoo"])

    code, out, err = await usersync(gateway, config, "dlq", "list", "--vendor", "fleet-eu")
    assert code == 0, err
    page = orjson.loads(out)
    assert (page["total"], [i["id"] for i in page["dead_letters"]]) == (1, [fleet])
    code, out, _ = await usersync(gateway, config, "dlq", "list", "--limit", "1")
    assert code == 0
    assert [i["id"] for i in orjson.loads(out)["dead_letters"]] == [partoo]
    code, out, _ = await usersync(gateway, config, "dlq", "show", fleet)
    assert (code, orjson.loads(out)["event"]["user"]["id"]) == (0, "emp-404")

    assert (await gateway.put("/v1/users/emp-404/links/fleet-eu", {"id": "42"}))[0] == 200
    code, out, err = await usersync(gateway, config, "dlq", "replay", fleet)
    assert code == 0, err
    assert orjson.loads(out)["status"] == "replayed"
    final = await gateway.wait_final("evt-1")
    assert final["targets"]["fleet-eu"]["status"] == "delivered"
    assert len(await sandbox.requests("fleet")) == 1

    code, out, _ = await usersync(gateway, config, "dlq", "replay", fleet, partoo)
    assert code == 1  # the first is no longer dead
    answers = documents(out)
    assert answers[0]["error"]["code"] == "not_found"
    assert answers[1]["status"] == "replayed"
    await gateway.wait_final("evt-2")  # dies again: still no link

    code, out, _ = await usersync(gateway, config, "dlq", "purge", "--vendor", "partoo")
    assert (code, orjson.loads(out)) == (0, {"purged": 1})
    code, out, _ = await usersync(gateway, config, "dlq", "list")
    assert orjson.loads(out)["total"] == 0
    code, out, _ = await usersync(gateway, config, "dlq", "show", partoo)
    assert (code, orjson.loads(out)["error"]["code"]) == (1, "not_found")

    code, out, err = await usersync(gateway, config, "vendors")
    assert code == 0, err
    assert {name: v["kind"] for name, v in orjson.loads(out)["vendors"].items()} == {
        "mileapp": "mileapp",
        "fleet-eu": "fleet",
        "plaspy": "plaspy",
        "partoo": "partoo",
    }


async def test_dlq_bulk_commands_and_usage_errors(gateway: Gateway, config: Path) -> None:
    """replay --all answers the count; replay and purge need exactly one of ids, --vendor or
    --all (exit 2, nothing sent); a source token is refused (exit 1)."""
    await no_link(gateway, "evt-1", "emp-404", ["fleet-eu", "partoo"])
    for wrong in ([], ["--all", "--vendor", "partoo"], ["hris:evt-1:partoo", "--all"]):
        code, _, err = await usersync(gateway, config, "dlq", "replay", *wrong)
        assert code == 2, wrong
        assert "--vendor" in err
    code, out, _ = await usersync(
        gateway, config, "dlq", "purge", "--all", "--token", "test-hris-token-0123456789"
    )
    assert (code, orjson.loads(out)["error"]["code"]) == (1, "forbidden")

    code, out, _ = await usersync(gateway, config, "dlq", "replay", "--all")
    assert (code, orjson.loads(out)["replayed"]) == (0, 2)
    await gateway.wait_final("evt-1")  # dead again: no link
    code, out, _ = await usersync(gateway, config, "dlq", "purge", "--all", "--token", ADMIN_TOKEN)
    assert (code, orjson.loads(out)) == (0, {"purged": 2})
