"""Logs for people and machines: one access line per request from the real gateway (route
template, status, duration, caller, request id, a refusal's code), `X-Request-Id` honoured or
replaced and returned on every answer, the console format, and the level changed while
running."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from core.logs import configure_logging, set_log_level
from gateway.access import MAX_REQUEST_ID, REQUEST_ID_HEADER
from tests.conftest import ADMIN_TOKEN, HRIS_TOKEN, Gateway, event, log_lines

HEX_ID = re.compile(r"[0-9a-f]{32}")


def access_lines(stream: io.BytesIO) -> list[dict[str, Any]]:
    return [line for line in log_lines(stream) if line["event"] == "http_request"]


async def request(
    gateway: Gateway,
    method: str,
    path: str,
    token: str | None = HRIS_TOKEN,
    body: Any = None,
    request_id: str | None = None,
) -> tuple[int, str]:
    """One call; its status and the X-Request-Id it answered with."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if request_id is not None:
        headers[REQUEST_ID_HEADER] = request_id
    data = orjson.dumps(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with gateway.http.request(
        method, gateway.url + path, data=data, headers=headers
    ) as response:
        await response.read()
        return response.status, response.headers[REQUEST_ID_HEADER]


async def test_one_line_per_request_with_route_status_caller_and_code(
    gateway: Gateway, log_output: io.BytesIO
) -> None:
    """Every answer, accepted or refused, is one `http_request` line: method, the route's
    template (never the path), status, duration, the authenticated caller when there is one,
    the request id the answer carries, and a refusal's error code."""
    calls = [
        ("POST", "/v1/events", HRIS_TOKEN, event("acc-1")),
        ("GET", "/v1/events/acc-1", HRIS_TOKEN, None),
        ("POST", "/v1/events", "not-a-known-token-0123456789", event("acc-2")),
        ("POST", "/v1/events", ADMIN_TOKEN, event("acc-3")),
        ("POST", "/v1/events", HRIS_TOKEN, {"event_id": "acc-4"}),
        ("GET", "/no/such/route", None, None),
    ]
    answered = [await request(gateway, *call) for call in calls]
    assert [status for status, _ in answered] == [202, 200, 401, 403, 422, 404]
    lines = access_lines(log_output)
    assert len(lines) == len(calls)
    expected = [
        ("POST", "/v1/events", 202, "hris", None),
        ("GET", "/v1/events/{event_id}", 200, "hris", None),
        ("POST", "/v1/events", 401, None, "unauthorized"),
        ("POST", "/v1/events", 403, "admin", "forbidden"),
        ("POST", "/v1/events", 422, "hris", "schema_violation"),
        ("GET", None, 404, None, "not_found"),
    ]
    for line, (_, request_id), want in zip(lines, answered, expected, strict=True):
        got = (line["method"], line["route"], line["status"], line.get("source"), line.get("code"))
        assert got == want, line
        assert line["request_id"] == request_id
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["level"] == "info"
    assert lines[0]["event_id"] == "acc-1"  # the handler's context is on its access line


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("req-7f3a.b_c:d-9", True),
        ("x" * MAX_REQUEST_ID, True),
        ("x" * (MAX_REQUEST_ID + 1), False),
        ("has space", False),
        ('quote"s', False),
        ("", False),
        (None, False),
    ],
)
async def test_request_id_is_honoured_when_safe_else_replaced(
    gateway: Gateway, log_output: io.BytesIO, given: str | None, kept: bool
) -> None:
    """A safe X-Request-Id (1-128 of [A-Za-z0-9._:-]) is answered and logged as given; a
    missing, empty, long or unsafe one is replaced by a fresh 32-hex id, on success and
    refusal alike."""
    for token in (HRIS_TOKEN, None):  # a 200 and a 401
        status, answered = await request(gateway, "GET", "/healthz", token, request_id=given)
        assert status == 200
        status, refused = await request(gateway, "GET", "/v1/events/nope", token, request_id=given)
        assert status in (401, 404)
        for returned in (answered, refused):
            if kept:
                assert returned == given
            else:
                assert HEX_ID.fullmatch(returned), returned
    logged = [line["request_id"] for line in access_lines(log_output)]
    assert len(logged) == 4
    if kept:
        assert set(logged) == {given}
    else:
        assert len(set(logged)) == 4 and all(HEX_ID.fullmatch(rid) for rid in logged)


async def test_every_line_of_a_request_carries_its_id(
    gateway: Gateway, log_output: io.BytesIO
) -> None:
    """The handler's own lines (event_accepted) carry the request id of the access line."""
    await request(gateway, "POST", "/v1/events", body=event("acc-ctx"), request_id="trace-42")
    lines = [line for line in log_lines(log_output) if line.get("request_id") == "trace-42"]
    assert {line["event"] for line in lines} >= {"event_accepted", "http_request"}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    structlog.reset_defaults()
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def test_console_format_is_text_for_people_and_still_redacted(restore_logging: None) -> None:
    """`logging.format: console` writes aligned text, not JSON, with secrets cut as in JSON
    lines; the standard library's records alike."""
    stream = io.BytesIO()
    configure_logging("info", stream, cache=False, fmt="console")
    structlog.get_logger("t").info("event_accepted", source="hris", token="s3cret-token-value")
    logging.getLogger("aiohttp.server").warning("Authorization: Bearer s3cret-token-value")
    text = stream.getvalue().decode()
    assert "event_accepted" in text and "source" in text and "hris" in text
    assert "s3cret-token-value" not in text
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text.splitlines()[0])
    assert "\x1b[" not in text  # colours only on a terminal


def test_auto_format_is_console_on_a_terminal_and_json_elsewhere(restore_logging: None) -> None:
    """`auto` gives people text on a terminal (a pty here) and machines JSON on a pipe."""
    primary, secondary = os.openpty()
    with os.fdopen(secondary, "wb", buffering=0) as terminal:
        configure_logging("info", terminal, cache=False, fmt="auto")
        structlog.get_logger("t").info("on_a_terminal", n=1)
        seen = os.read(primary, 4096).decode()
    os.close(primary)
    assert "on_a_terminal" in seen and not seen.lstrip().startswith("{")
    stream = io.BytesIO()
    configure_logging("info", stream, cache=False, fmt="auto")
    structlog.get_logger("t").info("in_a_pipe", n=1)
    assert orjson.loads(stream.getvalue())["event"] == "in_a_pipe"


def test_the_level_changes_for_loggers_already_in_use(restore_logging: None) -> None:
    """`set_log_level` (what SIGHUP applies) takes effect on loggers cached at first use,
    structlog's and the standard library's."""
    stream = io.BytesIO()
    configure_logging("info", stream, cache=True, fmt="json")
    log = structlog.get_logger("usersync.test_level")
    log.info("before")
    set_log_level("warning")
    log.info("hidden")
    log.warning("shown")
    set_log_level("debug")
    log.debug("debug_now")
    events = [line["event"] for line in log_lines(stream)]
    assert events == ["before", "shown", "debug_now"]
