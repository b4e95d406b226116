"""Delivery benchmark: ingest-to-vendor latency, and vendor calls per event under bursts.

Starts a real `usersync run` (embedded Redis, sandbox vendors, gateway, worker in one process)
from a generated config, drives it over HTTP on loopback, and reads the sandbox's request
journal for the time each vendor received each call. Prints a table; with --json, writes the
figures to bench/results/.

    .venv/bin/python bench/delivery.py                    # this checkout
    .venv/bin/python bench/delivery.py --root /tmp/old    # another checkout, same figures

Phases:
- latency: N events, each to its own user and all four vendors, posted at a fixed rate;
  per vendor, p50/p99 of (vendor received the call) - (gateway accepted the event).
- burst: U users x K quick updates each, posted concurrently; vendor calls per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

TOKEN = "bench-hris-token-0123456789"
KINDS = {"mileapp": "mileapp", "fleet-eu": "fleet", "plaspy": "plaspy", "partoo": "partoo"}
PATHS = {
    "mileapp": "/mileapp/api/v3",
    "fleet": "/fleet/api",
    "plaspy": "/plaspy",
    "partoo": "/partoo/v2",
}
VENDOR_TOKENS = {
    "mileapp": "bench-mileapp",
    "fleet": "flt_sk_bench",
    "plaspy": "bench-plaspy",
    "partoo": "bench-partoo",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, gateway: int, sandbox: int, redis: int, concurrency: int) -> Path:
    base = f"http://127.0.0.1:{sandbox}"
    config = {
        "redis": {"embedded_dir": str(directory / "redis"), "embedded_port": redis},
        "gateway": {"host": "127.0.0.1", "port": gateway},
        "sources": [{"name": "hris", "token": TOKEN}],
        "worker": {"concurrency": concurrency, "poll_delay_s": 0.01},
        "sandbox": {"enabled": True, "host": "127.0.0.1", "port": sandbox},
        "logging": {"level": "warning"},
        "vendors": {
            name: {
                "kind": kind,
                "base_url": base + PATHS[kind],
                "auth": {"token": VENDOR_TOKENS[kind]},
                "timeout_s": 5,
                "rate_limit": {"per_second": 100000, "burst": 10000},
            }
            for name, kind in KINDS.items()
        },
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def user_ids(n: int) -> dict[str, str]:
    return {"mileapp": f"m{n}", "fleet-eu": str(1000 + n), "plaspy": f"p{n}", "partoo": f"t{n}"}


def event(event_id: str, user: int, version: int, email: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "occurred_at": "2026-11-22T10:15:00Z",
        "user": {"id": f"bench-{user}", "version": version, "external_ids": user_ids(user)},
        "changes": {"email": email, "job_title": f"title {version}"},
    }


class Bench:
    def __init__(self, http: aiohttp.ClientSession, gateway: str, sandbox: str) -> None:
        self.http = http
        self.gateway = gateway
        self.sandbox = sandbox
        self.headers = {"Authorization": f"Bearer {TOKEN}"}

    async def make_users(self, count: int) -> None:
        async def one(n: int) -> None:
            for target, vendor_id in user_ids(n).items():
                url = f"{self.sandbox}/_sandbox/{KINDS[target]}/users/{vendor_id}"
                async with self.http.put(url, json={}) as response:
                    assert response.status == 200, await response.text()

        for start in range(0, count, 50):
            await asyncio.gather(*(one(n) for n in range(start, min(count, start + 50))))

    async def post(self, body: dict[str, Any]) -> None:
        async with self.http.post(
            self.gateway + "/v1/events", json=body, headers=self.headers
        ) as response:
            assert response.status == 202, await response.text()

    async def status(self, event_id: str) -> dict[str, Any]:
        async with self.http.get(
            f"{self.gateway}/v1/events/{event_id}", headers=self.headers
        ) as response:
            return dict(await response.json())

    async def wait_final(self, event_ids: list[str], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        for event_id in event_ids:
            while True:
                body = await self.status(event_id)
                if all(
                    t["status"] in ("delivered", "skipped", "dead")
                    for t in body["targets"].values()
                ):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{event_id} not final within {timeout_s}s")
                await asyncio.sleep(0.05)

    async def journal(self, kind: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.sandbox}/_sandbox/{kind}/requests") as response:
            return list(await response.json())

    async def clear_journals(self) -> None:
        async with self.http.delete(f"{self.sandbox}/_sandbox/requests") as response:
            assert response.status in (200, 204)


def email_of(body: Any) -> str | None:
    if isinstance(body, list):
        return next((op.get("value") for op in body if op.get("path") == "/email"), None)
    return body.get("email") if isinstance(body, dict) else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency_phase(bench: Bench, count: int, rate: float, name: str) -> dict[str, Any]:
    await bench.clear_journals()
    ids = [f"{name}-{n}" for n in range(count)]
    started = time.monotonic()
    for n, event_id in enumerate(ids):
        await bench.post(event(event_id, n, 1, f"{name}{n}@example.com"))
        delay = started + (n + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await bench.wait_final(ids)
    accepted = {}
    for n, event_id in enumerate(ids):
        received = (await bench.status(event_id))["received_at"]
        accepted[f"{name}{n}@example.com"] = _epoch(received)
    figures: dict[str, Any] = {}
    everything: list[float] = []
    for target, kind in KINDS.items():
        seen: dict[str, float] = {}
        for request in await bench.journal(kind):
            email = email_of(request["body"])
            if email in accepted and email not in seen:
                seen[email] = request["received_at"] - accepted[email]
        values = [v * 1000 for v in seen.values()]
        everything += values
        figures[target] = {
            "calls": len(values),
            "p50_ms": round(statistics.median(values), 1),
            "p99_ms": round(percentile(values, 0.99), 1),
        }
    figures["all"] = {
        "calls": len(everything),
        "p50_ms": round(statistics.median(everything), 1),
        "p99_ms": round(percentile(everything, 0.99), 1),
    }
    return figures


async def burst_phase(bench: Bench, users: int, updates: int, first_user: int) -> dict[str, Any]:
    await bench.clear_journals()
    bodies = [
        event(f"burst-{u}-{k}", first_user + u, k, f"burst{u}-v{k}@example.com")
        for k in range(1, updates + 1)
        for u in range(users)
    ]
    await asyncio.gather(*(bench.post(body) for body in bodies))
    await bench.wait_final([b["event_id"] for b in bodies])
    figures: dict[str, Any] = {}
    for target, kind in KINDS.items():
        calls = len(await bench.journal(kind))
        figures[target] = {"calls": calls, "calls_per_event": round(calls / len(bodies), 3)}
    return figures


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def drive(args: argparse.Namespace, gateway: str, sandbox: str) -> dict[str, Any]:
    """Wait for the daemon, then run the phases against it."""
    async with aiohttp.ClientSession() as http:
        bench = Bench(http, gateway, sandbox)
        deadline = time.monotonic() + 30
        while True:
            try:
                async with http.get(bench.gateway + "/readyz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("usersync run did not become ready")
            await asyncio.sleep(0.1)
        await bench.make_users(args.events + args.burst_users)
        await latency_phase(bench, 20, args.rate, "warm")  # warm-up, discarded
        latency = await latency_phase(bench, args.events, args.rate, "lat")
        burst = await burst_phase(bench, args.burst_users, args.burst_updates, args.events)
    return {"latency": latency, "burst": burst}


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Start `usersync run` from the checkout at --root, drive it, stop it."""
    root = Path(args.root).resolve()
    with tempfile.TemporaryDirectory(prefix="usersync-bench-") as tmp:
        gateway, sandbox = free_port(), free_port()
        config = write_config(Path(tmp), gateway, sandbox, free_port(), args.concurrency)
        process = subprocess.Popen(
            [sys.executable, "-m", "usersync", "run", "--config", str(config)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            figures = asyncio.run(
                drive(args, f"http://127.0.0.1:{gateway}", f"http://127.0.0.1:{sandbox}")
            )
        finally:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(30)
    return {"root": str(root), **figures, "args": vars(args)}


def report(result: dict[str, Any]) -> None:
    args = result["args"]
    print(f"usersync at {result['root']}")
    print(f"latency: {args['events']} events at {args['rate']}/s, one user each, 4 vendors")
    print(f"  {'vendor':<10} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for name, row in result["latency"].items():
        print(f"  {name:<10} {row['calls']:>6} {row['p50_ms']:>8} {row['p99_ms']:>8}")
    events = args["burst_users"] * args["burst_updates"]
    print(f"burst: {args['burst_users']} users x {args['burst_updates']} updates = {events} events")
    print(f"  {'vendor':<10} {'calls':>6} {'calls/event':>12}")
    for name, row in result["burst"].items():
        print(f"  {name:<10} {row['calls']:>6} {row['calls_per_event']:>12}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="latency phase events/s")
    parser.add_argument("--burst-users", type=int, default=10)
    parser.add_argument("--burst-updates", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="also write bench/results/*.json")
    arguments = parser.parse_args()
    outcome = main(arguments)
    report(outcome)
    if arguments.json:
        results = Path(__file__).resolve().parent / "results"
        results.mkdir(exist_ok=True)
        path = results / f"delivery-{time.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(json.dumps(outcome, indent=2))
        print(f"written: {path}")
