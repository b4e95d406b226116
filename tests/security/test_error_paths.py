"""A client's faults are one structured line each, never a traceback, on a real gateway.

`usersync gateway` runs as a process; the test speaks raw HTTP to it over loopback (a client
library would refuse to send these requests), then stops it and reads everything it wrote.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.conftest import HRIS_TOKEN, stop, wait_ready, write_config
from usersync.redis_server import EmbeddedRedis, free_port


def json_lines(raw: bytes) -> list[dict[str, Any]]:
    """Every line of `raw` as a JSON object (each must be one)."""
    lines = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def start_gateway(config: Path, stdout: Path, stderr: Path) -> subprocess.Popen[bytes]:
    """`usersync gateway`, its stdout and stderr into the two files."""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "usersync", "gateway", "--config", str(config)],
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def exchange(port: int, data: bytes, *, hang_up: bool = False) -> bytes:
    """Send raw bytes; the answer until the server closes, or b"" when we `hang_up` first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if hang_up:
            return b""
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_client_faults_are_one_json_line_each(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """A body cut off by a disconnect, a NUL in a header and a 100 KB header line: the gateway
    writes only JSON lines, no traceback, and each fault is one info event
    (`client_disconnected`, `bad_http_request` with its reason)."""
    port = free_port()
    config = write_config(tmp_path, redis_server.url, "http://127.0.0.1:9", gateway={"port": port})
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    process = start_gateway(config, stdout, stderr)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, f"http://127.0.0.1:{port}")
        head = (
            "POST /v1/events HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {HRIS_TOKEN}\r\nContent-Length: 1000\r\n\r\n"
        )
        await exchange(port, head.encode() + b'{"event_id": "cut-', hang_up=True)
        nul = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: g\r\nX-Note: a\x00b\r\n\r\n")
        long_line = b"X-Note: " + b"a" * 100_000
        big = await exchange(
            port, b"GET /healthz HTTP/1.1\r\nHost: g\r\n" + long_line + b"\r\n\r\n"
        )
        assert nul.startswith(b"HTTP/1.") and b" 400 " in nul.split(b"\r\n", 1)[0]
        assert big.startswith(b"HTTP/1.") and b" 400 " in big.split(b"\r\n", 1)[0]
    finally:
        assert stop(process) == 0
    raw = stdout.read_bytes() + stderr.read_bytes()
    assert b"Traceback" not in raw
    lines = json_lines(stdout.read_bytes()) + json_lines(stderr.read_bytes())
    faults = [
        line for line in lines if line["event"] in ("client_disconnected", "bad_http_request")
    ]
    # The hung-up body is noticed whenever the server next reads it: in any order.
    assert sorted((line["event"], line["level"]) for line in faults) == [
        ("bad_http_request", "info"),
        ("bad_http_request", "info"),
        ("client_disconnected", "info"),
    ], lines
    (cut,) = [line for line in faults if line["event"] == "client_disconnected"]
    assert cut["path"] == "/v1/events"
    reasons = sorted(line["reason"] for line in faults if line["event"] == "bad_http_request")
    assert reasons[0].startswith("Got more than 8190 bytes when reading")
    assert reasons[1] == "Invalid header value char"
    assert not [line for line in lines if line["level"] in ("error", "critical")], lines
