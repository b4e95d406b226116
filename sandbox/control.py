"""The control API under `/_sandbox`: what tests and people use to steer the simulators.

Users can be read and written, faults queued and cleared, journals read and cleared, and the
whole state reset; `GET /_sandbox/kinds` says which kinds are simulated, where. Errors answer
`{"error": "..."}` with 400 or 404.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from sandbox.state import STATE_KEY, Fault, SandboxState

FAULT_KEYS: Final = frozenset(
    {"count", "status", "latency_ms", "retry_after", "body_failure", "garbage"}
)


class ControlError(Exception):
    """A refused control call: answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    known = _state(request).kinds
    if kind not in known:
        raise ControlError(404, f"unknown vendor kind {kind!r}; known: {', '.join(known)}")
    return kind


async def _object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ControlError(400, "the body must be JSON") from exc
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def _integer(payload: dict[str, Any], key: str) -> int | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlError(400, f"{key} must be an integer")
    return value


def parse_fault(payload: dict[str, Any]) -> Fault:
    """A `Fault` from the control body; every key optional, `count` defaulting to 1."""
    unknown = sorted(set(payload) - FAULT_KEYS)
    if unknown:
        raise ControlError(400, f"unknown fault keys: {', '.join(unknown)}")
    count = _integer(payload, "count")
    if count is not None and count < 1:
        raise ControlError(400, "count must be at least 1")
    status = _integer(payload, "status")
    if status is not None and not 100 <= status <= 599:
        raise ControlError(400, "status must be an HTTP status (100-599)")
    latency = payload.get("latency_ms", 0)
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise ControlError(400, "latency_ms must be a number >= 0")
    retry_after = payload.get("retry_after")
    if isinstance(retry_after, int) and not isinstance(retry_after, bool):
        retry_after = str(retry_after)
    if retry_after is not None and not isinstance(retry_after, str):
        raise ControlError(400, "retry_after must be a string (seconds or an HTTP date)")
    body_failure = payload.get("body_failure")
    if body_failure is not None and not isinstance(body_failure, str):
        raise ControlError(400, "body_failure must be a string")
    garbage = payload.get("garbage", False)
    if not isinstance(garbage, bool):
        raise ControlError(400, "garbage must be a boolean")
    return Fault(
        remaining=count or 1,
        status=status,
        latency_ms=float(latency),
        retry_after=retry_after,
        body_failure=body_failure,
        garbage=garbage,
    )


def _state(request: web.Request) -> SandboxState:
    return request.config_dict[STATE_KEY]


async def healthz(request: web.Request) -> web.Response:
    """Liveness, for scripts waiting for the sandbox to listen."""
    return web.json_response({"status": "ok"})


async def get_user(request: web.Request) -> web.Response:
    """The stored user document, as the simulator sees it (passwords hashed or flagged)."""
    kind = _kind(request)
    user = _state(request).user(kind, request.match_info["user_id"])
    if user is None:
        raise ControlError(404, "no such user")
    return web.json_response(user)


async def put_user(request: web.Request) -> web.Response:
    """Create or replace a user: the fields merged onto the kind's default document."""
    kind = _kind(request)
    state = _state(request)
    user_id = request.match_info["user_id"]
    pattern = state.models[kind].id_pattern
    if pattern is not None and not pattern.fullmatch(user_id):
        raise ControlError(400, f"{kind} user ids match {pattern.pattern}")
    fields = await _object(request)
    try:
        doc = state.put_user(kind, user_id, fields)
    except ValueError as exc:  # the kind's `UserModel.seal` refused a document it cannot hold
        raise ControlError(400, f"not a {kind} user: {exc}") from exc
    return web.json_response(doc)


async def add_fault(request: web.Request) -> web.Response:
    """Queue a fault for the kind; answers the faults now pending."""
    kind = _kind(request)
    fault = parse_fault(await _object(request, optional=True))
    state = _state(request)
    state.add_fault(kind, fault)
    return web.json_response({"faults": [item.describe() for item in state.faults[kind]]})


async def list_faults(request: web.Request) -> web.Response:
    """The faults still pending for the kind, with their remaining counts."""
    kind = _kind(request)
    return web.json_response({"faults": [item.describe() for item in _state(request).faults[kind]]})


async def clear_faults(request: web.Request) -> web.Response:
    """Drop every pending fault of the kind."""
    kind = _kind(request)
    _state(request).faults[kind].clear()
    return web.json_response({"faults": []})


async def get_requests(request: web.Request) -> web.Response:
    """Every call the kind received, oldest first, with the status it was answered. With
    `?drain=1` the calls returned are also taken out of the journal, in the same step, so a
    reader polling a long run (the benchmarks) neither misses a call nor sees one twice."""
    kind = _kind(request)
    journal = _state(request).journals[kind]
    entries = [entry.describe() for entry in journal]
    if request.query.get("drain") in ("1", "true"):
        del journal[: len(entries)]
    return web.json_response(entries)


async def clear_requests(request: web.Request) -> web.Response:
    """Empty the journals of all kinds."""
    _state(request).clear_journals()
    return web.json_response({"cleared": True})


async def reset(request: web.Request) -> web.Response:
    """Back to a fresh sandbox: demo users only, no faults, empty journals."""
    _state(request).reset()
    return web.json_response({"reset": True})


@web.middleware
async def control_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn a `ControlError` into its JSON answer, so handlers can simply raise it."""
    try:
        response = await handler(request)
    except ControlError as exc:
        return _error(exc.status, exc.message)
    return response


def control_app(catalogue: Mapping[str, Mapping[str, str]]) -> web.Application:
    """The control API as a sub-application, mounted at `/_sandbox`; `catalogue` is what
    `GET /_sandbox/kinds` answers (per kind: its path prefix and demo user id)."""
    answer = {kind: dict(entry) for kind, entry in catalogue.items()}

    async def kinds(request: web.Request) -> web.Response:
        """The kinds simulated: where each is served and which user is seeded."""
        return web.json_response({"kinds": answer})

    app = web.Application(middlewares=[control_errors])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/kinds", kinds)
    app.router.add_delete("/requests", clear_requests)
    app.router.add_post("/reset", reset)
    app.router.add_get("/{kind}/users/{user_id}", get_user)
    app.router.add_put("/{kind}/users/{user_id}", put_user)
    app.router.add_get("/{kind}/faults", list_faults)
    app.router.add_post("/{kind}/faults", add_fault)
    app.router.add_delete("/{kind}/faults", clear_faults)
    app.router.add_get("/{kind}/requests", get_requests)
    return app
