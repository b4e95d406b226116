"""HTTP/1.1 spoken over raw asyncio streams: a client that sends exactly the bytes a test says
(headers without their body, a byte at a time, nothing at all), which aiohttp's client won't."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

ANSWER_WAIT_S = 10.0
"""The longest a test waits for an answer: a bound that fails a hung test, never a measure."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def code(self) -> str:
        return str(self.json()["error"]["code"])


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    """The request line and headers of a request, up to the blank line before its body."""
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address(url)
    return await asyncio.open_connection(host, port)


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One response: its status, headers (lower-cased names) and Content-Length body."""
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split()[1]), headers, body)


async def answer_to(
    url: str, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> Answer:
    """Send a request's head and `body` (possibly shorter than its Content-Length) on a new
    connection and read the answer, without sending anything more."""
    reader, writer = await connect(url)
    try:
        writer.write(head(method, path, headers) + body)
        await writer.drain()
        return await asyncio.wait_for(read_answer(reader), ANSWER_WAIT_S)
    finally:
        await close(writer)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed:
    the server may close while the client is still sending, which resets the connection)."""
    received = bytearray()
    while True:
        try:
            block = await reader.read(65536)
        except ConnectionError:
            return bytes(received)
        if not block:
            return bytes(received)
        received += block


def descriptors_for(count: int) -> int:
    """Raise this process's soft descriptor limit towards `count` plus room for the test's
    own files; the number of connections it can then open (scaled down if the hard limit is
    lower, so the test still runs, with fewer)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return count if soft == resource.RLIM_INFINITY else min(count, soft - 256)
