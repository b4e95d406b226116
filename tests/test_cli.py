"""The command line as users run it: check-config, and `usersync run` end to end."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
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


async def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    """`usersync ARGS` as a subprocess (the installed command: `python -m` would import a
    `config/` folder of the working directory), without blocking the loop an in-process
    gateway answers on; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "usersync"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env if env is not None else os.environ.copy(),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_options_work_at_any_level(gateway: Gateway, tmp_path: Path) -> None:
    """--config, --url and --token given before the command, between the command and its
    subcommand, or after the subcommand: the same call, the same answer."""
    config = tmp_path / "other.yaml"
    config.write_text(
        yaml.safe_dump({"gateway": {"admin_token": ADMIN_TOKEN, "port": 1}, "sources": []})
    )
    given = ["--config", str(config), "--url", gateway.url, "--token", ADMIN_TOKEN]
    placements = [
        [*given, "dlq", "list"],
        ["dlq", *given, "list"],
        ["dlq", "list", *given],
        ["dlq", "--config", str(config), "list", "--url", gateway.url],
    ]
    answers = [await cli(*args) for args in placements]
    for code, stdout, stderr in answers:
        assert code == 0, stderr
        assert orjson.loads(stdout) == {"dead_letters": [], "total": 0, "next_cursor": None}


@pytest.mark.parametrize(
    "args",
    [["dlq", "list"], ["status", "evt-1"], ["vendors"], ["send", "docs/examples/event.json"]],
)
async def test_an_unreachable_gateway_is_one_line_and_exit_1(
    args: list[str], project_root: Path
) -> None:
    """Nothing listens at the URL: one line on stderr naming it and why, exit 1, no
    traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    config = str(project_root / "config/sandbox.yaml")
    code, stdout, stderr = await cli(*args, "--config", config, "--url", url, cwd=project_root)
    assert code == 1
    assert stdout == ""
    assert stderr.splitlines() == [
        f"usersync: cannot reach the gateway at {url}: connection refused (is it running, on "
        "that port?)"
    ]


async def test_version() -> None:
    """`usersync --version` prints the installed version."""
    code, stdout, _ = await cli("--version")
    assert code == 0
    assert stdout.strip() == f"usersync {importlib.metadata.version('usersync')}"


async def test_config_search_order_and_the_loud_sandbox_fallback(
    tmp_path: Path, project_root: Path
) -> None:
    """Without --config: $USERSYNC_CONFIG, else ./usersync.yaml; with neither, a tool falls
    back to ./config/sandbox.yaml only with a warning naming it and its demo tokens, and a
    serving command refuses to start on it."""
    env = {k: v for k, v in os.environ.items() if k != "USERSYNC_CONFIG"}
    (tmp_path / "config").mkdir()
    sandbox = project_root / "config/sandbox.yaml"
    (tmp_path / "config/sandbox.yaml").write_text(sandbox.read_text())
    code, stdout, stderr = await cli("check-config", cwd=tmp_path, env=env)
    assert code == 0, stderr
    assert "(config/sandbox.yaml, role run)" in stdout
    [warning] = stderr.splitlines()
    assert "WARNING" in warning and "config/sandbox.yaml" in warning and "demo" in warning
    code, _, stderr = await cli("gateway", cwd=tmp_path, env=env)
    assert code == 2
    assert "no config file" in stderr and "pass it with --config" in stderr
    (tmp_path / "usersync.yaml").write_text(sandbox.read_text())
    code, stdout, stderr = await cli("check-config", cwd=tmp_path, env=env)
    assert code == 0 and stderr == ""
    assert "(./usersync.yaml, role run)" in stdout
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text(sandbox.read_text())
    code, stdout, stderr = await cli(
        "check-config", cwd=tmp_path, env={**env, "USERSYNC_CONFIG": str(chosen)}
    )
    assert code == 0 and stderr == ""
    assert f"({chosen}, role run)" in stdout
    (tmp_path / "usersync.yaml").unlink()
    (tmp_path / "config/sandbox.yaml").unlink()
    code, _, stderr = await cli("check-config", cwd=tmp_path, env=env)
    assert code == 2
    assert stderr.startswith("usersync: no config file")
