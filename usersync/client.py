"""A small HTTP client of the gateway for the CLI's commands; a gateway that does not answer
is one `GatewayUnreachable`, which the CLI prints as one line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

TIMEOUT_S = 30


class GatewayUnreachable(Exception):
    """No answer came from the gateway: its address is wrong, it is down, or it hung."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the gateway at {url}: {reason}")


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
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session,
            session.request(method, url, data=body, headers=headers) as response,
        ):
            raw = await response.read()
    except TimeoutError as exc:
        raise GatewayUnreachable(_origin(url), f"no answer within {TIMEOUT_S} s") from exc
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ConnectionRefusedError):
            reason = "connection refused (is it running, on that port?)"
        else:
            reason = exc.os_error.strerror or str(exc.os_error)
        raise GatewayUnreachable(_origin(url), reason) from exc
    except aiohttp.ClientError as exc:
        raise GatewayUnreachable(_origin(url), str(exc) or type(exc).__name__) from exc
    try:
        parsed: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = raw.decode(errors="replace")
    return Answer(response.status, parsed)


def _origin(url: str) -> str:
    """The gateway's base address (a path may carry ids: the address is what is wrong)."""
    parsed = urlsplit(url)
    return f"{parsed.scheme}://{parsed.netloc}"
