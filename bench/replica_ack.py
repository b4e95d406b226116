"""What `redis.min_replicas_ack` costs, and what one event costs Redis.

    .venv/bin/python bench/replica_ack.py            # 10 s per setting
    .venv/bin/python bench/replica_ack.py --quick    # 3 s per setting

A primary (usersync's embedded configuration: AOF, fsync every second) and one replica of it
(`replicaof`), private redis-servers on loopback; `usersync gateway` on the primary, loaded
as bench/ingest.py loads it (wrk, or its aiohttp stand-in), once with `min_replicas_ack: 0`
and once with 1 (each ingest pipeline then ends with WAIT 1). For each: events/s, latency,
and from the primary's `INFO commandstats` (reset after the warm-up) the Redis commands and
the microseconds of Redis CPU per accepted event, which set the ceiling of one primary
(docs/high-availability.md).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # bench/ is on sys.path when a script of it runs
import ingest
import redis

SETTINGS = (0, 1)
"""`redis.min_replicas_ack` values compared."""


def start_replica(directory: Path, primary_url: str) -> tuple[subprocess.Popen[bytes], int]:
    """A replica of the primary at `primary_url`, in sync; its process and port."""
    from usersync.redis_server import find_redis_binary

    port = common.free_port()
    primary = redis.Redis.from_url(primary_url)
    host, primary_port = (
        primary.connection_pool.connection_kwargs["host"],
        primary.connection_pool.connection_kwargs["port"],
    )
    directory.mkdir(parents=True, exist_ok=True)
    argv = [find_redis_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--dir", str(directory), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*argv, "--replicaof", str(host), str(primary_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while primary.info("replication").get("connected_slaves", 0) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not connect")
        time.sleep(0.1)
    primary.close()
    return process, port


TOP_LEVEL = {"evalsha", "wait", "info", "client", "config", "replconf", "ping", "script"}
"""Commands a client sends; the others in `INFO commandstats` ran inside the Lua scripts
(counted there too, their time inside EVALSHA's)."""


def main_thread_cpu_s(client: redis.Redis) -> float:
    """CPU seconds of Redis's main thread, the one that runs every command: its ceiling."""
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


def redis_cost(client: redis.Redis) -> tuple[int, float, dict[str, int]]:
    """Since the last CONFIG RESETSTAT (INFO commandstats): commands clients sent, their
    microseconds inside Redis (a script's inner commands included), and the calls of every
    command, inner ones too."""
    stats: dict[str, Any] = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    top = {name: v for name, v in stats.items() if name.removeprefix("cmdstat_") in TOP_LEVEL}
    usec = sum(float(v["usec"]) for v in top.values())
    return sum(int(v["calls"]) for v in top.values()), usec, calls


def one_setting(
    ack: int, args: argparse.Namespace, tmp: Path, redis_url: str, script: Path
) -> dict[str, Any]:
    port = common.free_port()
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    config = common.write_config(
        tmp,
        redis_url=redis_url,
        gateway_port=port,
        sandbox_port=common.free_port(),
        extra={"redis": {"min_replicas_ack": ack}, "logging": {"level": "warning"}},
    )
    service = common.usersync("gateway", config, common.ROOT, tmp, name=f"gateway-ack{ack}")
    url = f"http://127.0.0.1:{port}"
    try:
        common.wait_http(url + "/healthz")
        ingest.load(url, "/v1/events", 2, args.connections, f"warm{ack}", 1, script)
        client.config_resetstat()
        cpu_before = main_thread_cpu_s(client)
        figures = ingest.load(
            url, "/v1/events", args.duration, args.connections, f"r{ack}", 1, script
        )
        cpu_s = main_thread_cpu_s(client) - cpu_before
        commands, usec, calls = redis_cost(client)
    finally:
        service.stop()
    events = figures["requests"]
    figures.update(
        min_replicas_ack=ack,
        events=events,
        events_per_s=events / figures["seconds"],
        redis_commands_per_event=commands / max(events, 1),
        redis_command_us_per_event=usec / max(events, 1),
        redis_cpu_us_per_event=cpu_s * 1e6 / max(events, 1),
        ceiling_events_per_s=events / cpu_s if cpu_s else None,
        commands={name: round(n / max(events, 1), 2) for name, n in sorted(calls.items())},
    )
    client.flushall()
    client.close()
    return figures


def report(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["min_replicas_ack"],
            f"{r['events_per_s']:,.0f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['redis_commands_per_event']:.2f}",
            f"{r['redis_command_us_per_event']:.1f}",
            f"{r['redis_cpu_us_per_event']:.1f}",
            f"{r['ceiling_events_per_s']:,.0f}" if r["ceiling_events_per_s"] else "-",
            r["non_2xx"],
        ]
        for r in results
    ]
    headers = ["min_replicas_ack", "events/s", "p50 ms", "p99 ms", "commands sent/event"]
    headers += ["us in commands/event", "Redis main-thread CPU us/event"]
    headers += ["one primary's ceiling ev/s", "non-2xx"]
    lines = [common.table(headers, rows), ""]
    for r in results:
        lines.append(
            f"min_replicas_ack {r['min_replicas_ack']}: commands per event {r['commands']}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    with tempfile.TemporaryDirectory(prefix="usersync-bench-replica-") as name:
        tmp = Path(name)
        script = tmp / "events.lua"
        script.write_text(ingest.WRK_SCRIPT)
        with common.redis_server(tmp) as redis_url:
            replica, _ = start_replica(tmp / "replica", redis_url)
            try:
                for ack in SETTINGS:
                    results.append(one_setting(ack, args, tmp, redis_url, script))
                    print(
                        f"min_replicas_ack {ack}: {results[-1]['events_per_s']:,.0f} ev/s",
                        flush=True,
                    )
            finally:
                replica.terminate()
                replica.wait(10)
    return {"results": results, "args": vars(args), "machine": common.machine()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="3 s per setting")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    parsed = parser.parse_args()
    if parsed.quick:
        parsed.duration = 3
    outcome = main(parsed)
    print(report(outcome["results"]))
    if not parsed.no_write:
        print(f"written: {common.write_result('replica-ack', outcome)}")
