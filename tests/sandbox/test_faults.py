"""Fault injection: status + Retry-After, latency, body-level failure, garbage, counts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.kinds import FIXTURES

from .conftest import KINDS, Sim

# The field each vendor's valid demo body changes, and its value before.
CHANGED = {kind: FIXTURES[kind].simulator_change for kind in KINDS}


def failure_message(kind: str, body: Any) -> str:
    """The message in a vendor's failure body; fails if the body is not its failure shape."""
    return FIXTURES[kind].failure_message(body)


async def assert_unchanged(sim: Sim, kind: str) -> None:
    key, before = CHANGED[kind]
    assert (await sim.user(kind))[key] == before


async def assert_changed(sim: Sim, kind: str) -> None:
    key, before = CHANGED[kind]
    assert (await sim.user(kind))[key] != before


@pytest.mark.parametrize("kind", KINDS)
async def test_status_fault_with_retry_after(sim: Sim, kind: str) -> None:
    """A status fault answers that status in the vendor's failure shape, with Retry-After."""
    await sim.fault(kind, status=503, retry_after="2")
    answer = await sim.vendor(kind)
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "2"
    assert failure_message(kind, answer.body) == "Service Unavailable"
    await assert_unchanged(sim, kind)
    again = await sim.vendor(kind)
    assert again.status == 200
    assert "Retry-After" not in again.headers
    await assert_changed(sim, kind)


@pytest.mark.parametrize("kind", KINDS)
async def test_status_fault_applies_before_auth(sim: Sim, kind: str) -> None:
    """A vendor that is down answers 429 even to a call with a bad credential."""
    await sim.fault(kind, status=429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT")
    answer = await sim.vendor(kind, token="wrong")
    assert answer.status == 429
    assert answer.headers["Retry-After"] == "Wed, 21 Oct 2026 07:28:00 GMT"


@pytest.mark.parametrize("kind", KINDS)
async def test_count_is_consumed(sim: Sim, kind: str) -> None:
    """count=2 faults exactly the next two calls."""
    await sim.fault(kind, count=2, status=500)
    statuses = [(await sim.vendor(kind)).status for _ in range(3)]
    assert statuses == [500, 500, 200]


@pytest.mark.parametrize("kind", KINDS)
async def test_latency_delays_then_processes(sim: Sim, kind: str) -> None:
    """latency_ms delays the answer; the call is then processed normally."""
    await sim.fault(kind, latency_ms=300)
    started = time.monotonic()
    answer = await sim.vendor(kind)
    assert time.monotonic() - started >= 0.29
    assert answer.status == 200
    await assert_changed(sim, kind)


@pytest.mark.parametrize("kind", KINDS)
async def test_latency_combines_with_status(sim: Sim, kind: str) -> None:
    """latency_ms with status: the failure comes late."""
    await sim.fault(kind, latency_ms=200, status=502)
    started = time.monotonic()
    answer = await sim.vendor(kind)
    assert time.monotonic() - started >= 0.19
    assert answer.status == 502


@pytest.mark.parametrize(
    ("kind", "status"), [(kind, FIXTURES[kind].body_failure_status) for kind in KINDS]
)
async def test_body_failure(sim: Sim, kind: str, status: int) -> None:
    """body_failure: the vendor's body-level failure (HTTP 200 where documented) with the message."""
    await sim.fault(kind, body_failure="quota exceeded for this user")
    answer = await sim.vendor(kind)
    assert answer.status == status
    assert failure_message(kind, answer.body) == "quota exceeded for this user"
    await assert_unchanged(sim, kind)


@pytest.mark.parametrize("kind", KINDS)
async def test_garbage(sim: Sim, kind: str) -> None:
    """garbage: HTTP 200 with a body that is not JSON; the user is unchanged."""
    await sim.fault(kind, garbage=True)
    answer = await sim.vendor(kind)
    assert answer.status == 200
    assert answer.text == "<html>oops</html>"
    assert answer.headers["Content-Type"].startswith("text/html")
    await assert_unchanged(sim, kind)


async def test_faults_are_per_vendor_and_queued_in_order(sim: Sim) -> None:
    """A fault hits only its vendor; several faults apply one after the other."""
    await sim.fault("fleet", status=503)
    await sim.fault("fleet", garbage=True)
    assert (await sim.vendor("partoo")).status == 200
    assert (await sim.vendor("fleet")).status == 503
    assert (await sim.vendor("fleet")).text == "<html>oops</html>"
    assert (await sim.vendor("fleet")).status == 200


async def test_delete_clears_faults(sim: Sim) -> None:
    """DELETE /_sandbox/{kind}/faults drops pending faults."""
    await sim.fault("plaspy", count=5, status=503)
    listed = await sim.request("GET", "/_sandbox/plaspy/faults")
    assert listed.body["faults"][0]["remaining"] == 5
    cleared = await sim.request("DELETE", "/_sandbox/plaspy/faults")
    assert cleared.status == 200
    assert (await sim.vendor("plaspy")).status == 200


async def test_empty_fault_body_means_one_plain_fault(sim: Sim) -> None:
    """Every key is optional: an empty fault is consumed and changes nothing."""
    answer = await sim.request("POST", "/_sandbox/mileapp/faults")
    assert answer.status == 200
    assert answer.body["faults"][0]["remaining"] == 1
    assert (await sim.vendor("mileapp")).status == 200
    assert (await sim.request("GET", "/_sandbox/mileapp/faults")).body["faults"] == []


@pytest.mark.parametrize(
    "fault",
    [
        {"count": 0},
        {"count": "2"},
        {"status": 42},
        {"status": "503"},
        {"latency_ms": -1},
        {"retry_after": ["2"]},
        {"body_failure": 3},
        {"garbage": "yes"},
        {"explode": True},
    ],
)
async def test_bad_fault_is_refused(sim: Sim, fault: dict[str, Any]) -> None:
    """A malformed fault is a 400 and is not queued."""
    answer = await sim.request("POST", "/_sandbox/fleet/faults", body=fault)
    assert answer.status == 400
    assert answer.body["error"]
    assert (await sim.request("GET", "/_sandbox/fleet/faults")).body["faults"] == []


async def test_faulted_calls_are_journaled(sim: Sim) -> None:
    """Faulted calls appear in the journal with the status they were answered."""
    await sim.fault("partoo", status=503)
    await sim.fault("partoo", garbage=True)
    await sim.vendor("partoo")
    await sim.vendor("partoo")
    assert [entry["status"] for entry in await sim.journal("partoo")] == [503, 200]
