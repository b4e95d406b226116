"""structlog set-up: JSON lines on stdout (or text for people, `logging.format`), context
from contextvars, secrets redacted (`core.redaction`), the level changeable while running
(`set_log_level`).

Configured once per entry point (CLI command). Redaction is part of rendering so no call site
can forget it, and it sees everything a line carries (nested values, the formatted
exception). The standard library's records (aiohttp, arq, asyncio, warnings) are rendered by
the same processors (`structlog.stdlib.ProcessorFormatter`) into the same stream: one JSON
object a line, redacted alike, whoever logged it; and what the HTTP server library reports
about a client's fault is one event without a traceback (`ClientFaults`).

A JSON line is cheap (issue 15: the gateway writes two a request, a worker one a vendor call,
all at `info`): `JsonLogger`'s level methods hand the call's event dict straight to
`json_line`, which does in one step what structlog's chain of processors did (`merge_context`,
the level, `timestamp`, the exception, `render_json`) with the same bytes, and
`core.log_writer` writes an event-loop iteration's lines in one system call. Console lines
keep structlog's own chain: people read them, their cost does not matter.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError

from core.log_context import merge_context
from core.log_writer import LineWriter
from core.redaction import might_hold_secret, redact_secrets, render_json, unserializable

RECORD_FIELDS = "usersync_fields"
"""Attribute of a standard-library record holding key-value fields for its line."""
MAX_REASON = 120
"""The longest `reason` a `bad_http_request` line keeps of the parser's message."""


class ClientFaults(logging.Filter):
    """Rewrites what aiohttp's server logs about a client's fault (at ERROR, with a traceback)
    into one product event, then drops records below the configured level.

    A request the HTTP parser refused (a NUL in a header, a header line past the limit, a bad
    chunk) is `bad_http_request` at info with the parser's `reason` (first line, cut) and
    `status`; bytes that are not HTTP at all stay at aiohttp's debug. A connection the client
    dropped is `client_disconnected` at info. Neither is the server's failure: no traceback."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name.startswith("aiohttp.") and isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
            reason = (exc.message.strip().splitlines() or [""])[0].rstrip(":")[:MAX_REASON]
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.INFO
            _rewrite(
                record,
                "bad_http_request",
                min(level, record.levelno),
                {
                    "reason": reason,
                    "status": exc.code,
                    "error": type(exc).__name__,
                    "remote": remote,
                },
            )
        elif record.name.startswith("aiohttp.") and isinstance(exc, ConnectionResetError):
            _rewrite(record, "client_disconnected", logging.INFO, {"error": type(exc).__name__})
        return record.levelno >= self.level


def _rewrite(record: logging.LogRecord, event: str, level: int, fields: dict[str, Any]) -> None:
    """Make `record` the line `event` at `level` with `fields`, without its traceback."""
    record.msg, record.args = event, ()
    record.exc_info, record.exc_text = None, None
    record.levelno, record.levelname = level, logging.getLevelName(level)
    setattr(record, RECORD_FIELDS, fields)


def _record_fields(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    """A standard-library line's logger name and the fields `ClientFaults` gave it."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
        event_dict.update(getattr(record, RECORD_FIELDS, {}))
    return event_dict


def _render_text(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
    """`render_json` for `ProcessorFormatter`, which wants text."""
    return render_json(logger, name, event_dict).decode()


class LineHandler(logging.Handler):
    """Writes each formatted record as one line through structlog's writer: one stream, the
    lines in the order logged."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.msg(self.format(record).encode())
        except Exception:  # noqa: BLE001 - logging must not raise into the caller
            self.handleError(record)


_LEVELS = logging.getLevelNamesMapping()
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}
_threshold = [logging.INFO]
"""The configured level, held here so a reload (SIGHUP) changes it for every logger at once:
structlog caches each logger on first use, so a level baked into the logger class would stay."""


def _level_gate(_: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The first processor: a line below the configured level goes no further."""
    if _METHOD_LEVELS.get(method_name, logging.INFO) < _threshold[0]:
        raise structlog.DropEvent
    return event_dict


def set_log_level(level: str) -> None:
    """Change the level of every line from now on, the standard library's included."""
    numeric = _LEVELS[level.upper()]
    _threshold[0] = numeric
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, ClientFaults):
                found.level = numeric


_THREE_DIGITS = tuple(f"{n:03d}" for n in range(1000))
_stamp: tuple[int, str, dict[str, bytes]] = (-1, "", {})
"""The second the last timestamp fell in, its text up to the fraction, and per level the
bytes `json_line` appends before the fraction: made once a second. One tuple, replaced whole,
so a thread never reads one second's text with another's."""


def _now() -> tuple[tuple[int, str, dict[str, bytes]], int]:
    """This second's `_stamp` and the microseconds into it."""
    global _stamp
    now = time.time()
    second = int(now)
    stamp = _stamp
    if stamp[0] != second:
        stamp = _stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)), {})
    return stamp, int((now - second) * 1_000_000)


def timestamp() -> str:
    """Now, ISO 8601 in UTC to the microsecond (`2026-11-22T10:15:00.120365Z`), as structlog's
    TimeStamper writes it at a tenth of the cost: the date and time of day change once a
    second, so only the fraction is made per line, from a table of three digits."""
    stamp, micros = _now()
    millis, micros = divmod(micros, 1000)
    return f"{stamp[1]}{_THREE_DIGITS[millis]}{_THREE_DIGITS[micros]}Z"


def _level_and_timestamp(level: str) -> bytes:
    """`,"level":"info","timestamp":"...Z"}`: what `json_line` appends to a line's JSON."""
    stamp, micros = _now()
    head = stamp[2].get(level)
    if head is None:
        head = stamp[2][level] = f',"level":"{level}","timestamp":"{stamp[1]}'.encode()
    millis, micros = divmod(micros, 1000)
    return b'%b%b%bZ"}' % (head, _BYTE_DIGITS[millis], _BYTE_DIGITS[micros])


_BYTE_DIGITS = tuple(digits.encode() for digits in _THREE_DIGITS)


def add_timestamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The processor adding `timestamp()` (standard-library records, console lines)."""
    event_dict["timestamp"] = timestamp()
    return event_dict


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}
"""structlog's `add_log_level`: the level a method name writes."""


def json_line(method_name: str, event_dict: dict[str, Any]) -> bytes:
    """The JSON line of one call: what structlog's chain `merge_contextvars`, `add_log_level`,
    `add_timestamp`, `format_exc_info`, `render_json` made, byte for byte, in one step.

    The line without its level and timestamp is rendered and searched for secrets
    (`might_hold_secret`, 50 bytes fewer to search), and the two are appended to its text.
    A line that may hold a secret, carries an exception or names a key of its own `level` or
    `timestamp` takes the chain's way."""
    merge_context(event_dict)
    level = _LEVEL_NAMES.get(method_name, method_name)
    if (
        event_dict
        and "level" not in event_dict
        and "timestamp" not in event_dict
        and "exc_info" not in event_dict
    ):
        line = orjson.dumps(event_dict, default=unserializable)
        if not might_hold_secret(line):
            return line[:-1] + _level_and_timestamp(level)
    event_dict["level"] = level
    event_dict["timestamp"] = timestamp()
    return render_json(
        None, method_name, structlog.processors.format_exc_info(None, "", event_dict)
    )


def _json_processor(_: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> bytes:
    """`json_line` as structlog's only processor, after the level gate: the way of the calls
    `JsonLogger` does not shorten (`log`, `msg`, interpolation, the async methods)."""
    _level_gate(None, method_name, event_dict)
    return json_line(method_name, dict(event_dict))


_Filtering: type[Any] = structlog.make_filtering_bound_logger(logging.DEBUG)


def _direct(name: str, level: int) -> Callable[..., None]:
    """A level's method of `JsonLogger`: gate, event dict, `json_line`, writer."""
    generic = getattr(_Filtering, name)

    def method(self: Any, event: str | None = None, *args: Any, **kw: Any) -> None:
        if level < _threshold[0]:
            return
        if args:
            generic(self, event, *args, **kw)
            return
        if self._context:
            kw = {**self._context, **kw}
        if event is not None:
            kw["event"] = event
        self._logger.msg(json_line(name, kw))

    method.__name__ = name
    return method


class JsonLogger(_Filtering):  # type: ignore[misc]
    """structlog's bound logger for JSON lines, its level methods made direct: the event dict
    built as structlog builds it and handed to `json_line` and the writer, without the
    processor loop and its checks (what structlog's `_proxy_to_logger` does, a third of a
    line's cost). Binding, `exception`, `log` and the async methods stay structlog's."""

    debug = _direct("debug", logging.DEBUG)
    info = _direct("info", logging.INFO)
    warning = _direct("warning", logging.WARNING)
    error = _direct("error", logging.ERROR)
    critical = _direct("critical", logging.CRITICAL)


def _encode(_: Any, __: str, line: str) -> bytes:
    return line.encode()


def _console_renderer(colors: bool) -> list[Any]:
    """People's lines: structlog's ConsoleRenderer after the same redaction as JSON lines."""
    return [
        redact_secrets,
        structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False, pad_event_to=24),
    ]


def _is_terminal(output: BinaryIO) -> bool:
    isatty = getattr(output, "isatty", None)
    return bool(isatty and isatty())


def use_console(fmt: str, output: BinaryIO) -> bool:
    """Whether `logging.format` (`auto`, `json`, `console`) means text for people here."""
    return _is_terminal(output) if fmt == "auto" else fmt == "console"


def configure_logging(
    level: str = "info",
    stream: BinaryIO | None = None,
    *,
    cache: bool = True,
    fmt: str = "auto",
) -> None:
    """Logs to stdout (or `stream`), the standard library's records included (libraries
    below WARNING stay silent; arq's per-job lines too): JSON lines, or console text when
    `fmt` says so (`use_console`). `cache=False` lets a later call configure again (tests)."""
    output = stream or sys.stdout.buffer
    console, colors = use_console(fmt, output), _is_terminal(output)
    writer = LineWriter(output)
    shared: list[Any] = [structlog.processors.add_log_level, add_timestamp]
    if console:
        processors: list[Any] = [
            _level_gate,
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            *_console_renderer(colors),  # redacts: last, so it sees the formatted exception
            _encode,
        ]
    else:
        processors = [_json_processor]
    structlog.configure(
        processors=processors,
        wrapper_class=_Filtering if console else JsonLogger,
        logger_factory=lambda *_: writer,
        cache_logger_on_first_use=cache,
    )
    handler = LineHandler(writer)
    handler.addFilter(ClientFaults(logging.INFO))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _record_fields],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                *(_console_renderer(colors) if console else [_render_text]),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LineHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    set_log_level(level)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a Python warning is a line like any other
    logging.getLogger("arq").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
