"""The log redaction of core.logs, on real log output: the JSON lines structlog writes once
configured as the CLI configures it, and the standard library's lines (arq, aiohttp)."""

from __future__ import annotations

import copy
import io
import logging
from typing import Any

import orjson
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from core.redaction import redact_secrets, render_json
from core.secrets import SecretBox
from tests.conftest import log_lines

PASSWORD = "Hunter2-Pa55word!"
TOKEN = "tok-0f8e7d6c5b4a39281706"
CIPHERTEXT = SecretBox(["QWIDbk7KY2YNJTBMQf1KGJAg_AkDOY0FWvIWc8mo1gs="]).encrypt(PASSWORD)


def test_secret_keys_are_masked_at_any_depth_and_in_any_spelling(log_output: io.BytesIO) -> None:
    log = structlog.get_logger("usersync.test")
    log.info(
        "call",
        password=PASSWORD,
        headers={"Authorization": f"Bearer {TOKEN}", "x-APIKey": TOKEN, "Accept": "json"},
        source={"name": "hris", "token": TOKEN, "hmac_secret": TOKEN},
        body=[{"changes": {"password": PASSWORD, "email": "ada@example.com"}}],
        api_key=TOKEN,
        signature=TOKEN,
        x_usersync_signature=TOKEN,
        admin_token=TOKEN,
        vendor="fleet-eu",
    )
    [line] = log_lines(log_output)
    assert PASSWORD not in str(line) and TOKEN not in str(line)
    assert line["password"] == "***"
    assert line["headers"] == {"Authorization": "***", "x-APIKey": "***", "Accept": "json"}
    assert line["source"] == {"name": "hris", "token": "***", "hmac_secret": "***"}
    assert line["body"] == [{"changes": {"password": "***", "email": "ada@example.com"}}]
    for key in ("api_key", "signature", "x_usersync_signature", "admin_token"):
        assert line[key] == "***"
    assert (line["event"], line["vendor"], line["level"]) == ("call", "fleet-eu", "info")


def test_secrets_inside_strings_are_cut(log_output: io.BytesIO) -> None:
    """Ciphertext, bearer credentials and secret pairs in free text, in values and context."""
    structlog.contextvars.bind_contextvars(stored=CIPHERTEXT)
    try:
        structlog.get_logger("usersync.test").warning(
            "odd",
            error=f"vendor said: header Authorization: Bearer {TOKEN} refused",
            body=f'{{"email": "a@b.c", "password": "{PASSWORD}"}}',
            url=f"https://vendor.example/login?user=ada&password={PASSWORD}&x=1",
            values=(CIPHERTEXT, 1, None),
        )
    finally:
        structlog.contextvars.clear_contextvars()
    raw = log_output.getvalue()
    assert PASSWORD.encode() not in raw and TOKEN.encode() not in raw
    assert CIPHERTEXT[10:30].encode() not in raw
    [line] = log_lines(log_output)
    assert line["stored"] == "enc:v1:***"
    assert line["error"] == "vendor said: header Authorization: Bearer *** refused"
    assert line["body"] == '{"email": "a@b.c", "password": "***"}'
    assert line["url"] == "https://vendor.example/login?user=ada&password=***&x=1"
    assert line["values"] == ["enc:v1:***", 1, None]


def test_a_logged_exception_is_redacted_after_formatting(log_output: io.BytesIO) -> None:
    try:
        raise ValueError(f"could not use {CIPHERTEXT} with Bearer {TOKEN}")
    except ValueError:
        structlog.get_logger("usersync.test").exception("failed")
    raw = log_output.getvalue()
    [line] = log_lines(log_output)
    assert "ValueError" in line["exception"]
    assert TOKEN.encode() not in raw and CIPHERTEXT.encode() not in raw
    assert "enc:v1:*** with Bearer ***" in line["exception"]


def test_messages_without_secrets_are_left_alone(log_output: io.BytesIO) -> None:
    """Reasons that merely mention a password keep their words."""
    message = "password: the password does not meet Partoo's policy; it needs 8 characters"
    structlog.get_logger("usersync.test").info("delivery_attempt", error=message, attempt=1)
    [line] = log_lines(log_output)
    assert line["error"] == message and line["attempt"] == 1


def test_standard_library_lines_are_redacted(log_output: io.BytesIO) -> None:
    """A standard-library record (arq, aiohttp, asyncio) is one JSON line of the product's
    format, rendered by the same processors: its message and traceback are redacted alike."""
    logger = logging.getLogger("arq.worker")
    try:
        raise RuntimeError(f"Authorization: Bearer {TOKEN}")
    except RuntimeError:
        logger.error("job failed with %s, password=%s", CIPHERTEXT, PASSWORD, exc_info=True)
    [line] = log_lines(log_output)
    assert line["event"] == "job failed with enc:v1:***, password=***"
    assert line["level"] == "error" and line["logger"] == "arq.worker" and "timestamp" in line
    assert "RuntimeError: Authorization: Bearer ***" in line["exception"]
    raw = log_output.getvalue()
    assert TOKEN.encode() not in raw and CIPHERTEXT.encode() not in raw
    assert PASSWORD.encode() not in raw


_WORDS = [
    "password",
    "Pass-Word",
    "x-api-key",
    "token",
    "to\u212aen",  # the Kelvin sign lower-cases to `k`
    "bearer abc",
    "Basic x",
    "enc:v1:zz",
    "secret",
    "cookie",
    "note",
    "email",
    "a-b",
    "ok",
    "value",
    "Authorization",
]
_TEXT = (
    st.text(max_size=12)
    | st.sampled_from(_WORDS)
    | st.builds(lambda a, b: f"{a}={b}", st.sampled_from(_WORDS), st.text(max_size=6))
)
_VALUES = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.booleans() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=5))
def test_the_rendered_line_is_the_redacted_one(event_dict: dict[str, Any]) -> None:
    """`render_json` skips the value-by-value redaction only for lines it would not change:
    its output is always the JSON of `redact_secrets`' result."""
    expected = orjson.dumps(redact_secrets(None, "", copy.deepcopy(event_dict)))
    assert render_json(None, "", copy.deepcopy(event_dict)) == expected
