"""Slow and idle clients cannot hold the gateway: headers must arrive within
`header_timeout_s`, a body within `body_timeout_s` of its headers (else 408), an idle
keep-alive connection is closed after `keepalive_timeout_s`, and past `max_connections` the
oldest idle connection makes room, so a flood of idle connections leaves the server's
descriptors bounded and a well-behaved client served. Timeouts are 1 s here, so the test is
quick; the clients are raw sockets sending exactly what each test says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from config.settings import Settings
from tests.conftest import (
    HRIS_TOKEN,
    Gateway,
    Sandbox,
    event,
    make_settings,
    running_gateway,
    start_usersync,
    stop,
    wait_ready,
    write_config,
)
from tests.security.raw_http import (
    ANSWER_WAIT_S,
    Answer,
    close,
    closed_by_server,
    connect,
    descriptors_for,
    head,
    read_answer,
)
from usersync.redis_server import EmbeddedRedis, free_port

TIMEOUT_S = 1
FAST = {
    "header_timeout_s": TIMEOUT_S,
    "body_timeout_s": TIMEOUT_S,
    "keepalive_timeout_s": TIMEOUT_S,
}
TRICKLE_S = 0.25
"""A slow client sends one byte this often: well inside any timeout, so only the total counts."""


@pytest.fixture
def settings(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    return make_settings(redis_server.url, sandbox.url, gateway=FAST)


async def trickle(writer: asyncio.StreamWriter, closed: asyncio.Future[bytes]) -> None:
    """One byte every TRICKLE_S until the server closes the connection (or the test ends)."""
    while not closed.done():
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(TRICKLE_S)


async def slow_client(url: str, first: bytes) -> bytes:
    """Send `first`, then a byte at a time; what the server sent before closing."""
    reader, writer = await connect(url)
    writer.write(first)
    closed = asyncio.ensure_future(closed_by_server(reader))
    sender = asyncio.ensure_future(trickle(writer, closed))
    try:
        return await asyncio.wait_for(asyncio.shield(closed), ANSWER_WAIT_S)
    finally:
        closed.cancel()
        sender.cancel()
        await asyncio.gather(closed, sender, return_exceptions=True)
        await close(writer)


async def test_slow_headers_are_cut_off(settings: Settings) -> None:
    """300 connections sending their headers a byte at a time are all closed by the server
    once `header_timeout_s` has passed, without an answer."""
    count = descriptors_for(2 * 300) // 2
    first = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    async with running_gateway(settings) as url:
        received = await asyncio.gather(*(slow_client(url, first) for _ in range(count)))
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as response:
            assert response.status == 200
    assert received == [b""] * count


async def test_slow_bodies_get_408_and_are_closed(settings: Settings) -> None:
    """50 authenticated requests sending a 1,000-byte body a byte at a time each get 408
    `body_timeout` and their connections closed; 10 unauthenticated ones get 401 at once
    and are closed too."""
    body_head = {"Content-Type": "application/json", "Content-Length": "1000"}
    good = head("POST", "/v1/events", {**body_head, "Authorization": f"Bearer {HRIS_TOKEN}"})
    bad = head("POST", "/v1/events", {**body_head, "Authorization": "Bearer nobody-nobody-nobody"})
    async with running_gateway(settings) as url:
        received = await asyncio.gather(
            *(slow_client(url, good) for _ in range(50)),
            *(slow_client(url, bad) for _ in range(10)),
        )
    answers = [await _parse(raw) for raw in received]
    assert {(a.status, a.code) for a in answers[:50]} == {(408, "body_timeout")}
    assert {(a.status, a.code) for a in answers[50:]} == {(401, "unauthorized")}


async def _parse(raw: bytes) -> Answer:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    return await read_answer(reader)


async def test_idle_connections_are_closed(settings: Settings) -> None:
    """A connection that never sends a byte is closed after `header_timeout_s`; one left idle
    after an answer, after `keepalive_timeout_s`."""
    async with running_gateway(settings) as url:
        silent_reader, silent = await connect(url)
        reader, writer = await connect(url)
        writer.write(head("GET", "/healthz", {}))
        answer = await asyncio.wait_for(read_answer(reader), ANSWER_WAIT_S)
        rest = await asyncio.wait_for(closed_by_server(reader), ANSWER_WAIT_S)
        nothing = await asyncio.wait_for(closed_by_server(silent_reader), ANSWER_WAIT_S)
        await close(writer)
        await close(silent)
    assert answer.status == 200 and answer.headers.get("connection") != "close"
    assert (rest, nothing) == (b"", b"")


def _descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


IDLE_CONNECTIONS = 2000
CAP = 500


@pytest.mark.parametrize("command", ["gateway", "run"])
async def test_an_idle_flood_leaves_room_for_a_normal_client(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, tmp_path: Path, command: str
) -> None:
    """With 2,000 idle connections opened on a `usersync gateway` (or `usersync run`) process
    capped at 500, the process holds at most the cap (plus its own few) descriptors, its
    RSS grows by less than 64 MB, /healthz answers and an event is accepted; then every idle
    connection is closed."""
    count = descriptors_for(IDLE_CONNECTIONS)
    port = free_port()
    gateway = {**FAST, "port": port, "max_connections": CAP, "header_timeout_s": 3}
    config = write_config(tmp_path, redis_server.url, sandbox.url, gateway=gateway)
    process = start_usersync(command, config)
    url = f"http://127.0.0.1:{port}"
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, url)
            before = (_descriptors(process.pid), _rss_mb(process.pid))
            for _ in range(count):
                idle.append(await connect(url))
            async with http.get(url + "/healthz") as response:
                health = response.status
            status, answer = await Gateway(url, http).post(event(targets=["fleet-eu"]))
            after = (_descriptors(process.pid), _rss_mb(process.pid))
            closed = await asyncio.wait_for(
                asyncio.gather(*(closed_by_server(reader) for reader, _ in idle)), 15
            )
    finally:
        for _, writer in idle:
            await close(writer)
        code = stop(process)
    assert (health, status) == (200, 202), answer
    assert after[0] <= before[0] + CAP + 16, (before, after)
    assert after[1] < before[1] + 64, (before, after)
    assert set(closed) <= {b""}
    assert code == 0
