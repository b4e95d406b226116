"""The embedded Redis of `usersync run` dies with it, and a start claims only its own server.

Each test runs `usersync run` as a real process with an embedded Redis on a free port and a
data directory in tmp_path (no sandbox; the vendors are never called).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis
import yaml

from tests.conftest import make_raw_settings, stop, wait_ready
from usersync.redis_server import PIDFILE, EmbeddedRedis, free_port

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's"
)

BOUND_S = 10.0
"""The longest any probe here polls."""


def data_dir(tmp_path: Path) -> Path:
    """The embedded Redis's data directory in the tests' configs."""
    return tmp_path / "redis"


def run_config(tmp_path: Path, redis_port: int) -> tuple[Path, str]:
    """A config whose embedded Redis uses `redis_port` and `data_dir`: (file, gateway URL)."""
    gateway_port = free_port()
    raw = make_raw_settings("redis://unused", "http://127.0.0.1:9")
    raw["redis"] = {"embedded_dir": str(data_dir(tmp_path)), "embedded_port": redis_port}
    raw["gateway"]["port"] = gateway_port
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, f"http://127.0.0.1:{gateway_port}"


@pytest.fixture
def output(tmp_path: Path) -> Iterator[Path]:
    """Where a `usersync run` of the test writes stdout and stderr (one file: their order)."""
    yield tmp_path / "usersync.log"


def start_run(config: Path, output: Path) -> subprocess.Popen[bytes]:
    with output.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "usersync", "run", "--config", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def events(output: Path) -> list[str]:
    """The `event` of every line written; each line must be one JSON object."""
    lines = output.read_bytes().splitlines()
    return [orjson.loads(line)["event"] for line in lines if line.strip()]


def server_pid(port: int) -> int | None:
    """The pid the Redis on `port` reports, None if nothing answers."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        return int(client.info("server")["process_id"])
    except redis.ConnectionError:
        return None
    finally:
        client.close()


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def poll(condition: object, what: str) -> None:
    """Poll `condition()` every 20 ms until true; fail naming `what` after BOUND_S."""
    assert callable(condition)
    deadline = time.monotonic() + BOUND_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {BOUND_S}s: {what}")
        time.sleep(0.02)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    return gone.pid


def exit_code(process: subprocess.Popen[bytes]) -> int:
    """The code `process` exits with on its own (killed, and the test failed, past 30 s)."""
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        stop(process, signal.SIGKILL)
        raise AssertionError("usersync run did not exit on its own") from None


async def test_a_sigkilled_run_takes_its_redis_with_it(tmp_path: Path, output: Path) -> None:
    """After SIGKILL of `usersync run`, its redis-server is gone within seconds (no orphan)."""
    port = free_port()
    config, url = run_config(tmp_path, port)
    process = start_run(config, output)
    pid: int | None = None
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, url)
        pid = server_pid(port)
        assert pid is not None and pid != process.pid
        stop(process, signal.SIGKILL)
        poll(lambda: not running(pid), f"redis-server {pid} gone after its parent's SIGKILL")
        assert server_pid(port) is None
    finally:
        stop(process, signal.SIGKILL)
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGKILL)  # the orphan this test made, on failure


def test_a_foreign_server_on_the_port_is_an_error(tmp_path: Path, output: Path) -> None:
    """Another redis-server on the configured port: `usersync run` exits non-zero saying so,
    never claims a start, and leaves that server alone."""
    foreign = EmbeddedRedis(tmp_path / "foreign", appendonly=False).start()
    try:
        config, _ = run_config(tmp_path, foreign.port)
        assert exit_code(start_run(config, output)) != 0
        text = output.read_text()
        assert (
            f"port {foreign.port} is in use by another process; stop it or set "
            "redis.embedded_port" in text
        )
        assert "embedded_redis_failed" in events(output)
        assert "embedded_redis_started" not in events(output)
        assert foreign.process is not None and server_pid(foreign.port) == foreign.process.pid
    finally:
        foreign.stop()


def test_a_live_instance_of_the_same_directory_is_not_taken_over(
    tmp_path: Path, output: Path
) -> None:
    """A server of the same data directory whose owner is alive (here: this test) is another
    instance's: refused like any other, not stopped."""
    other = EmbeddedRedis(data_dir(tmp_path), appendonly=False).start()
    try:
        config, _ = run_config(tmp_path, other.port)
        assert exit_code(start_run(config, output)) != 0
        assert f"port {other.port} is in use by another process" in output.read_text()
        assert "embedded_redis_started" not in events(output)
        assert other.process is not None and server_pid(other.port) == other.process.pid
    finally:
        other.stop()


async def test_an_orphan_of_the_same_directory_is_replaced(tmp_path: Path, output: Path) -> None:
    """A server left by a dead `usersync run` of the same data directory (its pidfile names it
    and a parent that is gone) is shut down and a child of the new run serves instead; a clean
    stop then ends that one too."""
    orphan = EmbeddedRedis(data_dir(tmp_path), appendonly=False).start()
    assert orphan.process is not None
    config, url = run_config(tmp_path, orphan.port)
    (data_dir(tmp_path) / PIDFILE).write_bytes(
        orjson.dumps({"pid": orphan.process.pid, "parent_pid": dead_pid(), "port": orphan.port})
    )
    process = start_run(config, output)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, url)
        pid = server_pid(orphan.port)
        assert pid is not None and pid != orphan.process.pid
        assert orphan.process.wait(BOUND_S) == 0  # shut down cleanly, by the new run
        assert stop(process) == 0
        poll(lambda: not running(pid), f"redis-server {pid} gone after a clean stop")
        seen = events(output)
        assert seen.index("embedded_redis_orphan_stopped") < seen.index("embedded_redis_started")
    finally:
        stop(process, signal.SIGKILL)
        orphan.stop()
