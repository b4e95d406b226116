"""A small HTTP client of the gateway for the CLI's `send`, `status`, `preview` and `links`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


async def call(method: str, url: str, token: str | None, body: bytes | None = None) -> Answer:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.request(method, url, data=body, headers=headers) as response,
    ):
        raw = await response.read()
    try:
        parsed: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = raw.decode(errors="replace")
    return Answer(response.status, parsed)
