"""The command line as users run it: check-config, and `usersync run` end to end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import yaml
from redis.asyncio import Redis

from tests.conftest import (
    ADMIN_TOKEN,
    SECRET_KEY,
    Gateway,
    Sandbox,
    event,
    start_usersync,
    stop,
    wait_ready,
    write_config,
)
from usersync.redis_server import EmbeddedRedis, free_port

PASSWORD = "Str0ng-Passw0rd!"


def usersync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usersync", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_check_config_accepts_the_shipped_files(project_root: Path) -> None:
    """Both shipped config files validate (example.yaml with its variables set)."""
    assert (
        usersync("check-config", "--config", str(project_root / "config/sandbox.yaml")).returncode
        == 0
    )
    env = {
        name: f"{name.lower()}-{'x' * 20}"  # distinct: tokens may not repeat
        for name in (
            "REDIS_URL",
            "USERSYNC_ADMIN_TOKEN",
            "HRIS_TOKEN",
            "HRIS_HMAC_SECRET",
            "IDP_TOKEN",
            "MILEAPP_TOKEN",
            "FLEET_API_KEY",
            "PLASPY_TOKEN",
            "PARTOO_FR_API_KEY",
        )
    }
    env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    env["USERSYNC_SECRET_KEY"] = SECRET_KEY
    result = usersync(
        "check-config", "--config", str(project_root / "config/example.yaml"), env=env
    )
    assert result.returncode == 0, result.stderr


def test_check_config_names_the_key_path_of_each_problem(tmp_path: Path) -> None:
    """A bad config exits 2 and names every offending key path, including missing variables."""
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gateway": {"port": "eighty"},
                "sources": [{"name": "hris", "token": "${NOT_SET_ANYWHERE_123}"}],
                "vendors": {
                    "fleet-eu": {
                        "kind": "fleet",
                        "base_url": "http://127.0.0.1:1",
                        "auth": {"token": "flt_sk_x"},
                        "colour": "red",
                    }
                },
            }
        )
    )
    result = usersync("check-config", "--config", str(config))
    assert result.returncode == 2
    assert (
        "sources[hris].token: environment variable NOT_SET_ANYWHERE_123 is not set" in result.stderr
    )
    config.write_text(
        yaml.safe_dump(
            {
                "gateway": {"port": "eighty"},
                "vendors": {
                    "v": {
                        "kind": "fleet",
                        "base_url": "http://127.0.0.1:1",
                        "auth": {"token": "flt_sk_x"},
                        "colour": "red",
                        "roles": {"admin": "BOSS"},
                    }
                },
            }
        )
    )
    result = usersync("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "gateway.port" in result.stderr
    assert "vendors.v.colour" in result.stderr
    config.write_text(
        yaml.safe_dump(
            {
                "vendors": {
                    "v": {
                        "kind": "fleet",
                        "base_url": "http://127.0.0.1:1",
                        "auth": {"token": "flt_sk_x"},
                        "roles": {"admin": "BOSS"},
                    },
                    "w": {"kind": "nope", "base_url": "http://127.0.0.1:1", "auth": {"token": "t"}},
                }
            }
        )
    )
    result = usersync("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "vendors.v.roles.admin" in result.stderr
    assert "vendors.w.kind" in result.stderr


def sandbox_run_config(project_root: Path, tmp_path: Path) -> tuple[Path, int]:
    """config/sandbox.yaml moved to free ports and a private data directory."""
    raw = yaml.safe_load((project_root / "config/sandbox.yaml").read_text())
    gateway_port, sandbox_port, redis_port = free_port(), free_port(), free_port()
    raw["gateway"]["port"] = gateway_port
    raw["sandbox"]["port"] = sandbox_port
    raw["redis"] = {"embedded_dir": str(tmp_path / "redis"), "embedded_port": redis_port}
    for vendor in raw["vendors"].values():
        vendor["base_url"] = vendor["base_url"].replace(":8090/", f":{sandbox_port}/")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, gateway_port


async def test_usersync_run_delivers_to_all_five_sandbox_vendors(
    project_root: Path, tmp_path: Path
) -> None:
    """`usersync run` alone (embedded Redis + sandbox + gateway + worker) takes an event and
    delivers it to all five vendors; its JSON log has one line per attempt with the operator
    keys and never the password; SIGTERM stops it cleanly, embedded Redis included."""
    config, port = sandbox_run_config(project_root, tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "usersync",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    token = "sandbox-hris-token-change-me"
    body = orjson.loads((project_root / "docs/examples/event.json").read_bytes())
    body["changes"]["password"] = PASSWORD
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, url)
            gateway = Gateway(url, http)
            status, answer = await gateway.post(body, token=token)
            assert status == 202, answer
            final = await gateway.wait_final(body["event_id"], token=token)
            states = {t: s["status"] for t, s in final["targets"].items()}
            assert states == dict.fromkeys(
                ["fleet-eu", "mileapp", "partoo", "plaspy", "scim-app"], "delivered"
            ), final
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    lines = [orjson.loads(line) for line in stdout.splitlines() if line.startswith(b"{")]
    attempts = [line for line in lines if line.get("event") == "delivery_attempt"]
    assert len(attempts) == 5
    for line in attempts:
        for key in (
            "event_id",
            "vendor",
            "user_id",
            "attempt",
            "http_status",
            "duration_ms",
            "outcome",
        ):
            assert key in line, (key, line)
        assert line["outcome"] == "delivered"
    assert PASSWORD.encode() not in stdout + stderr
    assert any(line.get("event") == "embedded_redis_stopped" for line in lines)


async def test_gateway_and_worker_processes_share_one_redis(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`usersync gateway` and `usersync worker` as separate processes deliver through one Redis,
    and both exit 0 on SIGTERM."""
    port = free_port()
    config = write_config(
        tmp_path, redis_server.url, sandbox.url, gateway={"port": port, "admin_token": ADMIN_TOKEN}
    )
    gateway = start_usersync("gateway", config)
    worker = start_usersync("worker", config)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, url)
            client = Gateway(url, http)
            assert (await client.post(event(targets=["fleet-eu", "plaspy"])))[0] == 202
            final = await client.wait_final("evt-1", timeout_s=20)
    finally:
        codes = (stop(gateway), stop(worker))
    assert {t: s["status"] for t, s in final["targets"].items()} == {
        "fleet-eu": "delivered",
        "plaspy": "delivered",
    }
    assert codes == (0, 0)
