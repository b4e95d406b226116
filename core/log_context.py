"""The context of log lines (structlog's contextvars: the request id, the source, the event
and user ids the gateway binds; the job's try, vendor and user a worker binds), read and reset
for a fraction of structlog's cost.

structlog's `merge_contextvars` and `clear_contextvars` walk every variable of the current
context (the event loop's, aiohttp's, the libraries'...) to find its own by name, on every
line and every request. structlog also keeps a register of the variables it made, one per key
ever bound, never emptied (unbinding sets a variable to `...`): these read only those. The
register is private to structlog: when a release drops it, both are structlog's own again
(tests/test_log_line.py pins that they agree with structlog and that the register is there).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import structlog

_REGISTRY: dict[str, ContextVar[Any]] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
_PREFIX = len(structlog.contextvars.STRUCTLOG_KEY_PREFIX)
_known: tuple[int, tuple[tuple[str, ContextVar[Any]], ...]] = (-1, ())
"""The register's size when last read, and its (key, variable) pairs: rebuilt when a new key
is first bound (rarely after start-up)."""


def _bound_vars() -> tuple[tuple[str, ContextVar[Any]], ...]:
    global _known
    assert _REGISTRY is not None
    if _known[0] != len(_REGISTRY):
        pairs = tuple(_REGISTRY.items())  # one C call: safe while another thread binds
        _known = (len(pairs), tuple((name[_PREFIX:], var) for name, var in pairs))
    return _known[1]


def merge_context(event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog's `merge_contextvars`: the bound keys a call did not pass itself, added in
    the order they were first bound (structlog's order is the context's hash order)."""
    if _REGISTRY is None:
        return structlog.contextvars.merge_contextvars(None, "", event_dict)  # type: ignore[return-value]
    for key, var in _bound_vars():
        value = var.get()
        if value is not Ellipsis and key not in event_dict:
            event_dict[key] = value
    return event_dict


def new_context(**values: Any) -> None:
    """structlog's `clear_contextvars()` then `bind_contextvars(**values)`: what a request
    or a job starts with (a fifth of the cost)."""
    if _REGISTRY is None:
        structlog.contextvars.clear_contextvars()
    else:
        for _, var in _bound_vars():
            if var.get() is not Ellipsis:
                var.set(Ellipsis)
    if values:
        structlog.contextvars.bind_contextvars(**values)
