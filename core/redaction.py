"""Secrets cut from log lines: the value of any key naming a secret becomes `***` whatever it
is, and inside strings, usersync's ciphertext (`enc:v1:...`), bearer and basic credentials and
`key=value` / `"key": "value"` pairs of a secret key are cut (`redact_secrets`, at any depth).

`render_json` is how a JSON line gets it: a line is rendered first and searched once for the
words a secret needs; only a line holding one is redacted value by value and rendered again
(the common line holds none: half of its cost saved). Its output is always the JSON of
`redact_secrets`' result (property-tested). `core.logs` applies it to every line.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

import orjson

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


LINE_WORDS = (
    "enc:v1:",
    "bearer",
    "basic",
    "passw",
    "secret",
    "token",
    "signature",
    "authoriz",
    "apikey",
    "api_key",
    "api-key",
    "cookie",
    "credential",
)
"""What a rendered line holds (ASCII lower-cased) when `redact_secrets` could change it: every
word of `_MAYBE` (the strings' test) and every spelling of `SECRET_WORDS` a key may have (`-`
read as `_`: `api-key`)."""

_IN_LINE = re.compile(
    rb"k(?:(?<=tok)en|(?<=cook)ie|(?<=apik)ey|(?<=api_k)ey|(?<=api-k)ey)"
    rb"|c(?:(?<=sec)ret|redential|(?<=enc):v1:)"
    rb"|g(?<=sig)nature|z(?<=authoriz)|w(?<=passw)|b(?:earer|asic)"
)
"""`LINE_WORDS` as one search, each word found from one of its rarer letters (`k`, `c`, `g`,
`z`, `w`, `b`) and checked around it (a look-behind for the letters before): the regular
expression engine skips, in C, every position not holding one of those letters, and tries the
words only at the few left. A plain alternation tries them all at every position: the search
of a gateway's line costs 1.2 us instead of 2.9 (this machine). tests/test_log_line.py checks
it finds what the plain alternation finds."""


def might_hold_secret(line: bytes) -> bool:
    """Whether `redact_secrets` could change the line `line` renders: False only when it
    holds none of `LINE_WORDS`. A line with a non-ASCII byte always may: Unicode
    lower-casing (what `is_secret_key` and `redact_text` use) maps some non-ASCII letters to
    ASCII ones (the Kelvin sign to `k`), which `bytes.lower` cannot see."""
    return not line.isascii() or _IN_LINE.search(line.lower()) is not None


def unserializable(value: Any) -> str:
    """What a line shows for a value JSON cannot hold (as structlog's JSONRenderer does)."""
    return repr(value)


def render_json(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> bytes:
    """The last processor: the line as JSON, its secrets redacted.

    Rendered first and searched once (`might_hold_secret`): a line with none of those words
    has nothing `redact_secrets` would change and is written as it is, the common case and
    half the cost of a line; any other is redacted value by value and rendered again."""
    line = orjson.dumps(event_dict, default=unserializable)
    if not might_hold_secret(line):
        return line
    return orjson.dumps(redact_secrets(logger, name, event_dict), default=unserializable)
