"""Reading a request body as JSON under the configured limits, with docs/contract.md §2's error codes.

Handlers authenticate what the headers allow (gateway.auth) before they call here: no body
byte is read for a caller refused from its headers. The bytes of the bodies being read are
bounded across the process by a `BodyBudget` (`gateway.max_inflight_body_bytes`).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.connections import BodyTimeout
from gateway.context import SETTINGS
from gateway.errors import ApiError


class BodyBudget:
    """Bytes of request bodies being read at once in this process, against a ceiling.

    A body takes its bytes as they arrive and gives them all back when its read ends, however
    it ends, so the count is what is held in memory, not what was promised: a client that
    declares 6 MB and sends a byte a second holds a byte. A declared size (Content-Length)
    that does not fit now is refused before a byte is read. A body larger than the whole
    ceiling may still be read when it is the only one (else it never could be), so the bound
    is the larger of the ceiling and the largest body allowed."""

    __slots__ = ("in_use", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def fits(self, size: int) -> bool:
        return self.in_use == 0 or self.in_use + size <= self.limit

    def take(self, size: int, held: int) -> bool:
        """Take `size` more bytes for a body that holds `held` already; False if over."""
        if self.in_use + size > self.limit and self.in_use > held:
            return False
        self.in_use += size
        return True

    def give(self, size: int) -> None:
        self.in_use -= size


BODY_BUDGET = web.AppKey("body_budget", BodyBudget)
OVERLOADED_RETRY_AFTER_S = 1


def overloaded() -> ApiError:
    """The 503 for a body that would pass the process's budget (a declared one before it is
    read, a streaming one at the chunk that passes it)."""
    return ApiError(
        503,
        "overloaded",
        "the gateway is reading too many request bodies at once; retry later",
        headers={"Retry-After": str(OVERLOADED_RETRY_AFTER_S)},
    )


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body exceeds {limit} bytes", {"limit": limit})


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (declared or while streaming),
    503 when the process is reading too much at once, 408 past `body_timeout_s`."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    budget = request.app[BODY_BUDGET]
    if declared and not budget.fits(declared):
        raise overloaded()
    chunks: list[bytes] = []
    size = 0

    def take(chunk: bytes) -> None:
        nonlocal size
        if size + len(chunk) > limit:
            raise _too_large(limit)
        if not budget.take(len(chunk), size):
            raise overloaded()
        size += len(chunk)
        chunks.append(chunk)

    content = request.content
    try:
        if content.is_eof():
            # The whole body is in memory (most posts: it came with the headers): taken at
            # once, under the same checks, rather than through the stream's iterator.
            take(content.read_nowait())
        else:
            async for chunk in content.iter_any():
                take(chunk)
    except BodyTimeout:
        timeout_s = request.app[SETTINGS].gateway.body_timeout_s
        raise ApiError(
            408,
            "body_timeout",
            f"the body did not arrive within {timeout_s:g} s of the headers",
            {"body_timeout_s": timeout_s},
            headers={"Connection": "close"},
        ) from None
    finally:
        budget.give(size)
    return b"".join(chunks)


def require_json_content_type(request: web.Request) -> None:
    """415 unless the body is declared JSON."""
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise ApiError(
            415, "unsupported_media_type", "the body must be sent as Content-Type: application/json"
        )


async def read_json_body(request: web.Request, limit: int) -> bytes:
    """The raw bytes of a body declared JSON: 415 if it is not, 413 past `limit`. What a
    signature is verified over, before anything is parsed."""
    require_json_content_type(request)
    return await read_limited(request, limit)


MAX_DEPTH = 32
"""Deepest nesting of objects and arrays a body may have (an event needs about 6)."""
MAX_ARRAY_ITEMS = 1000
"""Longest array anywhere in a body (the batch envelope's `events` has its own limit)."""


def parse_json_object(raw: bytes, max_items: int = MAX_ARRAY_ITEMS) -> dict[str, Any]:
    """A JSON object: 400 if `raw` is not parseable JSON, 422 if it is not an object or is
    nested deeper than MAX_DEPTH or holds an array longer than `max_items` (hostile shapes are
    refused before any model walks them)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", "the body is not valid UTF-8 JSON", str(exc)) from exc
    if not isinstance(value, dict):
        raise not_an_object()
    problem = shape_problem(value, max_items)
    if problem is not None:
        raise ApiError(422, "schema_violation", "the body's shape is refused", [problem])
    return value


def not_an_object() -> ApiError:
    """The 422 for a body (or a batch item) that is JSON but not an object."""
    return ApiError(
        422,
        "schema_violation",
        "the body must be a JSON object",
        [{"path": "(body)", "message": "expected an object"}],
    )


MAX_NUMBER = 2**53
"""Numbers are refused beyond ±2^53, where doubles stop holding every integer (RFC 7493,
I-JSON): past it `9007199254740993` and `9007199254740992.0` would read as one number."""


def shape_problem(value: Any, max_items: int) -> dict[str, str] | None:
    """The first place `value` nests deeper than MAX_DEPTH, has an array longer than
    `max_items` or a number beyond ±MAX_NUMBER, as an error detail; None if there is none.
    Iterative: no recursion limit.

    On the way, a number with no fraction that orjson read as a float (`5.0`) becomes the
    integer it is (JSON, and the JSON schemas of `/openapi.json`, make no difference between
    `5.0` and `5`; the strict models that take integers would refuse the float)."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            where = ".".join(path[:MAX_DEPTH]) + "..."
            return {"path": where, "message": f"nested deeper than {MAX_DEPTH} levels"}
        if isinstance(node, dict):
            items: Any = node.items()
        elif isinstance(node, list):
            if len(node) > max_items:
                where = ".".join(path) or "(body)"
                return {"path": where, "message": f"more than {max_items} items"}
            items = enumerate(node)
        else:
            continue
        for key, item in items:
            if isinstance(item, int | float) and not isinstance(item, bool):
                if abs(item) > MAX_NUMBER:
                    where = ".".join((*path, str(key)))
                    return {"path": where, "message": "a number beyond ±2^53 (I-JSON)"}
                if isinstance(item, float) and item.is_integer():
                    node[key] = int(item)
            else:
                stack.append((item, (*path, str(key))))
    return None


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """A JSON object body: 415 if not declared JSON, 413 if too large, 400 if not parseable."""
    return parse_json_object(await read_json_body(request, limit))
