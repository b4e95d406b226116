"""structlog set-up: JSON lines on stdout, context from contextvars, secrets redacted.

Configured once per entry point (CLI command). Redaction is a processor so no call site can
forget it: any key that names a secret is replaced by `***` whatever its value.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

SECRET_KEYS = frozenset(
    {
        "password",
        "token",
        "authorization",
        "x-apikey",
        "api_key",
        "secret",
        "hmac_secret",
        "admin_token",
    }
)


def redact_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any key naming a secret, at the top level and one level down."""
    for key, value in event_dict.items():
        if key.lower() in SECRET_KEYS:
            event_dict[key] = "***"
        elif isinstance(value, dict):
            event_dict[key] = {
                inner: ("***" if str(inner).lower() in SECRET_KEYS else item)
                for inner, item in value.items()
            }
    return event_dict


def configure_logging(level: str = "info") -> None:
    """JSON logs to stdout; arq's chatty per-job stdlib lines are silenced below WARNING."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("arq").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
