"""SCIM answers and errors: `application/scim+json`, errors in the SCIM error schema
(`urn:ietf:params:scim:api:messages:2.0:Error`: `status`, `scimType`, `detail`).

Every failure under /scim/v2 is rendered here (`scim_answer`, called by the gateway's
middleware for those paths): the SCIM library's exceptions (their status and scimType), its validation
errors, and the gateway's own refusals (`ApiError`: credentials, body limits, rate, storage,
link authority), so an identity provider reads one error format whatever refused its request,
down to the 404 of an unknown path and the 405 of a method a path lacks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import structlog
from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError
from scim2_models import Error, SCIMException

from core.redis_client import ReplicationTimeout
from gateway.errors import ApiError, redis_unavailable, replication_timeout
from gateway.scim.service import BASE_PATH
from gateway.storage import is_out_of_memory, storage_full

log = structlog.get_logger("usersync.gateway")

SCIM_JSON = "application/scim+json"
"""The SCIM media type (RFC 7644 §3.1): every answer under /scim/v2 has it."""
_KEPT_HEADERS = ("WWW-Authenticate", "Retry-After", "Connection", "Allow")


class ScimError(Exception):
    """A SCIM error answer: HTTP status, scimType (RFC 7644 Table 9) or None, detail."""

    def __init__(
        self,
        status: int,
        scim_type: str | None,
        detail: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.scim_type = scim_type
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        error = Error(status=self.status, scim_type=self.scim_type, detail=self.detail)
        return scim_response(error.model_dump(), self.status, self.headers)

    @classmethod
    def of(cls, exc: SCIMException) -> ScimError:
        error = exc.to_error()
        return cls(error.status or exc.status, error.scim_type or None, error.detail or str(exc))

    @classmethod
    def of_validation(cls, exc: ValidationError) -> ScimError:
        """A request the SCIM models refused: the first problem's status and scimType, every
        problem in the detail."""
        errors = Error.from_validation_errors(exc)
        first = errors[0]
        detail = "; ".join(error.detail or "" for error in errors)
        return cls(first.status or 400, first.scim_type or "invalidValue", detail)


def scim_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=SCIM_JSON, headers=headers
    )


def of_api_error(exc: ApiError) -> ScimError:
    """The gateway's own refusal in SCIM terms: a malformed body is `invalidSyntax`, a value
    the canonical schema refuses (422) is a 400 `invalidValue`; every other status is kept,
    with its `Retry-After` or `WWW-Authenticate`."""
    detail = exc.message
    if isinstance(exc.details, list):
        problems = [
            f"{item.get('path')}: {item.get('message')}"
            for item in exc.details
            if isinstance(item, dict)
        ]
        if problems:
            detail = f"{detail}: {'; '.join(problems)}"
    headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    if exc.status == 400:
        return ScimError(400, "invalidSyntax", detail, headers)
    if exc.status == 422:
        return ScimError(400, "invalidValue", detail, headers)
    return ScimError(exc.status, None, detail, headers)


def is_scim_path(path: str) -> bool:
    return path == BASE_PATH or path.startswith(BASE_PATH + "/")


async def scim_answer(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The answer to a request under /scim/v2 (`is_scim_path`), every refusal of it a SCIM
    error (called by the gateway's middleware, `gateway.app`)."""
    try:
        return await handler(request)
    except ScimError as exc:
        return exc.response()
    except SCIMException as exc:
        return ScimError.of(exc).response()
    except ApiError as exc:
        return of_api_error(exc).response()
    except ReplicationTimeout as exc:
        log.warning("replication_timeout", path=request.path, acked=exc.acked, wanted=exc.wanted)
        return of_api_error(replication_timeout()).response()
    except RedisError as exc:
        if is_out_of_memory(exc):
            log.warning("storage_full_refused", path=request.path)
            return of_api_error(storage_full()).response()
        log.warning("redis_unavailable", path=request.path, error=type(exc).__name__)
        return of_api_error(redis_unavailable()).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        detail = "no such SCIM endpoint" if exc.status == 404 else exc.reason
        return ScimError(exc.status, None, detail, headers).response()
