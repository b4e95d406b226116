"""What the HA tests share: usersync processes on a Sentinel-managed Redis, and sources that
post a steady stream of versioned events and remember what each answer promised."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis
import yaml
from redis.sentinel import Sentinel

from core import keys
from core.status import TargetStatus
from tests.conftest import HRIS_TOKEN, Sandbox, event, make_raw_settings, wait_ready
from tests.ha.sentinel_cluster import MASTER, SentinelCluster
from usersync.redis_server import free_port

TARGETS = ("fleet-eu", "mileapp")
KIND = {"fleet-eu": "fleet", "mileapp": "mileapp"}
RETRY_EVERY_S = 0.1
"""A refused event is posted again this soon (sooner than Retry-After: the test measures)."""
PACE_S = 0.02
"""Each source's pause between two events: several users make a few hundred events a second."""


def write_ha_config(
    tmp_path: Path, cluster: SentinelCluster, sandbox: Sandbox, name: str, **overrides: Any
) -> Path:
    """A usersync config on `cluster`'s Sentinels with `min_replicas_ack: 1`."""
    raw = make_raw_settings("redis://unused", sandbox.url, **overrides)
    raw["redis"] = {**cluster.redis_config(), "min_replicas_ack": 1}
    raw["vendors"] = {target: raw["vendors"][target] for target in TARGETS}
    raw["sources"] = [source for source in raw["sources"] if source["name"] == "hris"]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def start_process(command: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """A real `usersync <command>`, its log lines kept in `log` for a failure's post-mortem."""
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "usersync", command, "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def start_gateway(
    tmp_path: Path, cluster: SentinelCluster, sandbox: Sandbox, http: aiohttp.ClientSession, n: int
) -> tuple[str, subprocess.Popen[bytes]]:
    """A gateway process on a free port, once it answers /readyz; its URL and process."""
    port = free_port()
    config = write_ha_config(tmp_path, cluster, sandbox, f"gateway-{n}", gateway={"port": port})
    process = start_process("gateway", config, tmp_path / f"gateway-{n}.log")
    url = f"http://127.0.0.1:{port}"
    await wait_ready(http, url, timeout_s=30)
    return url, process


def start_worker(
    tmp_path: Path, cluster: SentinelCluster, sandbox: Sandbox, n: int, **overrides: Any
) -> subprocess.Popen[bytes]:
    """A worker process (not waited for: the sources' events wait in Redis meanwhile)."""
    config = write_ha_config(tmp_path, cluster, sandbox, f"worker-{n}", **overrides)
    return start_process("worker", config, tmp_path / f"worker-{n}.log")


async def make_users(sandbox: Sandbox, count: int) -> list[dict[str, str]]:
    """`count` users known to both sandbox vendors; their external ids per instance."""
    users = []
    for n in range(count):
        ids = {"fleet-eu": str(7000 + n), "mileapp": f"ha{n}"}
        for target, vendor_id in ids.items():
            await sandbox.put_user(KIND[target], vendor_id, {})
        users.append(ids)
    return users


def email(user: int, version: int) -> str:
    return f"u{user}-v{version}@example.com"


@dataclass
class Tally:
    """What the sources saw: every answer's status, the events promised (202, or 200 for a
    retry of one stored), anything else, and when the first 202 after `kill_at` came."""

    statuses: Counter[int] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    accepted: dict[str, tuple[int, int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    missing_retry_after: int = 0
    unreachable: int = 0
    kill_at: float | None = None
    first_202_after_kill: float | None = None
    highest: dict[int, int] = field(default_factory=dict)
    recovered: asyncio.Event = field(default_factory=asyncio.Event)


async def post_until_accepted(
    http: aiohttp.ClientSession,
    urls: list[str],
    body: dict[str, Any],
    tally: Tally,
    timeout_s: float,
) -> None:
    """Post `body` until it is accepted (202, or 200 duplicate on a retry), recording every
    answer; a 503 must carry Retry-After. A gateway that cannot be reached (killed) is
    counted in `tally.unreachable` and the next of `urls` tried, as a load balancer would.
    Gives up after `timeout_s` (the test then fails)."""
    deadline = time.monotonic() + timeout_s
    turn = body["user"]["version"]
    headers = {"Authorization": f"Bearer {HRIS_TOKEN}", "Content-Type": "application/json"}
    while time.monotonic() < deadline:
        url = urls[turn % len(urls)]
        sent_at = time.monotonic()
        try:
            async with http.post(
                url + "/v1/events", data=orjson.dumps(body), headers=headers
            ) as response:
                status, raw = response.status, await response.read()
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError):
            tally.unreachable += 1
            turn += 1
            await asyncio.sleep(RETRY_EVERY_S)
            continue
        tally.statuses[status] += 1
        if status == 202 or (status == 200 and orjson.loads(raw).get("duplicate")):
            killed = tally.kill_at
            # the first 202 to a request sent after the kill (one sent before may be answered
            # by the old primary just before it died)
            if (
                killed is not None
                and sent_at > killed
                and status == 202
                and not tally.recovered.is_set()
            ):
                tally.first_202_after_kill = time.monotonic()
                tally.recovered.set()
            tally.accepted[body["event_id"]] = (body["user"]["id"], body["user"]["version"])
            return
        if status != 503:
            tally.unexpected.append(f"{body['event_id']}: {status} {raw[:200]!r}")
        else:
            tally.refusals[orjson.loads(raw)["error"]["code"]] += 1
            tally.missing_retry_after += retry_after is None
        await asyncio.sleep(RETRY_EVERY_S)
    tally.unexpected.append(f"{body['event_id']}: not accepted within {timeout_s}s")


async def source(
    http: aiohttp.ClientSession,
    urls: list[str],
    user: int,
    ids: dict[str, str],
    tally: Tally,
    stop: asyncio.Event,
) -> None:
    """One user's events, versions 1, 2, ... one at a time, alternating between `urls`,
    each posted until accepted, until `stop` is set."""
    version = 0
    while not stop.is_set():
        version += 1
        body = event(f"ha-u{user}-v{version}", targets=list(TARGETS))
        body["user"] = {"id": f"ha-user-{user}", "version": version, "external_ids": ids}
        body["changes"] = {"email": email(user, version)}
        await post_until_accepted(http, urls, body, tally, timeout_s=30)
        tally.highest[user] = version
        await asyncio.sleep(PACE_S)


def undelivered(cluster: SentinelCluster, accepted: dict[str, tuple[int, int]]) -> list[str]:
    """The accepted events some target of which is not `delivered` yet, read from the
    primary the Sentinels name now."""
    addresses = [("127.0.0.1", node.port) for node in cluster.sentinels]
    sentinel = Sentinel(addresses, socket_timeout=2)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(MASTER, socket_timeout=5)  # type: ignore[no-untyped-call]
    ids = sorted(accepted)
    with client.pipeline(transaction=False) as pipe:
        for event_id in ids:
            pipe.hmget(keys.event("hris", event_id), [keys.status_field(t) for t in TARGETS])
        replies = pipe.execute()
    client.close()
    late = []
    for event_id, statuses in zip(ids, replies, strict=True):
        states = [TargetStatus.from_json(s).status if s else "missing" for s in statuses]
        if states != ["delivered"] * len(TARGETS):
            late.append(f"{event_id}: {states}")
    return late


async def wait_delivered(
    cluster: SentinelCluster, accepted: dict[str, tuple[int, int]], timeout_s: float
) -> list[str]:
    """Poll until every accepted event is delivered to every target, or `timeout_s`; what is
    still not delivered then (empty: all were)."""
    deadline = time.monotonic() + timeout_s
    while True:
        late = await asyncio.to_thread(undelivered, cluster, accepted)
        if not late or time.monotonic() > deadline:
            return late
        await asyncio.sleep(0.5)


async def last_values(sandbox: Sandbox, users: list[dict[str, str]]) -> dict[tuple[str, int], str]:
    """The email each vendor holds now, per (target, user)."""
    held = {}
    for user, ids in enumerate(users):
        for target in TARGETS:
            state = await sandbox.user(KIND[target], ids[target])
            held[(target, user)] = str(state.get("email"))
    return held
