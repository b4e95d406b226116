"""The cheap log line of core.logs (issue 15) writes what structlog's chain wrote: the same
JSON bytes from `json_line` and `JsonLogger` as from `merge_contextvars`, `add_log_level`,
`add_timestamp`, `format_exc_info` and `render_json` one after the other, secrets redacted
alike; and its writer puts the lines of one event-loop iteration into the stream together, in
order, by the next iteration, and all of them before the process ends."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import datetime
import io
import itertools
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from core import log_context, logs
from core.log_writer import PIPE_BUF, LineWriter, whole_line_writes
from core.redaction import _IN_LINE, LINE_WORDS, might_hold_secret, redact_secrets, render_json

_STAMP = re.compile(rb'"timestamp":"[^"]*"')
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def without_time(line: bytes) -> bytes:
    """A line with its timestamp's value replaced: two lines made apart differ only there."""
    return _STAMP.sub(b'"timestamp":"T"', line)


def chain_line(method_name: str, event_dict: dict[str, Any]) -> bytes:
    """The line structlog's chain (before issue 15) made of a call's event dict, the context
    merged as `merge_context` merges it (its key order; `test_merge_context_*` pins that its
    keys and values are structlog's), redacted by the full walk."""
    merged = log_context.merge_context(event_dict)
    merged = structlog.processors.add_log_level(None, method_name, merged)
    merged = logs.add_timestamp(None, method_name, merged)
    merged = structlog.processors.format_exc_info(None, method_name, merged)
    return orjson.dumps(redact_secrets(None, method_name, merged), default=repr)


@pytest.fixture
def context() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


_WORDS = [
    "password",
    "x-api-key",
    "token",
    "to\u212aen",  # the Kelvin sign lower-cases to `k`: `token` to `is_secret_key`
    "Bearer abc",
    "enc:v1:zz",
    "level",
    "timestamp",
    "exc_info",
    "event",
    "note",
    "ok",
]
_TEXT = st.text(max_size=10) | st.sampled_from(_WORDS)
_VALUES = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from(["debug", "info", "warning", "warn", "error", "critical"]),
    event_dict=st.dictionaries(_TEXT, _VALUES, max_size=5),
    bound=st.dictionaries(_KEYS, _VALUES, max_size=3),
)
def test_json_line_is_the_chains_line(
    method: str, event_dict: dict[str, Any], bound: dict[str, Any]
) -> None:
    """Whatever a call passes and the context holds (secret words, keys of the line's own,
    non-ASCII), `json_line` writes the chain's bytes (but for the time of day)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**bound)
    try:
        fast = logs.json_line(method, copy.deepcopy(event_dict))
        chain = chain_line(method, copy.deepcopy(event_dict))
    finally:
        structlog.contextvars.clear_contextvars()
    assert without_time(fast) == without_time(chain)
    assert ISO_UTC.fullmatch(orjson.loads(fast)["timestamp"])


def test_a_key_that_lower_cases_to_a_secret_word_is_masked() -> None:
    """A key spelled with the Kelvin sign (`to\u212aen`) names a secret to `is_secret_key`:
    the line skips the value-by-value redaction only when it is pure ASCII."""
    line = orjson.loads(render_json(None, "info", {"to\u212aen": "s3cret", "n": "a"}))
    assert line == {"to\u212aen": "***", "n": "a"}


def test_merge_context_is_structlogs_merge(context: None) -> None:
    """Bound, rebound, unbound and cleared keys, in a copied context too: the keys and
    values structlog's `merge_contextvars` gives, a call's own keys winning; and the fast
    way is the one in use (structlog still has the register it reads)."""
    assert log_context._REGISTRY is not None
    structlog.contextvars.bind_contextvars(request_id="r1", source="hris", a=1)
    structlog.contextvars.bind_contextvars(a=2, b=None)
    structlog.contextvars.unbind_contextvars("source")
    cases = [{}, {"a": "own"}, {"event": "x", "request_id": "own"}]
    for given_dict in cases:
        expected = structlog.contextvars.merge_contextvars(None, "info", dict(given_dict))
        assert log_context.merge_context(dict(given_dict)) == expected
    assert log_context.merge_context({}) == {"request_id": "r1", "a": 2, "b": None}

    def elsewhere() -> dict[str, Any]:
        structlog.contextvars.bind_contextvars(only_here=True)
        return log_context.merge_context({})

    copied = contextvars.copy_context()
    assert copied.run(elsewhere) == {"request_id": "r1", "a": 2, "b": None, "only_here": True}
    assert "only_here" not in log_context.merge_context({})
    structlog.contextvars.clear_contextvars()
    assert log_context.merge_context({"k": 1}) == {"k": 1}


def test_new_context_is_structlogs_clear_then_bind(context: None) -> None:
    """What a request or job starts with: every key bound before gone (in this context
    only), the given ones bound; as `clear_contextvars` and `bind_contextvars` leave it."""
    structlog.contextvars.bind_contextvars(request_id="old", source="hris", event_id="e1")

    def fresh() -> dict[str, Any]:
        log_context.new_context(request_id="new", job_try=2)
        return structlog.contextvars.get_contextvars()

    def structlogs() -> dict[str, Any]:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id="new", job_try=2)
        return structlog.contextvars.get_contextvars()

    assert contextvars.copy_context().run(fresh) == {"request_id": "new", "job_try": 2}
    assert contextvars.copy_context().run(fresh) == contextvars.copy_context().run(structlogs)
    assert structlog.contextvars.get_contextvars() == {
        "request_id": "old",
        "source": "hris",
        "event_id": "e1",
    }
    log_context.new_context()
    assert structlog.contextvars.get_contextvars() == {}


def test_json_logger_writes_the_chains_lines(log_output: Any, context: None) -> None:
    """Through `structlog.get_logger`, as call sites log: bound context, interpolation,
    `exception` with its traceback, a secret, each level's name; the chain's bytes."""
    log = structlog.get_logger("usersync.test")
    structlog.contextvars.bind_contextvars(request_id="r-9")
    bound = log.bind(vendor="fleet-eu")
    calls: list[tuple[str, dict[str, Any]]] = []

    def both(method: str, event: str, **kw: Any) -> None:
        getattr(bound, method)(event, **kw)
        calls.append((method, {"vendor": "fleet-eu", **kw, "event": event}))

    both("info", "event_accepted", source="hris", targets=["a", "b"], outcome="accepted")
    both("debug", "detail", n=1)
    both("warning", "lease_lost", events=3)
    both("error", "failed", token="s3cret-value", url="https://x.example/?password=p4ss")
    both("critical", "stop", vendor="own")
    bound.info("interpolated %s of %d", "one", 2, k="v")
    calls.append(("info", {"vendor": "fleet-eu", "k": "v", "event": "interpolated one of 2"}))
    try:
        raise ValueError("with Bearer abc.def")
    except ValueError:
        bound.exception("crashed", step=4)
        expected_exception = chain_line("error", {"step": 4, "event": "crashed", "exc_info": True})
    lines = log_output.getvalue().splitlines()
    assert len(lines) == len(calls) + 1
    for line, (method, event_dict) in zip(lines, calls, strict=False):
        assert without_time(line) == without_time(chain_line(method, event_dict))
    crashed = orjson.loads(lines[-1])
    assert crashed["level"] == "error" and "Bearer ***" in crashed["exception"]
    reference = orjson.loads(expected_exception)
    assert crashed["exception"] == reference["exception"]
    assert b"s3cret-value" not in log_output.getvalue() and b"p4ss" not in log_output.getvalue()


def test_timestamp_is_iso_8601_utc_to_the_microsecond() -> None:
    """`timestamp()`: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the UTC time it was taken."""
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    stamp = logs.timestamp()
    after = datetime.datetime.now(datetime.UTC)
    assert ISO_UTC.fullmatch(stamp)
    taken = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    assert before <= taken <= after


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe (read end non-blocking): a stream with a file descriptor, as stdout is."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):
            os.close(fd)


def available(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""


async def test_a_loop_iterations_lines_are_written_together_by_the_next(
    pipe: tuple[int, int],
) -> None:
    """In a running loop, lines wait for the end of the iteration that logged them (none is
    in the pipe yet), then are all there, in order, one line each."""
    read_end, write_end = pipe
    with os.fdopen(write_end, "wb", buffering=0, closefd=False) as stream:
        writer = LineWriter(stream)
        for n in range(3):
            writer.msg(b'{"n":%d}' % n)
        assert available(read_end) == b""
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert available(read_end) == b'{"n":0}\n{"n":1}\n{"n":2}\n'
        writer.msg(b'{"n":3}')
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert available(read_end) == b'{"n":3}\n'


def test_outside_a_loop_a_line_is_written_at_once(pipe: tuple[int, int]) -> None:
    """Start-up, the CLI's commands, other threads: no iteration to wait for."""
    read_end, write_end = pipe
    with os.fdopen(write_end, "wb", buffering=0, closefd=False) as stream:
        writer = LineWriter(stream)
        writer.msg(b'{"n":1}')
        assert available(read_end) == b'{"n":1}\n'


def test_lines_kept_by_a_stopped_loop_go_out_before_the_next_line(pipe: tuple[int, int]) -> None:
    """A loop stopped in the iteration that logged (its write never ran): the next line of
    that thread, in no loop or another, writes them first, in order."""
    read_end, write_end = pipe
    with os.fdopen(write_end, "wb", buffering=0, closefd=False) as stream:
        writer = LineWriter(stream)
        for n in range(2):
            loop = asyncio.new_event_loop()  # runs nothing queued after stop() (uvloop does)

            def last(loop: asyncio.AbstractEventLoop = loop, n: int = n) -> None:
                loop.stop()
                writer.msg(b'{"kept":%d}' % n)

            loop.call_soon(last)
            loop.run_forever()
            loop.close()
            assert available(read_end) == (b'{"kept":0}\n' if n else b"")
        writer.msg(b'{"after":1}')
        assert available(read_end) == b'{"kept":1}\n{"after":1}\n'


async def test_standard_library_records_keep_their_place_among_the_lines(
    pipe: tuple[int, int], context: None
) -> None:
    """A library's record logged between two lines of the same iteration comes out between
    them: one writer for both."""
    read_end, write_end = pipe
    handlers, level = logging.root.handlers[:], logging.root.level
    with os.fdopen(write_end, "wb", buffering=0, closefd=False) as stream:
        try:
            logs.configure_logging("info", stream, cache=False, fmt="json")
            log = structlog.get_logger("usersync.test")
            log.info("first")
            logging.getLogger("arq.worker").warning("from %s", "arq")
            log.info("last")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        finally:
            structlog.reset_defaults()
            logging.root.handlers[:] = handlers
            logging.root.setLevel(level)
    events = [orjson.loads(line)["event"] for line in available(read_end).splitlines()]
    assert events == ["first", "from arq", "last"]


def test_lines_kept_when_the_loop_stops_are_written_at_exit() -> None:
    """A process whose loop stops in the iteration that logged (the lines' write scheduled
    for an iteration that never runs) and then exits with an error has every line in its
    stdout."""
    script = textwrap.dedent(
        """
        import asyncio, structlog
        from core.logs import configure_logging
        configure_logging("info", fmt="json")
        log = structlog.get_logger("t")
        loop = asyncio.new_event_loop()  # runs nothing queued after stop() (uvloop does)

        def last():
            loop.stop()  # before the lines: their write is queued after the loop's end
            for n in range(3):
                log.info("kept", n=n)

        loop.call_soon(last)
        loop.run_forever()
        raise SystemExit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=30,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert done.returncode == 3, done.stderr
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [(line["event"], line["n"]) for line in lines] == [("kept", n) for n in range(3)]


_PLAIN = re.compile("|".join(re.escape(word) for word in LINE_WORDS).encode())
_FRAGMENTS = [*LINE_WORDS, "tok", "ken", "api", "key", "_", "-", ":", "v1", "enc", "sec", "c", "k"]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.text("abcegiknoprstvwyz:_-1", max_size=4)))
def test_the_line_search_finds_what_the_plain_alternation_finds(parts: list[str]) -> None:
    """The anchored search of `might_hold_secret` and `LINE_WORDS` as a plain alternation
    agree on any text made of the words, their pieces and their letters."""
    text = "".join(parts).encode()
    assert (_IN_LINE.search(text) is None) == (_PLAIN.search(text) is None)
    assert might_hold_secret(text) == (_PLAIN.search(text) is not None)


@given(st.lists(st.integers(min_value=1, max_value=2 * PIPE_BUF), min_size=1, max_size=40))
def test_writes_keep_lines_whole_for_processes_sharing_a_pipe(sizes: list[int]) -> None:
    """An iteration's lines go out in writes of at most PIPE_BUF bytes, each ending at a
    line's end (a longer line alone): the kernel never cuts such a write where another
    process's lands. Together they are the lines, in order."""
    lines = [b"x" * size for size in sizes]
    writes = whole_line_writes(lines)
    assert b"".join(writes) == b"".join(line + b"\n" for line in lines)
    for data in writes:
        assert data.endswith(b"\n")
        assert len(data) <= PIPE_BUF or data.count(b"\n") == 1
    for first, then in itertools.pairwise(writes):  # no more writes than needed
        assert len(first) + then.index(b"\n") + 1 > PIPE_BUF


def test_a_line_logged_while_a_write_is_under_way_in_the_same_thread_goes_out() -> None:
    """A finalizer that logs in the middle of a write (a collection started by the write's
    own allocation) does not deadlock the process: both lines are written, whole."""
    written: list[bytes] = []

    class Reentering(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            if not written:
                written.append(b"")  # only the first write logs again
                writer.msg(b'{"n":2}')
            written.append(bytes(data))
            return len(data)

    writer = LineWriter(Reentering())  # type: ignore[arg-type]
    done = threading.Thread(target=writer.msg, args=(b'{"n":1}',), daemon=True)
    done.start()
    done.join(5)
    assert not done.is_alive()
    assert b"".join(written) == b'{"n":2}\n{"n":1}\n'
