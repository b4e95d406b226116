"""Where log lines go: one write per event-loop iteration instead of one per line.

A process's stdout is usually unbuffered (`PYTHONUNBUFFERED=1` in the image, in the benches
and under most supervisors), so a write per line is a system call per line: the gateway writes
two a request (its `event_accepted` and access lines), a worker one a vendor call. Inside a
running event loop `LineWriter` keeps the lines and writes them together at the start of the
loop's next iteration (`call_soon`): as many lines as requests that iteration handled, in one
call. Outside a loop (start-up, the CLI's commands, another thread) a line is written at once.

Durability: a line is in the kernel (the pipe or the file) within the iteration it was logged
in, before the loop waits for anything, so a line an operator would look for after a crash is
there: a Python exception that ends the process unwinds through the loop's remaining
iterations and `atexit`; only a SIGKILL or a crash of the interpreter itself in the middle of
an iteration loses that iteration's lines (microseconds of work), which a flush per line would
have written. A fork first writes what is kept, so no child inherits and repeats it. A stream
without a file descriptor (an in-memory buffer: the tests) is written at once: no system call
to save.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import select
import sys
import threading
import weakref
from typing import BinaryIO

PIPE_BUF = getattr(select, "PIPE_BUF", 512)
"""The longest write a pipe keeps whole among other processes' writes (POSIX: at least 512;
Linux: 4096)."""


class LineWriter:
    """structlog's logger (`msg(line)`, aliased under every level name as structlog's own
    loggers are) and the standard library handler's output: a line is bytes without its
    newline."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._kept: dict[int, tuple[asyncio.AbstractEventLoop, list[bytes]]] = {}
        """Per thread (its id), the running loop it logs from and the lines of that loop's
        current iteration, while their write is queued on it. Only a thread itself adds to
        its entry, and the entry leaves this dict (`pop`, atomic) before it is written, so no
        lock is needed on a line's way in."""
        self._lock = threading.RLock()
        """Held while writing: one thread's lines never cut into another's. Reentrant: a
        line logged by the writing thread itself mid-write (a finalizer run by a collection
        the write's allocation started, logging "Unclosed ..." at exit) goes out between two
        whole writes instead of waiting forever for the lock it holds."""
        self._defer = _has_descriptor(stream)
        _writers.add(self)

    def msg(self, line: bytes) -> None:
        """Keep `line` for this iteration's write, or write it now outside a running loop.

        Only an iteration's first line asks for the running loop: asyncio's answer costs a
        system call (`getpid`, for forks), more than the rest of the writer. The next lines
        find their thread's entry and its loop still running (a loop stopped before writing
        them has them written now, before this one)."""
        if not self._defer:
            self._write([line])
            return
        kept = self._kept.get(threading.get_ident())
        if kept is not None and kept[0].is_running():
            kept[1].append(line)
        else:
            self._first(line)

    log = debug = info = warn = warning = error = err = critical = fatal = exception = msg

    def _first(self, line: bytes) -> None:
        thread = threading.get_ident()
        self._write_kept(thread)
        loop = asyncio._get_running_loop()
        if loop is None:
            self._write([line])
            return
        self._kept[thread] = (loop, [line])
        loop.call_soon(self._write_kept, thread)

    def _write_kept(self, thread: int) -> None:
        kept = self._kept.pop(thread, None)
        if kept is not None:
            self._write(kept[1])

    def flush(self) -> None:
        """Write every line kept (at exit, before a fork)."""
        for thread in list(self._kept):
            self._write_kept(thread)

    def _write(self, lines: list[bytes] | None) -> None:
        """`lines` in as few calls as keep each line whole, in the order logged."""
        if not lines:
            return
        with self._lock:
            for data in whole_line_writes(lines):
                try:
                    _write_all(self.stream, data)
                    self.stream.flush()
                except (OSError, ValueError):  # a closed or broken stdout: say it where it can
                    _lost(len(data))


def whole_line_writes(lines: list[bytes]) -> list[bytes]:
    """`lines` (each without its newline) joined into writes of at most `PIPE_BUF` bytes
    where they fit (a longer line is a write of its own). Processes sharing one pipe (the
    children of `gateway.processes`, a supervisor's stdout) interleave only whole writes of at
    most PIPE_BUF bytes: the kernel may cut a longer write where another process's lands."""
    writes: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for line in lines:
        if group and size + len(line) + 1 > PIPE_BUF:
            writes.append(b"\n".join(group) + b"\n")
            group, size = [], 0
        group.append(line)
        size += len(line) + 1
    writes.append(b"\n".join(group) + b"\n")
    return writes


def _write_all(stream: BinaryIO, data: bytes) -> None:
    """`data` written whole: a raw (unbuffered) file may take a part of a long write."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if written is None:  # a non-blocking stream that would block: nothing better to do
            raise BlockingIOError
        view = view[written:]


def _lost(size: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"usersync: {size} bytes of log lines could not be written\n")


def _has_descriptor(stream: BinaryIO) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    return True


_writers: weakref.WeakSet[LineWriter] = weakref.WeakSet()


def flush_all() -> None:
    """Write what every writer keeps (at exit, before a fork)."""
    for writer in list(_writers):
        writer.flush()


atexit.register(flush_all)
os.register_at_fork(before=flush_all)
