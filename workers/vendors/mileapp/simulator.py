"""MileApp simulator: `PATCH /mileapp/api/v3/user`, as in seed 000.

The documented path carries no user id, so usersync sends the MileApp user id as `_id` in the
body. The body is checked strictly (only `_id`, `name`, `email`, `phoneNumber`, all strings)
so that adapter mistakes show as refusals rather than as silent success.

A usersync instance points `base_url` at `http://HOST:PORT/mileapp/api/v3` and sends
`Authorization: Bearer <token>`. Where the seed is silent: `userId` in the failure body echoes
the HTTP status (the seed's example has 400 with HTTP 400); an unknown `_id` is HTTP 404;
`name` must not be blank; `phoneNumber` must be E.164; no field is nullable, so a phone number
cannot be cleared; a body with only `_id` is accepted (nothing changes): the schema allows it.
Body-level failures (`status: false`) come at HTTP 200.
"""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web

from sandbox.common import Call, Simulator, Vendor, bearer, is_email, utc_now
from sandbox.state import Document, SandboxState, UserModel
from workers.vendors.mileapp import KIND

PREFIX: Final = "/mileapp"
PATH: Final = "/mileapp/api/v3/user"
E164: Final = re.compile(r"\+[1-9]\d{1,14}")
EDITABLE: Final = ("name", "email", "phoneNumber")
ORGANIZATION_ID: Final = "65c1f4eeca7c4816d94587b2"
ROLE_ID: Final = "65c1f4eeca7c4816d94587b3"


def failure(state: SandboxState, status: int, message: str) -> web.Response:
    """The seed's `patchuserfailed` shape; `userId` echoes the HTTP status as in its example."""
    return web.json_response({"status": False, "message": message, "userId": status}, status=status)


def body_failure(state: SandboxState, message: str) -> web.Response:
    """MileApp reports some failures in the body of an HTTP 200."""
    return web.json_response({"status": False, "message": message, "userId": 400}, status=200)


def blank(user_id: str) -> Document:
    """A user shaped like the seed's example `property`, with nothing personal set."""
    now = utc_now()
    return {
        "_id": user_id,
        "name": None,
        "email": None,
        "provider": "web",
        "hubId": [],
        "organizationId": ORGANIZATION_ID,
        "status": "active",
        "lastLogin": None,
        "roleId": ROLE_ID,
        "activationCode": None,
        "onboardingStep": [],
        "teamId": [],
        "updatedTime": now,
        "createdTime": now,
        "phoneNumber": None,
        "dynamicVisitTime": [],
    }


def demo() -> Document:
    """The seed's example user."""
    return {
        **blank(KIND.demo_user_id),
        "name": "Example",
        "email": "example@mile.app",
        "lastLogin": "2024-06-18T03:54:47+00:00",
        "activationCode": "5dc25a36e280ba34ef6dfe1f54dcb5d6",
        "updatedTime": "2024-06-18T04:42:04+00:00",
        "createdTime": "2024-02-06T08:59:26+00:00",
    }


MODEL: Final = UserModel(blank=blank, demo=demo, demo_id=KIND.demo_user_id, id_key="_id")

VENDOR: Final = Vendor(
    kind=KIND.name,
    prefix=PREFIX,
    failure=failure,
    body_failure=body_failure,
    credential=bearer,
    model=MODEL,
    routes=re.compile(re.escape(PATH)),
    auth_message="Unauthenticated.",
)


def _problems(body: dict[str, Any]) -> list[str]:
    """Laravel-style messages for everything wrong with the body, in a stable order."""
    problems = [f"The {key} field is not allowed." for key in body if key not in {"_id", *EDITABLE}]
    user_id = body.get("_id")
    if user_id is None:
        problems.append("The _id field is required.")
    elif not isinstance(user_id, str) or not user_id:
        problems.append("The _id field must be a non-empty string.")
    for key in EDITABLE:
        if key not in body:
            continue
        value = body[key]
        if not isinstance(value, str):
            problems.append(f"The {key} field must be a string.")
        elif key == "name" and not value.strip():
            problems.append("The name field must not be empty.")
        elif key == "email" and not is_email(value):
            problems.append("The email field must be a valid email address.")
        elif key == "phoneNumber" and not E164.fullmatch(value):
            problems.append("The phoneNumber field must be an E.164 number such as +628123456789.")
    return problems


async def patch_user(call: Call) -> web.Response:
    """Update the user named by `_id` with the given fields and answer the full user."""
    body = call.body
    if not isinstance(body, dict):
        return call.fail(400, "The request body must be a JSON object.")
    problems = _problems(body)
    if problems:
        return call.fail(400, " ".join(problems))
    user = call.state.user(KIND.name, body["_id"])
    if user is None:
        return call.fail(404, "User not found.")
    for key in EDITABLE:
        if key in body:
            user[key] = body[key]
    user["updatedTime"] = utc_now()
    return web.json_response(
        {"status": True, "message": "Data has been updated successfully.", "property": user}
    )


ROUTES: Final = (("PATCH", PATH, patch_user),)

SIMULATOR: Final = Simulator(VENDOR, ROUTES)
