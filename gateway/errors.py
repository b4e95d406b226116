"""The JSON error answer of docs/contract.md §2, raised as an exception and rendered by one middleware."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    """An answer `{"error": {"code", "message", "details"}}` with an HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def field_problems(
    exc: ValidationError, prefix: tuple[str | int, ...] = ()
) -> list[dict[str, str]]:
    """Every problem of a pydantic validation with its field path, e.g. `changes.email`."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = [*prefix, *error["loc"]]
        problems.append(
            {"path": ".".join(str(part) for part in location) or "(body)", "message": error["msg"]}
        )
    return problems


def schema_error(problems: list[dict[str, str]]) -> ApiError:
    return ApiError(422, "schema_violation", "the event does not match the v1 schema", problems)


def unauthorized(message: str = "missing or invalid bearer token") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def replication_timeout() -> ApiError:
    """`redis.min_replicas_ack` not reached in time: the event may be stored on the primary
    alone, so it is not promised; the retry (same event_id) answers 200 duplicate if it was."""
    return ApiError(
        503,
        "replication_timeout",
        "too few Redis replicas acknowledged the write in time; retry with the same event_id "
        "(an event that was stored answers 200 duplicate)",
        headers={"Retry-After": "1"},
    )


def redis_unavailable() -> ApiError:
    return ApiError(
        503,
        "redis_unavailable",
        "the event store is unavailable; nothing was accepted, retry later",
        headers={"Retry-After": "1"},
    )
