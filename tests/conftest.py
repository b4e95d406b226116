"""Shared fixtures: a real redis-server for the session, and the real sandbox, gateway and
worker on loopback for each test. Nothing here is mocked: queue and wire behaviour are real."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
import yaml
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from config.settings import Settings
from core import keys
from core.logs import configure_logging
from core.status import FINAL_STATES
from sandbox import create_sandbox_app
from tests import kinds
from usersync import runtime
from usersync.redis_server import EmbeddedRedis
from usersync.runtime import serving
from usersync.sandbox_wiring import simulators_from_registry
from workers.vendors.registry import build_adapters

HRIS_TOKEN = "test-hris-token-0123456789"
IDP_TOKEN = "test-idp-token-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"
SECRET_KEY = "QWIDbk7KY2YNJTBMQf1KGJAg_AkDOY0FWvIWc8mo1gs="
"""The Fernet key that encrypts passwords at rest in the tests' settings."""
VENDOR_TOKENS = dict(kinds.TOKENS)
"""Kind -> the credential the test sandbox accepts and the test instances send (every
registered kind, from its testing module)."""
VENDOR_PATHS = {name: fixtures.sandbox_path for name, fixtures in kinds.FIXTURES.items()}
"""Kind -> its `base_url` path under the sandbox."""
INSTANCE_KINDS = {"mileapp": "mileapp", "fleet-eu": "fleet", "plaspy": "plaspy", "partoo": "partoo"}
"""The vendor instances of the test config (configuration: the tests address them by name)."""
USER_IDS = {name: kinds.DEMO_USERS[kind] for name, kind in INSTANCE_KINDS.items()}
"""Instance -> the sandbox's demo user of its kind."""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One real redis-server on a free loopback port, owned by the test session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class Sandbox:
    url: str
    http: aiohttp.ClientSession

    async def requests(self, kind: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.url}/_sandbox/{kind}/requests") as response:
            assert response.status == 200
            return list(await response.json())

    async def user(self, kind: str, user_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/_sandbox/{kind}/users/{user_id}") as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def put_user(self, kind: str, user_id: str, doc: dict[str, Any]) -> None:
        async with self.http.put(f"{self.url}/_sandbox/{kind}/users/{user_id}", json=doc) as r:
            assert r.status == 200, await r.text()

    async def fault(self, kind: str, **fault: Any) -> None:
        async with self.http.post(f"{self.url}/_sandbox/{kind}/faults", json=fault) as response:
            assert response.status in (200, 201, 204), await response.text()


@pytest.fixture
async def sandbox(http: aiohttp.ClientSession) -> AsyncIterator[Sandbox]:
    tokens = {kind: {token} for kind, token in VENDOR_TOKENS.items()}
    app = create_sandbox_app(simulators_from_registry(), tokens)
    async with serving(app, "127.0.0.1", 0) as url:
        yield Sandbox(url, http)


def make_raw_settings(redis_url: str, sandbox_url: str, **overrides: Any) -> dict[str, Any]:
    """Raw config pointing at the test Redis and sandbox, with fast retries; `overrides` merge in."""
    vendors: dict[str, Any] = {
        name: {
            "kind": kind,
            "base_url": sandbox_url + VENDOR_PATHS[kind],
            "auth": {"token": VENDOR_TOKENS[kind]},
            "timeout_s": 2,
            "retry": {
                "max_attempts": 3,
                "base_delay_s": 0.05,
                "max_delay_s": 0.2,
                "max_age_s": 600,
            },
        }
        for name, kind in INSTANCE_KINDS.items()
    }
    for name, kind in INSTANCE_KINDS.items():
        vendors[name].update(kinds.FIXTURES[kind].settings)
    raw: dict[str, Any] = {
        "redis": {"url": redis_url},
        "gateway": {"port": 0, "admin_token": ADMIN_TOKEN, "max_body_bytes": 4096},
        "sources": [
            {"name": "hris", "token": HRIS_TOKEN},
            {"name": "idp", "token": IDP_TOKEN, "allowed_targets": ["fleet-eu"]},
        ],
        # metrics_port 0: no worker binds a fixed port (tests/test_metrics.py gives its own)
        "worker": {"concurrency": 10, "poll_delay_s": 0.01, "job_timeout_s": 10, "metrics_port": 0},
        "vendors": vendors,
        "secrets": {"keys": [SECRET_KEY]},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def make_settings(redis_url: str, sandbox_url: str, **overrides: Any) -> Settings:
    return Settings.model_validate(make_raw_settings(redis_url, sandbox_url, **overrides))


@pytest.fixture
def settings(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    return make_settings(redis_server.url, sandbox.url)


@dataclass
class Gateway:
    url: str
    http: aiohttp.ClientSession

    async def post(
        self,
        body: Any,
        token: str | None = HRIS_TOKEN,
        path: str = "/v1/events",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.http.post(self.url + path, data=data, headers=sent) as response:
            return response.status, await _json_or_text(response)

    async def get(self, path: str, token: str | None = HRIS_TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.url + path, headers=headers) as response:
            return response.status, await _json_or_text(response)

    async def put(self, path: str, body: Any, token: str | None = ADMIN_TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.put(self.url + path, json=body, headers=headers) as response:
            return response.status, await _json_or_text(response)

    async def wait_final(
        self, event_id: str, timeout_s: float = 10.0, token: str = HRIS_TOKEN
    ) -> dict[str, Any]:
        """Poll the status until every target is delivered, skipped or dead."""
        answer: dict[str, Any] = {}

        async def final() -> bool:
            status, body = await self.get(f"/v1/events/{event_id}", token)
            assert status == 200, body
            answer.update(body)
            return all(t["status"] in FINAL_STATES for t in body["targets"].values())

        await wait_until(final, timeout_s, f"event {event_id} final")
        return answer


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str, every_s: float = 0.02
) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s}s: {what}")
        await asyncio.sleep(every_s)


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout_s: float = 30.0) -> None:
    """Wait until a usersync gateway at `url` answers /readyz with 200."""

    async def ready() -> bool:
        try:
            async with http.get(url + "/readyz") as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await wait_until(ready, timeout_s, f"{url} ready", every_s=0.1)


async def _json_or_text(response: aiohttp.ClientResponse) -> Any:
    raw = await response.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[str]:
    """The product's own gateway (usersync.runtime) on a free port; yields its URL."""
    assert settings.redis.url is not None
    adapters = build_adapters(settings)
    async with runtime.running_gateway(settings, settings.redis.url, adapters) as url:
        yield url


@pytest.fixture
async def gateway(
    settings: Settings, redis: Redis, http: aiohttp.ClientSession
) -> AsyncIterator[Gateway]:
    async with running_gateway(settings) as url:
        yield Gateway(url, http)


def running_worker(settings: Settings) -> contextlib.AbstractAsyncContextManager[None]:
    """The product's own in-process worker (usersync.runtime), consuming the test Redis."""
    assert settings.redis.url is not None
    return runtime.running_worker(settings, settings.redis.url, build_adapters(settings))


@pytest.fixture
async def worker(
    settings: Settings, redis_server: EmbeddedRedis, redis: Redis
) -> AsyncIterator[None]:
    async with running_worker(settings):
        yield


def event(event_id: str = "evt-1", **overrides: Any) -> dict[str, Any]:
    """A valid v1 event addressed to the four sandbox users; `overrides` replace top-level keys.
    An `idp` event carries only the external id idp may (fleet-eu's: its allowed target)."""
    external_ids = dict(USER_IDS)
    if overrides.get("source") == "idp":
        external_ids = {"fleet-eu": USER_IDS["fleet-eu"]}
    body: dict[str, Any] = {
        "event_id": event_id,
        "type": "user.updated",
        "occurred_at": "2026-11-22T10:15:00Z",
        "source": "hris",
        "user": {"id": "emp-42", "version": 1, "external_ids": external_ids},
        "changes": {"email": "ada@example.com", "given_name": "Ada", "family_name": "Lovelace"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, redis_url: str, sandbox_url: str, **overrides: Any) -> Path:
    """The test settings as a YAML file, for usersync processes."""
    path = tmp_path / "usersync.yaml"
    path.write_text(yaml.safe_dump(make_raw_settings(redis_url, sandbox_url, **overrides)))
    return path


def start_usersync(command: str, config: Path) -> subprocess.Popen[bytes]:
    """A real `usersync <command>` process (its output discarded)."""
    return subprocess.Popen(
        [sys.executable, "-m", "usersync", command, "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signal a process and reap it (killing it if it ignores the signal); its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture
def log_output() -> Iterator[io.BytesIO]:
    """Every structlog line the product writes in this process (its own `configure_logging`:
    JSON, through its processors, redaction included), at debug level, into a buffer."""
    stream = io.BytesIO()
    handlers, level = logging.root.handlers[:], logging.root.level
    configure_logging("debug", stream, cache=False)
    yield stream
    structlog.reset_defaults()
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def log_lines(stream: io.BytesIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


async def run_cli(config: Path, url: str, *args: str) -> tuple[int, str, str]:
    """`usersync ARGS --config CONFIG --url URL` as a subprocess, without blocking the event
    loop an in-process gateway answers on; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "usersync",
        *args,
        "--config",
        str(config),
        "--url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def stored_keys(redis: Redis) -> list[bytes]:
    """Every key in Redis but the sources' rate allowances (a post takes from its source's
    before the event is parsed): what a refused or previewed event must not have written."""
    allowance = keys.source_rate("").encode()
    return sorted(key for key in await redis.keys() if not key.startswith(allowance))


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write redis-py sends from now on (one per round trip), as bytes."""
    writes: list[bytes] = []
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        writes.append(command if isinstance(command, bytes) else b"".join(command))
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return writes
