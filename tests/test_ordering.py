"""Ordering and coalescing per (vendor instance, user), proven on the wire.

Every check reads what the sandbox vendors actually received (their request journals) and
their final user state, with real Redis, the real gateway and real workers.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from config.settings import Settings
from tests.conftest import (
    HRIS_TOKEN,
    USER_IDS,
    Gateway,
    Sandbox,
    event,
    make_settings,
    running_gateway,
    start_usersync,
    stop,
    wait_until,
    write_config,
)
from usersync.redis_server import EmbeddedRedis

FOUR = ["mileapp", "fleet-eu", "plaspy", "partoo"]
KIND = {"mileapp": "mileapp", "fleet-eu": "fleet", "plaspy": "plaspy", "partoo": "partoo"}
VERSION_IN = re.compile(r"v(\d+)")
RUNS = itertools.count(int(time.time()))


def versioned(n: int, version: int, changes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = event(f"evt-{n}", changes=changes, **extra)
    body["user"]["version"] = version
    return body


def sent_values(kind: str, request: dict[str, Any]) -> dict[str, Any]:
    """The canonical-ish fields a vendor request set: email and job title, per vendor shape."""
    body = request["body"]
    if kind == "plaspy":
        paths = {"/email": "email", "/description": "job_title"}
        return {paths[op["path"]]: op.get("value") for op in body if op["path"] in paths}
    names = {"email": "email", "position": "job_title"}
    return {names[key]: value for key, value in body.items() if key in names}


def addressed_to(kind: str, request: dict[str, Any], vendor_id: str) -> bool:
    """Whether a journaled call updates `vendor_id` (MileApp names it in the body)."""
    if kind == "mileapp":
        return bool(request["body"].get("_id") == vendor_id)
    return bool(request["path"].endswith("/" + vendor_id))


async def test_burst_of_50_updates_to_one_user_is_a_few_calls(
    gateway: Gateway, worker: None, sandbox: Sandbox
) -> None:
    """50 updates to one user posted at once: at most 5 calls per vendor, each event delivered
    by a call that carried it, and every vendor ends on the newest values."""
    bodies = [
        versioned(n, n, {"email": f"ada-v{n}@example.com", "job_title": f"title v{n}"})
        for n in range(1, 51)
    ]
    answers = await asyncio.gather(*(gateway.post(body) for body in bodies))
    assert [status for status, _ in answers] == [202] * 50
    finals = [await gateway.wait_final(f"evt-{n}") for n in range(1, 51)]
    for final in finals:
        assert {t["status"] for t in final["targets"].values()} == {"delivered"}, final
    for target in FOUR:
        calls = await sandbox.requests(KIND[target])
        assert 1 <= len(calls) <= 5, (target, len(calls))
        carried = sum(1 for f in finals if f["targets"][target]["coalesced"])
        assert carried == 50
        assert max(f["targets"][target]["coalesced"] for f in finals) > 1  # really coalesced
        last = sent_values(KIND[target], calls[-1])
        assert last["email"] == "ada-v50@example.com"
    fleet = await sandbox.user("fleet", USER_IDS["fleet-eu"])
    assert (fleet["email"], fleet["position"]) == ("ada-v50@example.com", "title v50")


async def test_older_change_arriving_late_is_skipped_as_stale(
    gateway: Gateway, worker: None, sandbox: Sandbox
) -> None:
    """Version 5 delivered, then version 3 of the same field arrives: it is `skipped: stale`
    and never sent; a field version 3 changes that nothing newer touched is still sent."""
    await gateway.post(versioned(1, 5, {"email": "new@example.com"}, targets=["fleet-eu"]))
    await gateway.wait_final("evt-1")
    await gateway.post(versioned(2, 3, {"email": "old@example.com"}, targets=["fleet-eu"]))
    stale = await gateway.wait_final("evt-2")
    assert stale["targets"]["fleet-eu"]["status"] == "skipped"
    assert stale["targets"]["fleet-eu"]["last_error"] == "stale"
    assert len(await sandbox.requests("fleet")) == 1
    mixed = {"email": "old@example.com", "job_title": "Engineer"}
    await gateway.post(versioned(3, 3, mixed, targets=["fleet-eu"]))
    assert (await gateway.wait_final("evt-3"))["targets"]["fleet-eu"]["status"] == "delivered"
    calls = await sandbox.requests("fleet")
    assert calls[-1]["body"] == {"position": "Engineer"}
    user = await sandbox.user("fleet", USER_IDS["fleet-eu"])
    assert (user["email"], user["position"]) == ("new@example.com", "Engineer")


async def test_changes_waiting_behind_a_slow_call_are_merged_field_by_field(
    gateway: Gateway, worker: None, sandbox: Sandbox
) -> None:
    """While a call is in flight, three changes to different fields arrive: the next call
    carries all three, newest value per field."""
    await sandbox.fault("fleet", latency_ms=400, count=1)
    await gateway.post(versioned(1, 1, {"email": "a1@example.com"}, targets=["fleet-eu"]))

    async def in_flight() -> bool:
        return len(await sandbox.requests("fleet")) == 1

    await wait_until(in_flight, 5, "first call in flight")
    await gateway.post(versioned(2, 2, {"email": "a2@example.com"}, targets=["fleet-eu"]))
    await gateway.post(versioned(3, 3, {"job_title": "CTO"}, targets=["fleet-eu"]))
    await gateway.post(versioned(4, 4, {"email": "a4@example.com"}, targets=["fleet-eu"]))
    finals = [await gateway.wait_final(f"evt-{n}") for n in range(1, 5)]
    calls = await sandbox.requests("fleet")
    assert [c["body"] for c in calls] == [
        {"email": "a1@example.com"},
        {"email": "a4@example.com", "position": "CTO"},
    ]
    assert [f["targets"]["fleet-eu"]["coalesced"] for f in finals] == [1, 3, 3, 3]


@pytest.mark.timeout(60)
async def test_one_call_in_flight_per_pair_across_two_worker_processes(
    two_workers: None, redis_server: EmbeddedRedis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """Fleet takes 300 ms per call while updates to one user keep arriving every 100 ms, with
    two worker processes: each call reaches Fleet only after the previous one was answered."""
    test_settings = make_settings(redis_server.url, sandbox.url)
    async with running_gateway(test_settings) as url:
        gateway = Gateway(url, http)
        await gateway.post(event("warm-up", targets=["partoo"]))
        await gateway.wait_final("warm-up", timeout_s=20)  # the worker processes are up
        await sandbox.fault("fleet", latency_ms=300, count=100)
        for n in range(1, 13):
            await gateway.post(versioned(n, n, {"job_title": f"t v{n}"}, targets=["fleet-eu"]))
            await asyncio.sleep(0.1)
        finals = [await gateway.wait_final(f"evt-{n}", timeout_s=20) for n in range(1, 13)]
    assert {f["targets"]["fleet-eu"]["status"] for f in finals} == {"delivered"}
    received = [r["received_at"] for r in await sandbox.requests("fleet")]
    assert len(received) >= 3  # several calls, so the spacing below means something
    gaps = [later - earlier for earlier, later in itertools.pairwise(received)]
    assert min(gaps) >= 0.3, gaps


# --- the property: shuffled concurrent updates, two worker processes ----------------------


class Scenario:
    """Users, each with versioned updates of some fields; posted in a shuffled order, in
    concurrent chunks."""

    def __init__(self, updates: list[tuple[int, int, dict[str, str]]], chunks: list[int]) -> None:
        self.updates = updates  # (user index, version, changes)
        self.chunks = chunks


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    users = draw(st.integers(1, 3))
    updates = []
    for user in range(users):
        count = draw(st.integers(2, 12))
        for version in range(1, count + 1):
            fields = draw(st.sets(st.sampled_from(["email", "job_title"]), min_size=1))
            changes = {
                field: (f"u{user}-v{version}@example.com" if field == "email" else f"t v{version}")
                for field in sorted(fields)
            }
            updates.append((user, version, changes))
    order = draw(st.permutations(range(len(updates))))
    chunks = draw(st.lists(st.integers(1, 8), min_size=1, max_size=10))
    return Scenario([updates[i] for i in order], chunks)


def unique_emails(changes: dict[str, str], run: int) -> dict[str, str]:
    """Emails made unique to the example: Fleet refuses an email another user already has."""
    return {
        field: value.replace("@", f".r{run}@") if field == "email" else value
        for field, value in changes.items()
    }


def newest(scenario: Scenario, user: int, field: str) -> int | None:
    versions = [v for u, v, changes in scenario.updates if u == user and field in changes]
    return max(versions, default=None)


@pytest.fixture
async def two_workers(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, tmp_path: Path
) -> Any:
    """Two `usersync worker` processes, concurrency 4 each, on the test Redis."""
    config = write_config(
        tmp_path,
        redis_server.url,
        sandbox.url,
        worker={"concurrency": 4, "poll_delay_s": 0.01, "job_timeout_s": 10},
    )
    processes = [start_usersync("worker", config) for _ in range(2)]
    yield
    for process in processes:
        assert stop(process) == 0


@pytest.mark.timeout(300)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_shuffled_concurrent_updates_end_on_the_newest_version_and_never_go_back(
    scenario: Scenario,
    two_workers: None,
    redis_server: EmbeddedRedis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
) -> None:
    """Many versioned updates per user, posted shuffled and concurrently, delivered by two
    worker processes: every vendor ends on each field's newest version, and no vendor ever
    receives an older value of a field after a newer one."""
    run = next(RUNS)  # fresh users and event ids for each example (hypothesis seeds random)
    test_settings: Settings = make_settings(redis_server.url, sandbox.url)
    users = {u for u, _, _ in scenario.updates}
    ids = {
        user: {t: f"1{run}{user}" if t == "fleet-eu" else f"r{run}-{user}" for t in FOUR}
        for user in users
    }
    for user in users:
        for target in FOUR:
            await sandbox.put_user(KIND[target], ids[user][target], {})
    async with running_gateway(test_settings) as url:
        gateway = Gateway(url, http)
        bodies = []
        for n, (user, version, changes) in enumerate(scenario.updates):
            body = event(f"e{run}-{n}", changes=unique_emails(changes, run))
            body["user"] = {"id": f"p{run}-{user}", "version": version, "external_ids": ids[user]}
            bodies.append(body)
        position, chunk = 0, 0
        while position < len(bodies):
            size = scenario.chunks[chunk % len(scenario.chunks)]
            posted = await asyncio.gather(
                *(gateway.post(b, HRIS_TOKEN) for b in bodies[position : position + size])
            )
            assert {status for status, _ in posted} == {202}
            position, chunk = position + size, chunk + 1
        finals = [await gateway.wait_final(b["event_id"], timeout_s=30) for b in bodies]
    for final in finals:
        assert {t["status"] for t in final["targets"].values()} <= {"delivered", "skipped"}, final[
            "targets"
        ]
    for target in FOUR:
        kind = KIND[target]
        journal = await sandbox.requests(kind)
        for user in users:
            vendor_id = ids[user][target]
            seen: dict[str, int] = {}
            for request in journal:
                if not addressed_to(kind, request, vendor_id):
                    continue
                for field, value in sent_values(kind, request).items():
                    version = int(VERSION_IN.findall(value)[0])
                    assert version >= seen.get(field, 0), (target, user, field, version, seen)
                    seen[field] = version
            state = await sandbox.user(kind, vendor_id)
            expected_email = newest(scenario, user, "email")
            if expected_email is not None:
                assert state["email"] == f"u{user}-v{expected_email}.r{run}@example.com"
            expected_title = newest(scenario, user, "job_title")
            job_field = {"fleet": "position", "plaspy": "description"}.get(kind)
            if expected_title is not None and job_field:
                assert state[job_field] == f"t v{expected_title}"
