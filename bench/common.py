"""What every benchmark shares: ports, processes, a Redis of its own, RSS, percentiles, results.

The benchmarks start real processes (`python -m usersync gateway|worker|sandbox` of the
checkout at `--root`, a `redis-server` of their own) and drive them over loopback, so what they
measure is what an operator runs. Nothing here imports the product's code except the embedded
Redis helper and the Redis layout (`core.keys`, the keys the figures count): a benchmark of
another checkout (`--root`) measures that checkout, counting the keys this one's layout names.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

SOURCE_TOKEN = "bench-hris-token-0123456789"
KINDS = {"mileapp": "mileapp", "fleet-eu": "fleet", "plaspy": "plaspy", "partoo": "partoo"}
"""Vendor instance -> kind: one instance of each of the four vendors."""
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
ONE_TARGET = "plaspy"
"""The instance a one-target event names (`targets: [ONE_TARGET]`): a PATCH of two fields
(JSON Patch). Not fleet-eu: its simulator checks a new email against every user it holds, so
with the 20,000 users of a one-target saturation the sandbox, not usersync, was the limit
(110 deliveries/s, the sandbox at 75% CPU in `_email_taken`)."""
SECRET_KEY = "xBwRCV9J1xC8ilSJDDGtkJaOoUfT3fmPgm1tOVHx69Y="  # a bench-only Fernet key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vendor_user_ids(n: int) -> dict[str, str]:
    """User n's id at each vendor instance (shapes each simulator accepts)."""
    return {"mileapp": f"m{n}", "fleet-eu": str(1000 + n), "plaspy": f"p{n}", "partoo": f"t{n}"}


def event_body(
    event_id: str, user: int, version: int, email: str, targets: Sequence[str] | None = None
) -> dict[str, Any]:
    """A typical ~400-byte event: two changed fields, links to every vendor instance."""
    body: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": "2026-11-22T10:15:00Z",
        "user": {"id": f"bench-{user}", "version": version, "external_ids": vendor_user_ids(user)},
        "changes": {"email": email, "job_title": f"Engineer, level {version}"},
    }
    if targets is not None:
        body["targets"] = list(targets)
    return body


def email_of(body: Any) -> str | None:
    """The email a vendor call carries (Plaspy's body is a JSON Patch list)."""
    if isinstance(body, list):
        return next(
            (op.get("value") for op in body if isinstance(op, dict) and op.get("path") == "/email"),
            None,
        )
    return body.get("email") if isinstance(body, dict) else None


def write_config(
    directory: Path,
    *,
    redis_url: str,
    gateway_port: int,
    sandbox_port: int,
    concurrency: int = 50,
    poll_delay_s: float = 0.01,
    retention_s: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A usersync config for the benchmark: its own Redis, the four vendors on the sandbox
    with rate limits (the vendors' and the source's) out of the way, warnings-only logs."""
    base = f"http://127.0.0.1:{sandbox_port}"
    config: dict[str, Any] = {
        "redis": {"url": redis_url},
        "gateway": {"host": "127.0.0.1", "port": gateway_port},
        # The benchmark measures throughput: the default source rate limit (1000/s) raised
        "sources": [
            {
                "name": "hris",
                "token": SOURCE_TOKEN,
                "rate_limit": {"per_second": 100000, "burst": 100000},
            }
        ],
        # metrics_port 0: several workers on one host would each want the default port (the
        # bare arq baseline serves none either)
        "worker": {
            "concurrency": concurrency,
            "poll_delay_s": poll_delay_s,
            "metrics_port": 0,
        },
        "secrets": {"keys": [SECRET_KEY]},
        "sandbox": {"enabled": True, "host": "127.0.0.1", "port": sandbox_port},
        "logging": {"level": "info"},  # the default: one line per event and attempt
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
    if retention_s is not None:
        config["retention"] = {"events_s": retention_s}
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Service:
    """A child process of the benchmark in its own session (so a signal reaches it alone)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident set size now, from /proc (0 once it has exited)."""
        return rss_mb(self.pid)

    def stop(self, timeout_s: float = 30) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it (a supervisor and its children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its live descendants (a gateway of several processes)."""
    return sum(cpu_seconds(each) for each in process_tree(pid))


def start(
    name: str, argv: Sequence[str], root: Path, directory: Path, env: dict[str, str] | None = None
) -> Service:
    """Start a process with cwd `root` and PYTHONPATH `root`; its output goes to a log file."""
    log_path = directory / f"{name}.log"
    process = subprocess.Popen(
        list(argv),
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Service(name, process, log_path)


def usersync(command: str, config: Path, root: Path, directory: Path, name: str = "") -> Service:
    """`python -m usersync <command> --config <config>` of the checkout at `root`."""
    return start(
        name or command,
        [sys.executable, "-m", "usersync", command, "--config", str(config)],
        root,
        directory,
    )


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A redis-server of the benchmark's own, configured as usersync's embedded one (AOF,
    fsync every second); yields its URL."""
    sys.path.insert(0, str(ROOT))
    from usersync.redis_server import EmbeddedRedis

    server = EmbeddedRedis(directory / "redis").start()
    try:
        yield server.url
    finally:
        server.stop()


def wait_http(url: str, timeout_s: float = 30) -> None:
    """Block until GET `url` answers 200 (a service has started)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.05)


def wait_started(service: Service, url: str, timeout_s: float = 30) -> bool:
    """Block until GET `url` answers 200: True; False if the process exited first."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while service.process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.05)
    return False


def log_tail(service: Service, lines: int = 3) -> str:
    """The last lines a service wrote (why it exited), on one line."""
    if service.log_path is None or not service.log_path.exists():
        return "no log"
    text = service.log_path.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip()[:300] for line in text[-lines:]) or "no output"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, right-aligned numbers, for the console and the docs."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> dict[str, Any]:
    """What the figures were taken on: they only compare within one run."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    """bench/results/<name>-<time>.json and bench/results/<name>-latest.json."""
    RESULTS_DIR.mkdir(exist_ok=True)
    text = json.dumps({"machine": machine(), **result}, indent=2)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    return path


@dataclass
class Sampler:
    """RSS and CPU of some processes, sampled on demand: (t, {name: value})."""

    services: dict[str, int]
    started: float = field(default_factory=time.monotonic)
    samples: list[dict[str, float]] = field(default_factory=list)

    def sample(self, **extra: float) -> dict[str, float]:
        row = {"t": round(time.monotonic() - self.started, 2), **extra}
        for name, pid in self.services.items():
            row[f"{name}_rss_mb"] = round(rss_mb(pid), 1)
            row[f"{name}_cpu_s"] = round(cpu_seconds(pid), 2)
        self.samples.append(row)
        return row
