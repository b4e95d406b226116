"""Signals on real `usersync` processes: SIGTERM drains (readiness first, then what is in
flight, what could not finish handed back and logged), SIGHUP reloads the config file
(tokens, vendors) without dropping work in flight, and refuses a bad file keeping the old
config."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from redis.asyncio import Redis

from config.settings import WorkerSettings
from core import keys
from tests.conftest import (
    HRIS_TOKEN,
    Gateway,
    Sandbox,
    event,
    make_raw_settings,
    running_gateway,
    running_worker,
    wait_ready,
    wait_until,
)
from usersync.redis_server import EmbeddedRedis, free_port

NEW_HRIS_TOKEN = "rotated-hris-token-0123456789"


class Process:
    """A real `usersync <command>` with its log lines in a file."""

    def __init__(self, command: str, config: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "usersync", command, "--config", str(config)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def lines(self) -> list[dict[str, Any]]:
        raw = self.log.read_bytes().splitlines()
        return [orjson.loads(line) for line in raw if line.startswith(b"{")]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    async def logged(self, name: str, timeout_s: float = 15) -> dict[str, Any]:
        """The first line `name`, once the process has written it."""

        async def written() -> bool:
            return bool(self.events(name))

        await wait_until(written, timeout_s, f"log line {name}", every_s=0.05)
        return self.events(name)[0]

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    async def exit_code(self, timeout_s: float = 30) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.popen.wait(timeout_s))

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._out.close()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.close()


def write_config(path: Path, redis_url: str, sandbox_url: str, **overrides: Any) -> Path:
    """The test settings for a process of its own: a free gateway port, no worker metrics
    port (several workers run on this host), `overrides` merged in per section."""
    raw = make_raw_settings(redis_url, sandbox_url)
    raw["gateway"]["port"] = free_port()
    if "metrics_port" in WorkerSettings.model_fields:
        raw["worker"]["metrics_port"] = 0
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path.write_text(yaml.safe_dump(raw))
    return path


def gateway_url(config: Path) -> str:
    return f"http://127.0.0.1:{yaml.safe_load(config.read_text())['gateway']['port']}"


async def readiness(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url + "/readyz") as response:
        return response.status, await response.json()


async def test_sigterm_turns_readiness_off_first_then_drains(
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """On SIGTERM the gateway answers /readyz 503 `shutting_down` at once while it still
    serves events for `gateway.drain_delay_s`, then exits 0 with its log saying so."""
    config = write_config(
        tmp_path / "gateway.yaml",
        redis_server.url,
        sandbox.url,
        gateway={"drain_delay_s": 3},
        shutdown_grace_s=10,
    )
    gateway = Process("gateway", config, tmp_path / "gateway.log")
    processes.append(gateway)
    url = gateway_url(config)
    await wait_ready(http, url)
    gateway.signal(signal.SIGTERM)

    async def unready() -> bool:
        return (await readiness(http, url))[0] == 503

    await wait_until(unready, 10, "/readyz 503")
    status, body = await readiness(http, url)
    assert (status, body["error"]["code"]) == (503, "shutting_down")
    posted = await Gateway(url, http).post(event("during-drain"))
    assert posted[0] == 202  # still serving while load balancers catch up
    assert await gateway.exit_code() == 0
    started = gateway.events("shutdown_started")
    assert [(line["signal"], line["drain_delay_s"]) for line in started] == [("SIGTERM", 3)]
    refusals = [
        line
        for line in gateway.events("http_request")
        if line["route"] == "/readyz" and line["status"] == 503
    ]
    assert refusals and refusals[0]["code"] == "shutting_down"
    assert gateway.events("usersync_stopped")


async def test_sigterm_hands_back_deliveries_still_running_after_the_grace(
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """A worker whose delivery outlasts `shutdown_grace_s` cuts it off, logs the job it
    hands back and the events whose lease it released, exits 0, and another worker then
    delivers them (nothing lost)."""
    raw = make_raw_settings(redis_server.url, sandbox.url)
    settings_path = write_config(
        tmp_path / "worker.yaml", redis_server.url, sandbox.url, shutdown_grace_s=0.3
    )
    worker = Process("worker", settings_path, tmp_path / "worker.log")
    processes.append(worker)
    await worker.logged("worker_started")
    await sandbox.fault("fleet", latency_ms=1500, count=1)
    from config.settings import Settings

    settings = Settings.model_validate(raw)
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        assert (await gateway.post(event("slow-1", targets=["fleet-eu"])))[0] == 202

        async def in_flight() -> bool:
            return len(await sandbox.requests("fleet")) == 1

        await wait_until(in_flight, 15, "the call in flight")
        worker.signal(signal.SIGTERM)
        assert await worker.exit_code() == 0
        [handed] = worker.events("shutdown_handed_back")
        assert handed["count"] == 1 and handed["jobs"][0].startswith("deliver:fleet-eu:emp-42:")
        [released] = worker.events("lease_released")
        assert released["events"] == ["hris:slow-1"] and released["vendor"] == "fleet-eu"
        async with running_worker(settings):
            final = await gateway.wait_final("slow-1", timeout_s=20)
    assert final["targets"]["fleet-eu"]["status"] == "delivered"


async def test_sighup_reloads_tokens_and_vendors_without_dropping_work_in_flight(
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """`usersync run` (gateway and worker) on SIGHUP: the source's old token is refused
    (401) and the new one accepted (202); a delivery in flight during the reload finishes
    with the settings it started with (delivered), the next one uses the new vendor
    settings (a base URL that answers 404: dead)."""
    config = write_config(tmp_path / "run.yaml", redis_server.url, sandbox.url)
    run = Process("run", config, tmp_path / "run.log")
    processes.append(run)
    url = gateway_url(config)
    await wait_ready(http, url)
    gateway = Gateway(url, http)
    await sandbox.fault("fleet", latency_ms=1500, count=1)
    assert (await gateway.post(event("before-1", targets=["fleet-eu"])))[0] == 202

    async def in_flight() -> bool:
        return len(await sandbox.requests("fleet")) == 1

    await wait_until(in_flight, 15, "the call in flight")
    raw = yaml.safe_load(config.read_text())
    raw["sources"][0]["token"] = NEW_HRIS_TOKEN
    raw["vendors"]["fleet-eu"]["base_url"] = sandbox.url + "/nowhere"
    config.write_text(yaml.safe_dump(raw))
    run.signal(signal.SIGHUP)
    reloaded = await run.logged("config_reloaded")
    assert reloaded["changed"] == ["sources", "vendors"] and reloaded["needs_restart"] == []
    assert (await gateway.post(event("after-old"), token=HRIS_TOKEN))[0] == 401
    after = event("after-new", targets=["fleet-eu"])
    after["user"] = {"id": "emp-43", "version": 1, "external_ids": {"fleet-eu": "42"}}
    assert (await gateway.post(after, token=NEW_HRIS_TOKEN))[0] == 202
    before = await gateway.wait_final("before-1", timeout_s=20, token=NEW_HRIS_TOKEN)
    moved = await gateway.wait_final("after-new", timeout_s=20, token=NEW_HRIS_TOKEN)
    assert before["targets"]["fleet-eu"]["status"] == "delivered"
    assert moved["targets"]["fleet-eu"]["status"] == "dead"
    assert moved["targets"]["fleet-eu"]["last_http_status"] == 404
    run.signal(signal.SIGTERM)
    assert await run.exit_code() == 0


async def test_sighup_with_a_broken_file_is_refused_and_the_old_config_stays(
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """A file with problems (an unknown key, a short token) is refused on SIGHUP: one
    `config_reload_refused` line naming each problem, and the running config still serves
    (the old token posts, 202). A restart-only change is applied in part: the rest of the
    file takes effect and `needs_restart` names the key."""
    config = write_config(tmp_path / "gateway.yaml", redis_server.url, sandbox.url)
    gateway = Process("gateway", config, tmp_path / "gateway.log")
    processes.append(gateway)
    url = gateway_url(config)
    await wait_ready(http, url)
    good = config.read_text()
    raw = yaml.safe_load(good)
    raw["sources"][0]["token"] = "short"
    raw["gateway"]["admn_token"] = "x" * 20
    config.write_text(yaml.safe_dump(raw))
    gateway.signal(signal.SIGHUP)
    refused = await gateway.logged("config_reload_refused")
    problems = " | ".join(refused["problems"])
    assert "sources[hris].token" in problems and "did you mean 'admin_token'" in problems
    client = Gateway(url, http)
    assert (await client.post(event("still-old"), token=HRIS_TOKEN))[0] == 202
    raw = yaml.safe_load(good)
    raw["gateway"]["port"] = free_port()
    raw["logging"] = {"level": "warning"}
    config.write_text(yaml.safe_dump(raw))
    gateway.signal(signal.SIGHUP)
    reloaded = await gateway.logged("config_reloaded")
    assert reloaded["needs_restart"] == ["gateway.port"] and reloaded["changed"] == ["logging"]
    assert (await client.post(event("same-port"), token=HRIS_TOKEN))[0] == 202
    gateway.signal(signal.SIGTERM)
    assert await gateway.exit_code() == 0
    accepted = [line["event_id"] for line in gateway.events("event_accepted")]
    assert accepted == ["still-old"]  # info lines stop once the level is warning


@pytest.mark.parametrize(
    ("command", "sig"),
    [("worker", signal.SIGTERM), ("run", signal.SIGTERM), ("run", signal.SIGINT)],
)
async def test_a_stop_signal_on_an_idle_worker_runs_its_shutdown(
    command: str,
    sig: int,
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """A drained worker (`usersync worker`, or the one inside `usersync run`) whose arq loop
    ended on its own still runs its shutdown: its
    heartbeat is dropped at once (not left to expire) and its HTTP session is closed (no
    "Unclosed client session" from asyncio at exit)."""
    config = write_config(tmp_path / "worker.yaml", redis_server.url, sandbox.url)
    worker = Process(command, config, tmp_path / "worker.log")
    processes.append(worker)

    async def beating() -> bool:
        return bool(await redis.keys(keys.HEARTBEAT_PREFIX + "*"))

    await wait_until(beating, 15, "the worker's heartbeat")
    await worker.logged("usersync_ready")  # every part is up, the signals are the process's
    worker.signal(sig)
    assert await worker.exit_code() == 0
    assert await redis.keys(keys.HEARTBEAT_PREFIX + "*") == []
    assert b"Unclosed" not in worker.log.read_bytes()
