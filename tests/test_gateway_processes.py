"""`gateway.processes: 2` on real `usersync gateway` and `usersync run` processes: both
children serve the one port and store what they accept, a killed child is replaced while the
other keeps answering, SIGHUP reaches every child, SIGTERM stops them all with no orphan, and
/metrics is the group's whoever answers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from config.loader import check_file
from tests.conftest import HRIS_TOKEN, Sandbox, event, make_raw_settings, wait_until
from tests.test_signals import NEW_HRIS_TOKEN, Process
from usersync.redis_server import EmbeddedRedis, free_port
from usersync.supervisor import PROCESS_HEADER

TRIES = 200
"""Most requests sent to see every child answer (each on a new connection: the kernel picks
a listener per connection, so 200 tries miss a child with probability 2^-200)."""


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.close()


def config(tmp_path: Path, redis_url: str | None, sandbox_url: str) -> Path:
    """The tests' settings with `gateway.processes: 2` on a free port; `redis_url` None: no
    Redis configured (`usersync run` embeds one)."""
    raw = make_raw_settings(redis_url or "", sandbox_url)
    raw["gateway"].update(port=free_port(), processes=2)
    if redis_url is None:
        raw["redis"] = {"embedded_dir": str(tmp_path / "redis"), "embedded_port": free_port()}
    path = tmp_path / "usersync.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def base_url(path: Path) -> str:
    return f"http://127.0.0.1:{yaml.safe_load(path.read_text())['gateway']['port']}"


async def start(processes: list[Process], command: str, path: Path, tmp_path: Path) -> Process:
    """`usersync <command>` with the config at `path`, once its supervisor says it is ready."""
    process = Process(command, path, tmp_path / f"{command}.log")
    processes.append(process)
    await line(process, "usersync_ready", processes=2)
    return process


async def line(of: Process, name: str, timeout_s: float = 30, **fields: Any) -> dict[str, Any]:
    """The first log line `name` having `fields`, once the process `of` has written it."""

    def found() -> list[dict[str, Any]]:
        return [
            entry
            for entry in of.events(name)
            if all(entry.get(key) == value for key, value in fields.items())
        ]

    async def written() -> bool:
        assert of.popen.poll() is None or found(), f"{of.log} ended"
        return bool(found())

    await wait_until(written, timeout_s, f"log line {name} {fields}", every_s=0.05)
    return found()[0]


async def post(url: str, body: dict[str, Any], token: str = HRIS_TOKEN) -> tuple[int, str]:
    """POST an event on a connection of its own; the status and the child that answered."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.post(
            url + "/v1/events", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        return response.status, response.headers[PROCESS_HEADER]


async def get(url: str, path: str) -> tuple[int, str, Any]:
    """GET on a connection of its own: status, the child that answered, the JSON body."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.get(url + path, headers={"Authorization": f"Bearer {HRIS_TOKEN}"}) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, response.headers.get(PROCESS_HEADER, ""), body


async def post_to_each(url: str, prefix: str, token: str = HRIS_TOKEN) -> dict[str, str]:
    """Post events, each on a new connection, until both children have accepted one; the
    event id each child accepted (bounded: TRIES)."""
    accepted: dict[str, str] = {}
    for n in range(TRIES):
        event_id = f"{prefix}-{n}"
        status, child = await post(url, event(event_id), token)
        assert status == 202, (status, child)
        accepted.setdefault(child, event_id)
        if len(accepted) == 2:
            break
    assert set(accepted) == {"1", "2"}, accepted
    return accepted


def pids(process: Process) -> dict[int, int]:
    """Child number -> pid of the latest `gateway_process_started` of each."""
    return {line["process"]: line["pid"] for line in process.events("gateway_process_started")}


def gone(pid: int) -> bool:
    """Whether no process `pid` runs (none, or a zombie whoever reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def test_both_gateway_processes_answer_and_store_what_they_accept(
    redis_server: EmbeddedRedis,
    sandbox: Sandbox,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """Both children of `usersync gateway` (two pids) answer on the one port, each stores the
    events it accepts, and /metrics counts the requests of both, whichever answers."""
    path = config(tmp_path, redis_server.url, sandbox.url)
    process = await start(processes, "gateway", path, tmp_path)
    url = base_url(path)
    children = pids(process)
    assert set(children) == {1, 2} and len(set(children.values())) == 2, children
    assert process.popen.pid not in children.values()

    accepted = await post_to_each(url, "both")
    for child, event_id in accepted.items():
        status, _, body = await get(url, f"/v1/events/{event_id}")
        assert status == 200, (child, body)
        assert body["event_id"] == event_id

    posted = max(int(event_id.rsplit("-", 1)[1]) for event_id in accepted.values()) + 1
    for _ in range(2):  # the same sum from either child
        status, _, _ = await get(url, "/healthz")
        assert status == 200
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + "/metrics") as response,
    ):
        page = await response.text()
    assert f'usersync_ingest_events_total{{outcome="accepted",source="hris"}} {posted}.0' in page
    assert "process_cpu_seconds_total" in page
    assert page.count("usersync_build_info{") == 1
    access = process.events("http_request")
    assert access and {entry.get("process") for entry in access} == {1, 2}, access[:3]


async def test_a_killed_gateway_process_is_replaced_while_the_other_answers(
    redis_server: EmbeddedRedis,
    sandbox: Sandbox,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """SIGKILL of one child: the supervisor logs it and starts another in its place; in the
    meantime every request is answered (by the other), and afterwards both answer again."""
    path = config(tmp_path, redis_server.url, sandbox.url)
    process = await start(processes, "gateway", path, tmp_path)
    url = base_url(path)
    killed = pids(process)[1]
    os.kill(killed, signal.SIGKILL)
    exited = await line(process, "gateway_process_exited", process=1)
    assert exited["pid"] == killed and exited["signal"] == "SIGKILL"
    for _ in range(30):
        status, child, _ = await get(url, "/healthz")
        assert (status, child) == (200, "2")

    async def replaced() -> bool:
        return pids(process)[1] != killed and len(process.events("usersync_ready")) >= 4

    await wait_until(replaced, 30, "child 1 started again and listening", every_s=0.05)
    assert gone(killed)
    await post_to_each(url, "after")


async def test_sighup_reaches_every_process_and_sigterm_leaves_none(
    redis_server: EmbeddedRedis,
    sandbox: Sandbox,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """SIGHUP to the supervisor: each child reads the file again (a rotated token works on
    both); SIGTERM: every child drains and exits, then the supervisor, exit code 0."""
    path = config(tmp_path, redis_server.url, sandbox.url)
    process = await start(processes, "gateway", path, tmp_path)
    url = base_url(path)
    raw = yaml.safe_load(path.read_text())
    raw["sources"][0]["token"] = NEW_HRIS_TOKEN
    path.write_text(yaml.safe_dump(raw))
    process.signal(signal.SIGHUP)

    async def reloaded() -> bool:
        return len(process.events("config_reloaded")) == 2

    await wait_until(reloaded, 15, "both children reloaded", every_s=0.05)
    await post_to_each(url, "rotated", token=NEW_HRIS_TOKEN)

    children = list(pids(process).values())
    process.signal(signal.SIGTERM)
    assert await process.exit_code() == 0
    assert all(gone(pid) for pid in children), children
    assert len(process.events("shutdown_started")) == 3  # the supervisor and each child
    assert not process.events("gateway_process_exited")  # a drain is no death to restart


async def test_children_die_with_a_killed_supervisor(
    redis_server: EmbeddedRedis,
    sandbox: Sandbox,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """SIGKILL of the supervisor, which can pass nothing on: the kernel gives each child its
    SIGTERM (PR_SET_PDEATHSIG), and each exits: no orphan keeps the port."""
    path = config(tmp_path, redis_server.url, sandbox.url)
    process = await start(processes, "gateway", path, tmp_path)
    children = list(pids(process).values())
    process.signal(signal.SIGKILL)
    assert await process.exit_code() == -signal.SIGKILL

    async def all_gone() -> bool:
        return all(gone(pid) for pid in children)

    await wait_until(all_gone, 20, f"children {children} exited", every_s=0.05)
    assert len(process.events("shutdown_started")) == 2  # each child drained


async def test_usersync_run_serves_from_children_and_delivers_in_the_parent(
    sandbox: Sandbox,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """`usersync run` with an embedded Redis and processes: 2: the Redis is up before the
    children, which use it; events either child accepts are delivered by the parent's worker;
    a killed child is replaced; SIGTERM stops children, worker and Redis (no orphan)."""
    path = config(tmp_path, None, sandbox.url)
    process = await start(processes, "run", path, tmp_path)
    lines = [entry["event"] for entry in process.lines()]
    assert lines.index("embedded_redis_started") < lines.index("gateway_process_started")
    url = base_url(path)
    accepted = await post_to_each(url, "run")
    for event_id in accepted.values():

        async def delivered(event_id: str = event_id) -> bool:
            status, _, body = await get(url, f"/v1/events/{event_id}")
            assert status == 200, body
            return all(target["status"] == "delivered" for target in body["targets"].values())

        await wait_until(delivered, 20, f"{event_id} delivered", every_s=0.1)

    killed = pids(process)[2]
    os.kill(killed, signal.SIGKILL)
    await line(process, "gateway_process_exited", process=2)

    async def replaced() -> bool:
        return pids(process)[2] != killed and len(process.events("usersync_ready")) >= 4

    await wait_until(replaced, 30, "child 2 started again and listening", every_s=0.05)
    await post_to_each(url, "run-after")

    children = list(pids(process).values())
    redis_port = yaml.safe_load(path.read_text())["redis"]["embedded_port"]
    process.signal(signal.SIGTERM)
    assert await process.exit_code() == 0
    assert all(gone(pid) for pid in children), children
    assert process.events("embedded_redis_stopped")
    reader = asyncio.open_connection("127.0.0.1", redis_port)
    with pytest.raises(OSError):
        await reader


async def test_a_taken_port_fails_the_start_naming_it(
    redis_server: EmbeddedRedis,
    sandbox: Sandbox,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """Another listener on the port (which SO_REUSEPORT alone might join): the supervisor
    starts no child, logs `gateway_processes_failed` naming the port and exits 1. Asked for
    more processes than cores, it warns first."""
    path = config(tmp_path, redis_server.url, sandbox.url)
    raw = yaml.safe_load(path.read_text())
    cores = len(os.sched_getaffinity(0))
    raw["gateway"]["processes"] = cores + 1
    path.write_text(yaml.safe_dump(raw))
    port = raw["gateway"]["port"]
    other = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port, reuse_port=True)
    try:
        process = Process("gateway", path, tmp_path / "gateway.log")
        processes.append(process)
        assert await process.exit_code() == 1
    finally:
        other.close()
        await other.wait_closed()
    failed = process.events("gateway_processes_failed")
    assert failed and str(port) in failed[0]["error"], failed
    assert not process.events("gateway_process_started")
    over = process.events("gateway_processes_over_cores")
    assert over and (over[0]["processes"], over[0]["cores"]) == (cores + 1, cores), over


def test_check_config_refuses_processes_below_one(tmp_path: Path) -> None:
    """check-config names `gateway.processes` when it is 0 or not a number."""
    raw = make_raw_settings("redis://127.0.0.1:1/0", "http://127.0.0.1:1")
    for value in (0, "two"):
        raw["gateway"]["processes"] = value
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(raw))
        report = check_file(str(path))
        assert any("gateway.processes" in str(problem) for problem in report.problems), value
