"""structlog set-up: JSON lines on stdout (or text for people, `logging.format`), context
from contextvars, secrets redacted, the level changeable while running (`set_log_level`).

Configured once per entry point (CLI command). Redaction is a processor so no call site can
forget it, and it runs last, on everything a line carries (nested values, the formatted
exception): the value of any key naming a secret becomes `***` whatever it is, and inside
strings, usersync's ciphertext (`enc:v1:...`), bearer and basic credentials and `key=value` /
`"key": "value"` pairs of a secret key are cut. The standard library's records (aiohttp, arq,
asyncio, warnings) are rendered by the same processors (`structlog.stdlib.ProcessorFormatter`)
into the same stream: one JSON object a line, redacted alike, whoever logged it; and what the
HTTP server library reports about a client's fault is one event without a traceback
(`ClientFaults`).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any, BinaryIO

import orjson
import structlog
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError

SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "signature",
    "authorization",
    "apikey",
    "api_key",
    "cookie",
    "credential",
)
"""A key whose name (lower case, `-` read as `_`) contains one of these holds a secret:
`password`, `token`, `Authorization`, `x-APIKey`, `hmac_secret`, `X-Usersync-Signature`,
`api_key`, `admin_token`, `Set-Cookie`..."""

MASK = "***"

_KEY_WORDS = r"[\w-]*(?:password|passwd|secret|token|signature|authorization|api_?key)[\w-]*"
_IN_TEXT = (
    # usersync's own ciphertext (core.secrets): never worth a log line, even encrypted
    (re.compile(r"enc:v1:[A-Za-z0-9_=-]+"), "enc:v1:" + MASK),
    # credentials of an HTTP Authorization header
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + MASK),
    # "password": "..." in JSON text
    (re.compile(rf'(?i)("{_KEY_WORDS}"\s*:\s*)"(?:[^"\\]|\\.)*"'), rf'\1"{MASK}"'),
    # password=... in a query string or form
    (re.compile(rf"(?i)\b({_KEY_WORDS}=)[^\s&;,]+"), rf"\1{MASK}"),
)


_SECRET_KEY = re.compile("|".join(SECRET_WORDS))


@lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    return _SECRET_KEY.search(name.lower().replace("-", "_")) is not None


def is_secret_key(name: object) -> bool:
    """Whether a key names a secret (log keys are few and repeat: the answer is cached)."""
    return _is_secret_name(name if isinstance(name, str) else str(name))


_MAYBE = re.compile(
    r"enc:v1:|bearer|basic|passw|secret|token|signature|authoriz|api_?key|cookie|credential"
)
"""One cheap search first (of the lower-cased text: a case-blind pattern is several times
slower): most strings contain none of these and skip the substitutions."""


def redact_text(text: str) -> str:
    """A string with the secrets it may contain cut (see the module's docstring)."""
    if not _MAYBE.search(text.lower()):
        return text
    for pattern, replacement in _IN_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any) -> Any:
    """A copy of a log value with every secret in it redacted, at any depth."""
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, dict):
        return {key: MASK if is_secret_key(key) else redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    return value


def redact_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The structlog processor: every value redacted (`redact`), keys naming a secret masked."""
    for key, value in event_dict.items():
        event_dict[key] = MASK if is_secret_key(key) else redact(value)
    return event_dict


_MAYBE_IN_LINE = re.compile(_MAYBE.pattern.encode())


def _unserializable(value: Any) -> str:
    """What a line shows for a value JSON cannot hold (as structlog's JSONRenderer does)."""
    return repr(value)


def render_json(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> bytes:
    """The last processor: the line as JSON, its secrets redacted.

    Rendered first and searched once (`_MAYBE`, on the lower-cased line with `-` read as
    `_`, which also finds every key `is_secret_key` would): a line with none of those words
    has nothing `redact_secrets` would change and is written as it is, the common case and
    half the cost of a line; any other is redacted value by value and rendered again."""
    line = orjson.dumps(event_dict, default=_unserializable)
    if not _MAYBE_IN_LINE.search(line.lower().replace(b"-", b"_")):
        return line
    return orjson.dumps(redact_secrets(logger, name, event_dict), default=_unserializable)


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
    """Writes each formatted record as one line to the binary stream structlog writes to."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record).encode() + b"\n")
            self.stream.flush()
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


_second: list[Any] = [-1, ""]
"""The second the last timestamp fell in, and its text: formatted once a second."""


def add_timestamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    """`timestamp`, ISO 8601 in UTC to the microsecond (`2026-11-22T10:15:00.120365Z`), as
    structlog's TimeStamper writes it but at a fifth of the cost: the date and time of day
    change once a second, so only the fraction is formatted per line (every request writes
    its access line)."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second[0] = second
    event_dict["timestamp"] = f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event_dict


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
    shared: list[Any] = [structlog.processors.add_log_level, add_timestamp]
    render: list[Any] = [*_console_renderer(colors), _encode] if console else [render_json]
    structlog.configure(
        processors=[
            _level_gate,
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            *render,  # redacts: last, so it sees the formatted exception too
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.BytesLoggerFactory(output),
        cache_logger_on_first_use=cache,
    )
    handler = LineHandler(output)
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
