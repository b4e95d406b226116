"""A Sentinel-managed Redis for the HA tests: a primary, replicas and three Sentinels, real
`redis-server` processes on loopback (the binary the embedded Redis uses), with short
`down-after-milliseconds` and `failover-timeout` so a failover takes seconds."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from usersync.redis_server import find_redis_binary, free_port

MASTER = "usersync"
"""The Sentinel master name the tests configure."""
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000


@dataclass
class Node:
    """One redis-server process (a data node or a Sentinel)."""

    port: int
    process: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def call(self, *args: str) -> Any:
        """One command's reply (a fresh connection: the node may have just restarted)."""
        with self.client() as client:
            return client.execute_command(*args)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class SentinelCluster:
    """The processes of one Sentinel-managed Redis, started in `directory`."""

    directory: Path
    replicas: int = 2
    data: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.sentinels]

    def redis_config(self) -> dict[str, object]:
        """The `redis` section of a usersync config using this cluster."""
        return {"sentinel": {"addresses": self.addresses, "master": MASTER}}

    def _data_node(self, name: str, primary: int | None) -> Node:
        port = free_port()
        workdir = self.directory / name
        workdir.mkdir(parents=True, exist_ok=True)
        args = [find_redis_binary(), "--port", str(port), "--bind", "127.0.0.1"]
        args += ["--dir", str(workdir), "--save", "", "--appendonly", "no"]
        if primary is not None:
            args += ["--replicaof", "127.0.0.1", str(primary)]
        return Node(port, _start(args, workdir))

    def _sentinel(self, name: str, primary: int) -> Node:
        port = free_port()
        workdir = self.directory / name
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "sentinel.conf"  # Sentinel rewrites it: a file of its own
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} {self.replicas}\n"
        )
        return Node(port, _start([find_redis_binary(), str(conf), "--sentinel"], workdir))

    def start(self, timeout_s: float = 20.0) -> SentinelCluster:
        """Start the primary, its replicas and three Sentinels; return once the replicas are
        in sync and every Sentinel knows them all."""
        primary = self._data_node("primary", None)
        self.data.append(primary)
        _wait(lambda: primary.call("PING"), timeout_s, "primary up")
        for n in range(self.replicas):
            self.data.append(self._data_node(f"replica-{n}", primary.port))
        for n in range(3):
            self.sentinels.append(self._sentinel(f"sentinel-{n}", primary.port))

        def synced() -> bool:
            info: Any = primary.call("INFO", "replication")
            online = sum(
                1 for k, v in info.items() if k.startswith("slave") and v.get("state") == "online"
            )
            return bool(online == self.replicas)

        _wait(synced, timeout_s, "replicas in sync")

        def known() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.call("SENTINEL", "MASTER", MASTER)
                fields = dict(zip(state[::2], state[1::2], strict=True))
                if int(fields[b"num-slaves"]) != self.replicas:
                    return False
                if int(fields[b"num-other-sentinels"]) != 2:
                    return False
            return True

        _wait(known, timeout_s, "sentinels know the replicas and each other")
        return self

    def primary(self) -> Node:
        """The data node the Sentinels name as primary now."""
        host_port = self.sentinels[0].call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        port = int(host_port[1])
        return next(node for node in self.data if node.port == port)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            with contextlib.suppress(Exception):
                node.stop()


def _start(args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    with (workdir / "redis.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)


def _wait(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll `condition` (a callable) until it holds, or fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s}s: {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def sentinel_cluster(directory: Path, replicas: int = 2) -> Iterator[SentinelCluster]:
    """A started cluster for the block, every process stopped after."""
    cluster = SentinelCluster(directory, replicas)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
