"""Plaspy (Flotas) simulator: `PATCH /plaspy/api/users/{userId}`, as in seed 002.

The body is an RFC 6902 JSON Patch applied atomically with `jsonpatch`: every operation is
checked first, only documented writable fields may be touched, and the result is type-checked
before it is stored. Like the seed, a patch that is invalid or fails answers HTTP 200 with
`success: false`; every answer carries `apiUsage` and `apiDailyUsage`.

A usersync instance points `base_url` at `http://HOST:PORT/plaspy` and sends
`Authorization: Bearer <token>`. Where the seed is silent: failures keep the seed's exact
`error: "Invalid patch operation"` and add a `detail` saying which operation failed and why.
`apiUsage` is 1 per call; `apiDailyUsage` counts every call the simulator received since
start or reset. Writable paths: the top-level `name, email, country, timeZone, description,
disabled, tags, group, from, expires, password` and `/tags/<key>`; `test` may read any path;
`move`/`copy` may only read writable paths and never `/password`. After applying: strings or
null, `disabled` boolean, `tags` an object of strings, `email` a valid address. The password
is stored as `sha256:…` and never answered. Order: 401, 404, then patch checks.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Final

import jsonpatch
import jsonpointer
from aiohttp import web

from sandbox.common import Call, Simulator, Vendor, bearer, is_email, secret_hash, utc_now
from sandbox.state import Document, SandboxState, UserModel
from workers.vendors.plaspy import KIND

PREFIX: Final = "/plaspy"
PATH: Final = "/plaspy/api/users/{user_id}"
INVALID: Final = "Invalid patch operation"
OPS: Final = frozenset({"add", "remove", "replace", "move", "copy", "test"})
POINTER: Final = re.compile(r"(/([^~/]|~[01])*)*")
STRINGS: Final = (
    "name",
    "email",
    "country",
    "timeZone",
    "description",
    "group",
    "from",
    "expires",
    "password",
)
WRITABLE: Final = frozenset({*STRINGS, "disabled", "tags"})
# The user fields in the seed's order; those not in WRITABLE are read-only.
FIELDS: Final = (
    "id",
    "name",
    "email",
    "country",
    "timeZone",
    "description",
    "message",
    "disabled",
    "tags",
    "privileges",
    "group",
    "deviceId",
    "adminDevices",
    "from",
    "expires",
    "password",
    "creation",
    "modification",
    "lastLogin",
)


def _usage(state: SandboxState) -> dict[str, int]:
    return {"apiUsage": 1, "apiDailyUsage": state.calls[KIND.name]}


def failure(state: SandboxState, status: int, message: str) -> web.Response:
    """The seed's error example: `success: false`, `error`, and the usage counters."""
    return web.json_response({"success": False, "error": message, **_usage(state)}, status=status)


def body_failure(state: SandboxState, message: str) -> web.Response:
    """Plaspy's documented failure: HTTP 200 with `success: false`."""
    return failure(state, 200, message)


def _invalid(call: Call, detail: str) -> web.Response:
    """The seed's error for a patch it cannot apply; `detail` says which operation and why."""
    return web.json_response(
        {"success": False, "error": INVALID, "detail": detail, **_usage(call.state)}
    )


def blank(user_id: str) -> Document:
    """Every documented field present (null when unset, `tags` empty), so removes work once."""
    now = utc_now(zulu=True)
    doc: Document = dict.fromkeys(FIELDS)
    doc.update(
        id=user_id,
        disabled=False,
        tags={},
        privileges=[],
        adminDevices=0,
        creation=now,
        modification=now,
    )
    return doc


def demo() -> Document:
    """The user of the seed's example answer."""
    return {
        **blank(KIND.demo_user_id),
        "name": "Juan Perez",
        "email": "juan.perez@example.com",
        "country": "Colombia",
        "timeZone": "America/Bogota",
        "description": "VIP User",
        "tags": {"vip": "true"},
        "privileges": ["read", "write"],
        "group": "administrators",
        "deviceId": "dev-67890",
        "adminDevices": 5,
        "from": "2023-01-01T00:00:00Z",
        "expires": "2024-01-01T00:00:00Z",
        "creation": "2022-01-01T00:00:00Z",
        "modification": "2023-06-01T00:00:00Z",
        "lastLogin": "2023-06-01T00:00:00Z",
    }


def seal(doc: Document) -> Document:
    """A clear password given through the control API is stored hashed."""
    password = doc.get("password")
    if isinstance(password, str) and not password.startswith("sha256:"):
        doc["password"] = secret_hash(password)
    return doc


MODEL: Final = UserModel(blank=blank, demo=demo, demo_id=KIND.demo_user_id, seal=seal)

VENDOR: Final = Vendor(
    kind=KIND.name,
    prefix=PREFIX,
    failure=failure,
    body_failure=body_failure,
    credential=bearer,
    model=MODEL,
    routes=re.compile(r"/plaspy/api/users/[^/]+"),
    auth_message="Unauthorized",
)


def _tokens(pointer: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def _writable(pointer: str) -> bool:
    """A top-level writable field, or one key of `tags`."""
    parts = _tokens(pointer)
    if len(parts) == 1:
        return parts[0] in WRITABLE
    return len(parts) == 2 and parts[0] == "tags"


def _op_problem(index: int, op: Any) -> str | None:
    """Why operation `index` is refused before anything is applied, or None."""
    where = f"operation {index}"
    if not isinstance(op, dict):
        return f"{where} is not an object"
    name = op.get("op")
    if name not in OPS:
        return f"{where}: op must be one of {', '.join(sorted(OPS))}"
    path = op.get("path")
    if not isinstance(path, str) or not POINTER.fullmatch(path):
        return f"{where}: path must be a JSON pointer"
    if name in {"add", "replace", "test"} and "value" not in op:
        return f"{where}: {name} needs a value"
    if name in {"move", "copy"}:
        source = op.get("from")
        if not isinstance(source, str) or not POINTER.fullmatch(source):
            return f"{where}: {name} needs from, a JSON pointer"
        if not _writable(source) or _tokens(source)[0] == "password":
            return f"{where}: from {source} cannot be read by {name}"
    if name == "test":
        return None if path else f"{where}: test of the whole user is not supported"
    if not _writable(path):
        return f"{where}: {path or '(root)'} is read-only or not a user field"
    return None


def _type_problem(doc: Document) -> str | None:
    """Why the patched user is not a valid user, or None."""
    for key in STRINGS:
        if key in doc and doc[key] is not None and not isinstance(doc[key], str):
            return f"{key} must be a string"
    email = doc.get("email")
    if isinstance(email, str) and not is_email(email):
        return "email must be a valid email address"
    if "disabled" in doc and not isinstance(doc["disabled"], bool):
        return "disabled must be a boolean"
    tags = doc.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        return "tags must be an object of strings"
    return None


def _public(doc: Document) -> Document:
    return {key: value for key, value in doc.items() if key != "password"}


async def patch_user(call: Call) -> web.Response:
    """Apply the JSON Patch to the stored user, all operations or none."""
    user_id = call.request.match_info["user_id"]
    user = call.state.user(KIND.name, user_id)
    if user is None:
        return call.fail(404, "User not found")
    patch = call.body
    if not isinstance(patch, list):
        return _invalid(call, "the body must be a JSON array of operations")
    for index, op in enumerate(patch):
        problem = _op_problem(index, op)
        if problem is not None:
            return _invalid(call, problem)
    try:
        patched = jsonpatch.apply_patch(copy.deepcopy(user), patch)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        return _invalid(call, str(exc))
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        return _invalid(call, f"cannot apply: {exc}")
    if not isinstance(patched, dict):
        return _invalid(call, "the patched user is not an object")
    problem = _type_problem(patched)
    if problem is not None:
        return _invalid(call, problem)
    password = patched.get("password")
    if isinstance(password, str) and password != user.get("password"):
        patched["password"] = secret_hash(password)
    patched["modification"] = utc_now(zulu=True)
    call.state.users[KIND.name][user_id] = patched
    return web.json_response({"success": True, **_public(patched), **_usage(call.state)})


ROUTES: Final = (("PATCH", PATH, patch_user),)

SIMULATOR: Final = Simulator(VENDOR, ROUTES)
