"""Fixtures of the sandbox tests: the real sandbox app on loopback and a real HTTP client."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox import Simulator, create_sandbox_app
from tests.kinds import DEMO_USERS, FIXTURES, NAMES, TOKENS
from usersync.sandbox_wiring import simulators_from_registry

KINDS = NAMES
SIMULATORS: tuple[Simulator, ...] = simulators_from_registry()
"""The registered kinds' simulators, as usersync's composition root passes them."""
# A valid, state-changing body for each vendor's demo user (from each kind's testing module).
VALID_BODIES: dict[str, Any] = {kind: FIXTURES[kind].simulator_body for kind in KINDS}
UNSET = object()


@dataclass(frozen=True)
class Answer:
    """What came back: status, headers and the body as JSON (or text when it is not JSON)."""

    status: int
    headers: Mapping[str, str]
    body: Any
    text: str


@dataclass
class Sim:
    """A running sandbox and the calls the tests make to it."""

    url: str
    http: aiohttp.ClientSession

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = UNSET,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if body is not UNSET:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.url + path, data=data, headers=sent) as r:
            text = await r.text()
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            return Answer(r.status, dict(r.headers), parsed, text)

    async def vendor(
        self,
        kind: str,
        body: Any = UNSET,
        *,
        user_id: str | None = None,
        token: str | None = "default",
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Call the kind's documented update endpoint, authenticated as that vendor expects,
        a `body` sent as the kind's media type."""
        fixtures = FIXTURES[kind]
        user_id = DEMO_USERS[kind] if user_id is None else user_id
        token = fixtures.token if token == "default" else token
        path = fixtures.update_url(fixtures.sandbox_path, user_id)
        sent = dict(headers or {})
        if token is not None:
            sent.update(fixtures.auth_headers(token))
        if body is UNSET and data is None:
            body = VALID_BODIES[kind]
        if body is not UNSET:
            sent.setdefault("Content-Type", fixtures.media_type)
        return await self.request(fixtures.update_method, path, body=body, data=data, headers=sent)

    async def user(self, kind: str, user_id: str | None = None) -> dict[str, Any]:
        user_id = DEMO_USERS[kind] if user_id is None else user_id
        answer = await self.request("GET", f"/_sandbox/{kind}/users/{user_id}")
        assert answer.status == 200, answer.text
        return dict(answer.body)

    async def put_user(self, kind: str, user_id: str, doc: dict[str, Any]) -> Answer:
        return await self.request("PUT", f"/_sandbox/{kind}/users/{user_id}", body=doc)

    async def fault(self, kind: str, **fault: Any) -> Answer:
        answer = await self.request("POST", f"/_sandbox/{kind}/faults", body=fault)
        assert answer.status == 200, answer.text
        return answer

    async def journal(self, kind: str) -> list[dict[str, Any]]:
        answer = await self.request("GET", f"/_sandbox/{kind}/requests")
        assert answer.status == 200, answer.text
        return list(answer.body)


def sandbox_app(
    tokens: Mapping[str, Collection[str]], seed_demo_users: bool = True
) -> web.Application:
    """A sandbox app serving every registered kind's simulator."""
    return create_sandbox_app(SIMULATORS, tokens, seed_demo_users)


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    """The sandbox with demo users, served on a free loopback port."""
    app = sandbox_app({kind: {token} for kind, token in TOKENS.items()})
    async with aiohttp.ClientSession() as http, serve_app(app) as url:
        yield Sim(url, http)


@pytest.fixture
async def empty_sim() -> AsyncIterator[Sim]:
    """The sandbox without demo users."""
    app = sandbox_app({kind: {token} for kind, token in TOKENS.items()}, False)
    async with aiohttp.ClientSession() as http, serve_app(app) as url:
        yield Sim(url, http)
