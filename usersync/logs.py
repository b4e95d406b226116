"""structlog set-up: JSON lines on stdout, context from contextvars, secrets redacted.

Configured once per entry point (CLI command). Redaction is a processor so no call site can
forget it, and it runs last, on everything a line carries (nested values, the formatted
exception): the value of any key naming a secret becomes `***` whatever it is, and inside
strings, usersync's ciphertext (`enc:v1:...`), bearer and basic credentials and `key=value` /
`"key": "value"` pairs of a secret key are cut. The standard library's lines (arq, aiohttp,
on stderr) go through the same string redaction.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any, BinaryIO

import orjson
import structlog

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
    # usersync's own ciphertext (usersync.secrets): never worth a log line, even encrypted
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


class RedactingFormatter(logging.Formatter):
    """A stdlib formatter whose output (message and traceback) goes through `redact_text`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_logging(
    level: str = "info", stream: BinaryIO | None = None, *, cache: bool = True
) -> None:
    """JSON logs to stdout (or `stream`); arq's chatty per-job stdlib lines are silenced below
    WARNING. `cache=False` lets a later call configure again (tests)."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            render_json,  # redacts: last, so it sees the formatted exception too
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(stream or sys.stdout.buffer),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("arq").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
