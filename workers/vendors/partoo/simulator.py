"""Partoo simulator: `POST /partoo/v2/user/{user_id}` with patch semantics, as in seed 003.

Only the documented properties are accepted, none nullable, with their types, enums and the
password policy; problems answer 400 `{"errors": {"json": {field: [messages]}}}` (Partoo's
marshmallow-style shape). Passwords are kept only as `password_set: true`.

A usersync instance points `base_url` at `http://HOST:PORT/partoo/v2` and sends
`x-APIKey: <key>`. Where the seed is silent: errors use marshmallow's wording (`Unknown
field.`, `Field may not be null.`, `Not a valid string.`, `Must be one of: …`); a body that is
not an object or not JSON is `{"errors": {"json": {"_schema": [...]}}}`. A password failing
the policy lists each rule it breaks. `org_id` is accepted from anyone (the sandbox has no
PROVIDER notion). Partoo has no body-level failure: such a fault answers 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from sandbox.common import Call, Simulator, Vendor, is_email
from sandbox.state import Document, SandboxState, UserModel
from workers.vendors.partoo import KIND

PREFIX: Final = "/partoo"
PATH: Final = "/partoo/v2/user/{user_id}"
ROLES: Final = ("ORG_ADMIN", "ORG_MANAGER", "GROUP_MANAGER", "BUSINESS_MANAGER", "PUBLISHER")
STATUSES: Final = ("active", "invited")
LANGS: Final = (
    "fr",
    "en",
    "es",
    "it",
    "pt-br",
    "de",
    "ar",
    "nl",
    "pl",
    "cs",
    "ca",
    "sk",
    "pt",
    "lv",
    "ro",
    "bg",
    "hu",
)
SIDEBAR_PAGES: Final = (
    "bulk_modification",
    "diffusion",
    "feedback_management",
    "messages",
    "posts",
    "presence_analytics",
    "review_analytics",
    "review_invite",
    "review_management",
)
NOT_STRING: Final = "Not a valid string."
NOT_BOOLEAN: Final = "Not a valid boolean."
NOT_INTEGER: Final = "Not a valid integer."
NOT_LIST: Final = "Not a valid list."


def failure(state: SandboxState, status: int, message: str) -> web.Response:
    """The seed's error shapes: `authentication` (401), `authorization` (403), `json`."""
    errors: dict[str, Any]
    if status == 401:
        errors = {"authentication": message}
    elif status == 403:
        errors = {"authorization": message}
    elif status == 400:
        errors = {"json": {"_schema": [message]}}
    else:
        errors = {"json": message}
    return web.json_response({"errors": errors}, status=status)


def body_failure(state: SandboxState, message: str) -> web.Response:
    """Partoo has no "200 but failed" answer: a body-level failure is a 400."""
    return failure(state, 400, message)


def blank(user_id: str) -> Document:
    """A user with every documented property set to its default (none is nullable)."""
    return {
        "id": user_id,
        "email": f"user-{user_id}@example.com",
        "first_name": "",
        "last_name": "",
        "org_id": 42,
        "accesses": [],
        "business_ids": [],
        "role": "BUSINESS_MANAGER",
        "custom_role": "",
        "sidebar_pages": [],
        "status": "active",
        "disabled": False,
        "password_set": False,
        "lang": "fr",
        "sso_only": False,
        "receive_reviews_email_notifications": False,
    }


def demo() -> Document:
    """The user of the seed's examples."""
    return {
        **blank(KIND.demo_user_id),
        "email": "perceval@kaamelott.com",
        "first_name": "Perceval",
        "last_name": "de Galles",
        "business_ids": ["b1"],
    }


def seal(doc: Document) -> Document:
    """A password given through the control API is kept only as `password_set`."""
    password = doc.pop("password", None)
    if isinstance(password, str) and password:
        doc["password_set"] = True
    return doc


MODEL: Final = UserModel(blank=blank, demo=demo, demo_id=KIND.demo_user_id, seal=seal)


def _api_key(request: web.Request) -> str | None:
    return request.headers.get("x-APIKey")


VENDOR: Final = Vendor(
    kind=KIND.name,
    prefix=PREFIX,
    failure=failure,
    body_failure=body_failure,
    credential=_api_key,
    model=MODEL,
    routes=re.compile(r"/partoo/v2/user/[^/]+"),
    auth_message="User not authenticated",
)


def _string(value: Any) -> list[str]:
    return [] if isinstance(value, str) else [NOT_STRING]


def _boolean(value: Any) -> list[str]:
    return [] if isinstance(value, bool) else [NOT_BOOLEAN]


def _integer(value: Any) -> list[str]:
    return [] if isinstance(value, int) and not isinstance(value, bool) else [NOT_INTEGER]


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], list[str]]:
    def check(value: Any) -> list[str]:
        return [] if value in choices else [f"Must be one of: {', '.join(choices)}."]

    return check


def _email(value: Any) -> list[str]:
    if not isinstance(value, str):
        return [NOT_STRING]
    return [] if is_email(value) else ["Not a valid email address."]


def _accesses(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(group, list) for group in value):
        return ["Not a valid list of lists of integers."]
    flat = [item for group in value for item in group]
    return [] if all(_integer(item) == [] for item in flat) else [NOT_INTEGER]


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return [NOT_LIST]
    return [] if all(isinstance(item, str) for item in value) else [NOT_STRING]


def _sidebar_pages(value: Any) -> list[str]:
    if not isinstance(value, list):
        return [NOT_LIST]
    return [] if all(item in SIDEBAR_PAGES for item in value) else _one_of(SIDEBAR_PAGES)(None)


def _password(value: Any) -> list[str]:
    """The documented policy: 8+ characters, an upper and a lower case letter, a special one."""
    if not isinstance(value, str):
        return [NOT_STRING]
    problems = []
    if len(value) < 8:
        problems.append("Password must be at least 8 characters long.")
    if not re.search(r"[A-Z]", value) or not re.search(r"[a-z]", value):
        problems.append("Password must contain an upper case and a lower case letter.")
    if not re.search(r"[^A-Za-z0-9]", value):
        problems.append("Password must contain a special character.")
    return problems


CHECKS: Final[dict[str, Callable[[Any], list[str]]]] = {
    "email": _email,
    "first_name": _string,
    "last_name": _string,
    "org_id": _integer,
    "accesses": _accesses,
    "business_ids": _strings,
    "role": _one_of(ROLES),
    "custom_role": _string,
    "sidebar_pages": _sidebar_pages,
    "status": _one_of(STATUSES),
    "disabled": _boolean,
    "password": _password,
    "lang": _one_of(LANGS),
    "sso_only": _boolean,
    "receive_reviews_email_notifications": _boolean,
}


def _errors(body: dict[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for key, value in body.items():
        check = CHECKS.get(key)
        if check is None:
            errors[key] = ["Unknown field."]
        elif value is None:
            errors[key] = ["Field may not be null."]
        else:
            problems = check(value)
            if problems:
                errors[key] = problems
    return errors


async def update_user(call: Call) -> web.Response:
    """Change only the given properties; answer `{"id", "status": "success"}`."""
    user_id = call.request.match_info["user_id"]
    user = call.state.user(KIND.name, user_id)
    if user is None:
        return call.fail(404, "Resource not found")
    body = call.body
    if not isinstance(body, dict):
        return web.json_response(
            {"errors": {"json": {"_schema": ["Invalid input type."]}}}, status=400
        )
    errors = _errors(body)
    if errors:
        return web.json_response({"errors": {"json": errors}}, status=400)
    for key, value in body.items():
        if key == "password":
            user["password_set"] = True
        else:
            user[key] = value
    return web.json_response({"id": user_id, "status": "success"})


ROUTES: Final = (("POST", PATH, update_user),)

SIMULATOR: Final = Simulator(VENDOR, ROUTES)
