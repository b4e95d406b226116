"""Schemathesis against the live gateway with its own `/openapi.json`: every phase (examples,
coverage, fuzzing, stateful), positive and negative data, every check, `positive_data_acceptance`
included. So the document is exact for the running configuration: whatever it allows is
accepted (a 2xx, or a 401/403/404/409 that concerns credentials or stored state, not the
shape), whatever it forbids is refused with a documented 4xx, and every answer is described."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis
from schemathesis.config._warnings import DEFAULT_DISPLAYED_WARNINGS

from config.settings import Settings
from gateway.app import ROUTES
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    INSTANCE_KINDS,
    Gateway,
    Sandbox,
    make_raw_settings,
    running_gateway,
)
from tests.scim.conftest import seed_scim_users
from tests.test_openapi import seed
from usersync.redis_server import EmbeddedRedis

SCHEMATHESIS_EXAMPLES = 25
"""Test cases per operation and phase: bounded, so the test takes well under a minute."""
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
BULK = ("DELETE /v1/dead-letters", "POST /v1/dead-letters:replay")
"""Run on their own, after the rest: they empty the queue the other calls look things up in."""


@pytest.fixture
def open_settings(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    """The test config, with the limits that would refuse valid data for its volume lifted
    (the document states them in words): no source rate limit, bodies up to 1 MiB."""
    raw = make_raw_settings(redis_server.url, sandbox.url)
    raw["gateway"]["max_body_bytes"] = 1 << 20
    for source in raw["sources"]:
        source["rate_limit"] = None
    raw["sources"][0]["scim"] = True  # hris: its token reaches the /scim/v2 operations too
    return Settings.model_validate(raw)


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


_DISPLAYED = [warning.value for warning in DEFAULT_DISPLAYED_WARNINGS]
_SCIM_SILENCED = ("validation_mismatch", "missing_test_data")


def schemathesis_config(
    letters: list[str], event_ids: list[str], scim_ids: tuple[list[str], list[str]] = ([], [])
) -> str:
    """The run's configuration: every check on (the default; `--checks` on the command line
    would also override the one exception below), a token per security scheme (schemathesis
    picks the scheme each operation declares), and dictionaries of what exists (dead letters,
    events) mixed into the generated values, so the 200 answers of lookups are exercised
    too. The signature headers are not generated (a random signature is a 401, which would
    hide everything else; tests/test_signing covers signatures)."""
    return f"""
[generation]
max-examples = {SCHEMATHESIS_EXAMPLES}
with-security-parameters = false

[checks]
enabled = true  # every check, positive_data_acceptance included (the exceptions below say why)
# 413: a body over the limit is refused before it is parsed, whatever it holds.
negative_data_rejection.expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]

[auth.openapi.sourceToken]
bearer = "{HRIS_TOKEN}"

[auth.openapi.adminToken]
bearer = "{ADMIN_TOKEN}"

[dictionaries.dead_letters]
values = {_toml_list(letters)}

[dictionaries.events]
values = {_toml_list(event_ids)}

[dictionaries.vendors]
values = {_toml_list(list(INSTANCE_KINDS))}

[dictionaries.users]
values = ["emp-42", "emp-dead"]

[dictionaries.sources]
values = ["hris"]

[dictionaries.scim_users]
values = {_toml_list(scim_ids[0] or ["0b5f7f9e-0000-4000-8000-000000000000"])}

[dictionaries.scim_deletable]
values = {_toml_list(scim_ids[1] or ["0b5f7f9e-0000-4000-8000-000000000000"])}

[parameters]
"path.id" = {{ dictionary = "dead_letters", probability = 0.5 }}
"path.event_id" = {{ dictionary = "events", probability = 0.5 }}
"path.user_id" = {{ dictionary = "users", probability = 0.5 }}
"path.scim_id" = {{ dictionary = "scim_users", probability = 0.5 }}
"body.source" = {{ dictionary = "sources", probability = 0.7 }}
"body.events[*].source" = {{ dictionary = "sources", probability = 0.7 }}

# A batch refuses a bad event on its own, in a 200 listing every result: by design a
# schema-violating event inside a valid envelope is not a 4xx of the whole request.
[[operations]]
include-name = "POST /v1/events:batch"
checks.negative_data_rejection.enabled = false

# The purge's scope is one query object (`vendor=<instance>` or `all=true`, exactly one),
# exploded into its members; schemathesis's negative cases add members whose values (null,
# []) its HTTP client then leaves out, so what is sent is a valid request: the "accepted"
# it reports is not one. Valid scopes are still checked (positive data, answers).
[[operations]]
include-name = "DELETE /v1/dead-letters"
checks.negative_data_rejection.enabled = false

# SCIM: what a valid filter, PATCH path or value is (RFC 7644's grammar, the attribute each
# names, its type, the User's references and binaries) is no JSON schema's to state, so
# schema-valid data is often a 400 there (tests/scim/ checks those rules): neither that nor
# the warnings it raises (all positive cases refused: "validation mismatch", "missing test
# data", which schemathesis only turns off together per operation) are failures; every
# other check and warning holds.
[[operations]]
include-tag = "scim"
checks.positive_data_acceptance.enabled = false
generation.max-examples = 10  # twelve operations: keeps the run within its time
warnings = {_toml_list([w for w in _DISPLAYED if w not in _SCIM_SILENCED])}

# DELETE takes its users from a set of its own, so the other calls still find theirs.
[[operations]]
include-name = "DELETE /scim/v2/Users/{{scim_id}}"
parameters = {{ "path.scim_id" = {{ dictionary = "scim_deletable", probability = 0.5 }} }}

# POST /scim/v2/.search is documented as 501 (not offered), not a server fault.
[[operations]]
include-name = "POST /scim/v2/.search"
checks.not_a_server_error.enabled = false
"""


async def run_schemathesis(url: str, config: Path, report: Path, *filters: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        *filters,
        "--seed",
        "20261122",
        # One worker: on Python 3.11 hypothesis's lambda descriptions (ast.parse) race
        # across threads ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.mark.timeout(180)
async def test_schemathesis_finds_nothing(
    open_settings: Settings, redis: Redis, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Every operation, all phases, positive and negative data, every check (valid data is
    accepted, invalid refused, every answer documented): no failure, no error, no warning."""
    async with running_gateway(open_settings) as url:
        gateway = Gateway(url, http)
        letters, event_ids = await seed(gateway, open_settings)
        scim_ids = (
            await seed_scim_users(url, http, HRIS_TOKEN, "kept"),
            await seed_scim_users(url, http, HRIS_TOKEN, "deletable"),
        )
        config = tmp_path / "schemathesis.toml"
        config.write_text(schemathesis_config(letters, event_ids, scim_ids))
        runs = []
        for name, filters in (
            ("main", [arg for label in BULK for arg in ("--exclude-name", label)]),
            ("bulk", [arg for label in BULK for arg in ("--include-name", label)]),
        ):
            started = time.monotonic()
            code, output = await run_schemathesis(url, config, tmp_path / f"{name}.xml", *filters)
            runs.append((name, code, output, time.monotonic() - started))
    for name, code, output, elapsed in runs:
        (tmp_path / f"schemathesis-{name}.txt").write_text(output)
        print(f"schemathesis {name} run: {elapsed:.1f}s, output in {tmp_path}")
        assert code == 0, output[-30000:]
        assert "Errors:" not in output and "Warnings:" not in output, output[-10000:]
    # The CLI tests every operation but the one serving the document it reads.
    main, bulk = runs[0][2], runs[1][2]
    assert f"Tested: {len(ROUTES) - 1 - len(BULK)}" in main, main[-3000:]
    assert f"Tested: {len(BULK)}" in bulk, bulk[-3000:]
