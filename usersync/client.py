"""A small HTTP client of the gateway for the CLI's `send`, `status`, `preview` and `links`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


async def call(
    method: str,
    url: str,
    token: str | None,
    body: bytes | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request; `extra_headers` carries a signature (`core.signing`) over `body`,
    which is sent as these exact bytes."""
    headers = {"Accept": "application/json", **(extra_headers or {})}
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
