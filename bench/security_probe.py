"""What unauthenticated, slow and idle clients cost a gateway process: RSS, descriptors, the
connections it keeps open, and how fast it still answers a well-behaved client.

    .venv/bin/python bench/security_probe.py                          # this checkout
    .venv/bin/python bench/security_probe.py --before /tmp/old        # another one first
    .venv/bin/python bench/security_probe.py --duration 20 --idle 500 # shorter, smaller

Each checkout's `python -m usersync gateway` runs in its own process (its default timeouts
and limits) against a private redis-server, and is probed over loopback with raw sockets:

- **pre-auth**: `--preauth` (100) requests at once, each POST /v1/events:batch with a 6.5 MB
  body and the signature headers of a source that does not exist, timestamped 1970: the
  client sends the whole body and reads the answer; RSS before, at its peak, and after;
- **slow clients**, for `--duration` (60) s: `--slow-headers` (200) connections sending their
  headers a byte every 2 s, `--slow-bodies` (50) authenticated requests sending a 60 kB body
  a byte a second, `--idle` (2,000) connections sending nothing; every 5 s the gateway's RSS
  and descriptors, how many of the probe's connections it still holds open, and the latency
  of GET /healthz and of one POST /v1/events on a new connection.

Figures compare within one run on one machine; docs/security.md has those of the last one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common  # bench/ is on sys.path when a script of it runs
import orjson

PREAUTH_BODY = 6_500_000
"""Within the default batch limit (65,536 x 100 bytes): only the credentials are wrong."""
SLOW_BODY = 60_000
"""Within the default max_body_bytes (65,536): only its pace is wrong."""
SAMPLE_EVERY_S = 5.0
REQUEST_WAIT_S = 10.0
SOURCE_JSON = {"Authorization": f"Bearer {common.SOURCE_TOKEN}", "Content-Type": "application/json"}


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def status_of(port: int, request: bytes) -> int:
    """Send `request` on a new connection; the answer's status (0 if none came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), REQUEST_WAIT_S)
        return int(line.split()[1]) if line.startswith(b"HTTP/") else 0
    except (ConnectionError, TimeoutError, IndexError, ValueError):
        return 0
    finally:
        writer.close()


async def timed(port: int, request: bytes) -> float | None:
    """Milliseconds until a 2xx answer to `request` on a new connection; None if none came."""
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(status_of(port, request), REQUEST_WAIT_S)
    except (TimeoutError, OSError):
        return None
    return (time.perf_counter() - started) * 1000 if 200 <= status < 300 else None


def healthz() -> bytes:
    return head("GET", "/healthz", {"Connection": "close"})


def one_event(n: int) -> bytes:
    body = orjson.dumps(common.event_body(f"probe-{n}-{time.time_ns()}", n, 1, f"p{n}@example.com"))
    headers = {**SOURCE_JSON, "Content-Length": str(len(body)), "Connection": "close"}
    return head("POST", "/v1/events", headers) + body


async def preauth(service: common.Service, port: int, count: int) -> dict[str, Any]:
    """`count` signed requests of an unknown source with a 1970 timestamp and a 6.5 MB body."""
    body = b" " * PREAUTH_BODY
    request = head(
        "POST",
        "/v1/events:batch",
        {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "X-Usersync-Source": "nobody",
            "X-Usersync-Timestamp": "1",
            "X-Usersync-Signature": "sha256=" + "ab" * 32,
        },
    )
    before = service.rss_mb()
    peak = before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, service.rss_mb())
            await asyncio.sleep(0.05)

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            writer.write(body)
            answer = asyncio.ensure_future(reader.readline())
            with contextlib.suppress(ConnectionError):  # answered and closed before the end
                await writer.drain()
            line = await asyncio.wait_for(answer, 120)
            return int(line.split()[1]) if line.startswith(b"HTTP/") else 0
        except (ConnectionError, TimeoutError):
            return 0
        finally:
            writer.close()

    sampler = asyncio.ensure_future(sample())
    started = time.monotonic()
    statuses = await asyncio.gather(*(one() for _ in range(count)))
    elapsed = time.monotonic() - started
    done.set()
    await sampler
    await asyncio.sleep(2)
    return {
        "requests": count,
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "seconds": round(elapsed, 1),
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_after_mb": round(service.rss_mb(), 1),
    }


@dataclass
class Crowd:
    """The probe's slow and idle connections, and which of them the gateway still holds."""

    open: dict[str, int] = field(
        default_factory=lambda: {"slow_header": 0, "slow_body": 0, "idle": 0}
    )
    answered: dict[str, int] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def hold(self, kind: str, port: int, first: bytes, every_s: float | None) -> None:
        """Open a connection, send `first`, then a byte every `every_s` (never, for None)
        until the gateway closes it."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        self.open[kind] += 1
        try:
            writer.write(first)
            closed = asyncio.ensure_future(reader.read(1))
            while not closed.done():
                if every_s is None:
                    await asyncio.wait([closed])
                    break
                await asyncio.wait([closed], timeout=every_s)
                if not closed.done():
                    writer.write(b"a")
            data = b""
            with contextlib.suppress(ConnectionError):
                data = closed.result()
            if data:
                line = data + await reader.readline()
                status = line.split()[1].decode() if line.startswith(b"HTTP/") else "?"
                self.answered[f"{kind}:{status}"] = self.answered.get(f"{kind}:{status}", 0) + 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open[kind] -= 1
            writer.close()


async def slow_clients(
    service: common.Service, port: int, args: argparse.Namespace
) -> dict[str, Any]:
    crowd = Crowd()
    slow_body = head("POST", "/v1/events", {**SOURCE_JSON, "Content-Length": str(SLOW_BODY)})
    started = time.monotonic()
    rss_before = service.rss_mb()
    for _ in range(args.slow_headers):
        first = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        crowd.tasks.append(asyncio.ensure_future(crowd.hold("slow_header", port, first, 2.0)))
    for _ in range(args.slow_bodies):
        crowd.tasks.append(asyncio.ensure_future(crowd.hold("slow_body", port, slow_body, 1.0)))
    for _ in range(args.idle):
        crowd.tasks.append(asyncio.ensure_future(crowd.hold("idle", port, b"", None)))
        await asyncio.sleep(0)  # let each connect before the next: no connect storm
    samples = []
    n = 0
    while True:
        t = time.monotonic() - started
        health_ms = await timed(port, healthz())
        post_ms = await timed(port, one_event(n))
        n += 1
        samples.append(
            {
                "t_s": round(t),
                "rss_mb": round(service.rss_mb(), 1),
                "fds": descriptors(service.pid),
                **{f"open_{k}": v for k, v in crowd.open.items()},
                "healthz_ms": None if health_ms is None else round(health_ms, 1),
                "post_ms": None if post_ms is None else round(post_ms, 1),
            }
        )
        if t >= args.duration:
            break
        await asyncio.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - started - t)))
    for task in crowd.tasks:
        task.cancel()
    await asyncio.gather(*crowd.tasks, return_exceptions=True)
    return {"rss_before_mb": round(rss_before, 1), "samples": samples, "answered": crowd.answered}


def descriptors(pid: int) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return 0


async def probe(
    root: Path, redis_url: str, directory: Path, args: argparse.Namespace
) -> dict[str, Any]:
    port = common.free_port()
    config = common.write_config(
        directory,
        redis_url=redis_url,
        gateway_port=port,
        sandbox_port=common.free_port(),
        extra={"logging": {"level": "warning"}},
    )
    result: dict[str, Any] = {"root": str(root)}
    for phase in ("preauth", "slow"):  # each on a fresh process: (a) leaves no trace in (b)
        service = common.usersync("gateway", config, root, directory, name=f"{phase}-{root.name}")
        try:
            common.wait_http(f"http://127.0.0.1:{port}/readyz")
            if phase == "preauth":
                result[phase] = await preauth(service, port, args.preauth)
            else:
                result[phase] = await slow_clients(service, port, args)
        finally:
            service.stop()
    return result


def summary(result: dict[str, Any]) -> list[Any]:
    """One row of (b): the worst of every sample, and the crowd still open."""
    slow = result["slow"]
    samples = slow["samples"]

    def crowd(sample: dict[str, Any]) -> int:
        return int(sample["open_slow_header"] + sample["open_slow_body"] + sample["open_idle"])

    def worst(key: str) -> Any:
        values = [s[key] for s in samples]
        return "none" if None in values else max(values)

    at_15 = next((s for s in samples if s["t_s"] >= 15), samples[-1])
    return [
        Path(result["root"]).name,
        slow["rss_before_mb"],
        max(s["rss_mb"] for s in samples),
        max(s["fds"] for s in samples),
        crowd(at_15),
        crowd(samples[-1]),
        worst("healthz_ms"),
        worst("post_ms"),
    ]


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        pre = result["preauth"]
        rows.append(
            [
                Path(result["root"]).name,
                pre["rss_before_mb"],
                pre["rss_peak_mb"],
                pre["rss_after_mb"],
                " ".join(f"{k}x{v}" for k, v in pre["statuses"].items()),
                pre["seconds"],
            ]
        )
    text = [
        "(a) pre-auth: signed, unknown source, 1970, 6.5 MB bodies",
        common.table(
            ["checkout", "RSS before MB", "RSS peak MB", "RSS after MB", "answers", "s"], rows
        ),
        "\n(b) slow clients, summary",
        common.table(
            [
                "checkout",
                "RSS before MB",
                "RSS max MB",
                "fds max",
                "crowd open at 15 s",
                "at end",
                "healthz max ms",
                "POST max ms",
            ],
            [summary(result) for result in results],
        ),
    ]
    for result in results:
        slow = result["slow"]
        headers = [
            "t s",
            "RSS MB",
            "fds",
            "open slow-hdr",
            "open slow-body",
            "open idle",
            "healthz ms",
            "POST ms",
        ]
        rows = [
            [
                s["t_s"],
                s["rss_mb"],
                s["fds"],
                s["open_slow_header"],
                s["open_slow_body"],
                s["open_idle"],
                "none" if s["healthz_ms"] is None else s["healthz_ms"],
                "none" if s["post_ms"] is None else s["post_ms"],
            ]
            for s in slow["samples"]
        ]
        answered = " ".join(f"{k}x{v}" for k, v in sorted(slow["answered"].items())) or "none"
        text.append(
            f"\n(b) slow clients on {Path(result['root']).name} (RSS before {slow['rss_before_mb']}"
            f" MB; answers to the crowd: {answered})"
        )
        text.append(common.table(headers, rows))
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=common.ROOT, help="the checkout probed")
    parser.add_argument("--before", type=Path, help="another checkout, probed first")
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--preauth", type=int, default=100)
    parser.add_argument("--slow-headers", type=int, default=200)
    parser.add_argument("--slow-bodies", type=int, default=50)
    parser.add_argument("--idle", type=int, default=2000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.slow_headers + args.slow_bodies + args.idle + 512
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    roots = [args.before, args.root] if args.before else [args.root]
    results = []
    with tempfile.TemporaryDirectory(prefix="usersync-probe-") as tmp:
        directory = Path(tmp)
        with common.redis_server(directory) as redis_url:
            for n, root in enumerate(roots):
                sub = directory / f"run{n}"
                sub.mkdir()
                results.append(asyncio.run(probe(root.resolve(), redis_url, sub, args)))
    print(report(results))
    path = common.write_result(
        "security-probe",
        {
            "args": vars(args) | {"root": str(args.root), "before": str(args.before)},
            "results": results,
        },
    )
    print(f"\nwritten to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
