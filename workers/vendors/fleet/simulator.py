"""Fleet simulator: `PATCH /fleet/api/users/{user_id}`, as in seed 001.

The body is checked against PatchUserBody exactly (unknown keys, types, nullability, email
format, role enum, `YYYY-MM-DD` dates). The seed documents no error body, so errors are JSON
`{"error": {"code", "message", "details"?}}`: 400 bad id or JSON, 401 bad key, 404 unknown
user, 409 email of another user, 415 not JSON, 422 schema violations.

A usersync instance points `base_url` at `http://HOST:PORT/fleet/api` and sends
`Authorization: Bearer flt_sk_…` (a sandbox given a key not starting with `flt_sk_` refuses
to start). Where the seed is silent: `details: [{field, message}]` on 422; the order of checks
is 401, 400 for an id not matching `^[1-9]\\d*$`, 404, 422 for anything outside
PatchUserBody, 409 when the email belongs to another user (the seed says it must not).
`password` is kept as `password_set`; `""` and `null` leave it unchanged. Dates must be real
`YYYY-MM-DD` dates; `phone` is otherwise free text. Fleet has no body-level failure: such a
fault answers 400 in the error shape.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Final

from aiohttp import web

from sandbox.common import Call, Simulator, Vendor, bearer, is_email
from sandbox.state import Document, SandboxState, UserModel
from workers.vendors.fleet import KIND

PREFIX: Final = "/fleet"
PATH: Final = "/fleet/api/users/{user_id}"
USER_ID: Final = re.compile(r"[1-9]\d*")
DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
ROLES: Final = ("EMPLOYEE", "ADMIN")
COMPANY_ID: Final = 1
NULLABLE_STRINGS: Final = (
    "first_name",
    "last_name",
    "phone",
    "phone_country",
    "language",
    "position",
    "city_of_birth",
    "country_of_birth",
)
DATES: Final = ("arrival_date", "departure_date", "date_of_birth")
PROPERTIES: Final = frozenset({"email", "password", "role", *NULLABLE_STRINGS, *DATES})
RESPONSE_FIELDS: Final = (
    "id",
    "company_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "phone_country",
    "language",
    "position",
    "role",
    "arrival_date",
    "departure_date",
    "date_of_birth",
    "city_of_birth",
    "country_of_birth",
)


def _code(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        415: "unsupported_media_type",
        422: "validation_error",
        429: "rate_limited",
    }.get(status, "server_error" if status >= 500 else f"http_{status}")


def failure(state: SandboxState, status: int, message: str) -> web.Response:
    """The seed documents no error body: a JSON `{"error": {code, message}}` it is."""
    return web.json_response({"error": {"code": _code(status), "message": message}}, status=status)


def body_failure(state: SandboxState, message: str) -> web.Response:
    """Fleet has no "200 but failed" answer: a body-level failure is a 400."""
    return failure(state, 400, message)


def blank(user_id: str) -> Document:
    """Every GetUserResponse property (unset ones null), plus whether a password is set."""
    doc: Document = dict.fromkeys(RESPONSE_FIELDS)
    doc.update(id=int(user_id), company_id=COMPANY_ID, role="EMPLOYEE", password_set=False)
    return doc


def demo() -> Document:
    """The user of the seed's examples."""
    return {
        **blank(KIND.demo_user_id),
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "phone": "+33123456789",
        "phone_country": "FR",
        "language": "fr",
        "position": "Software engineer",
        "arrival_date": "2024-01-15",
        "date_of_birth": "1990-05-21",
        "city_of_birth": "Paris",
        "country_of_birth": "FR",
    }


def seal(doc: Document) -> Document:
    """A password given through the control API is kept only as `password_set`."""
    password = doc.pop("password", None)
    if isinstance(password, str) and password:
        doc["password_set"] = True
    return doc


def check_token(token: str) -> None:
    """Fleet issues API keys starting with `flt_sk_`: a sandbox given another is misconfigured."""
    if not token.startswith("flt_sk_"):
        raise ValueError("Fleet API keys start with 'flt_sk_'")


MODEL: Final = UserModel(
    blank=blank, demo=demo, demo_id=KIND.demo_user_id, seal=seal, id_pattern=USER_ID
)

VENDOR: Final = Vendor(
    kind=KIND.name,
    prefix=PREFIX,
    failure=failure,
    body_failure=body_failure,
    credential=bearer,
    model=MODEL,
    routes=re.compile(r"/fleet/api/users/[^/]+"),
    auth_message="Missing or invalid API key (expected Authorization: Bearer flt_sk_...).",
    check_token=check_token,
)


def _problem(key: str, value: Any) -> str | None:
    """Why one property of PatchUserBody is refused, or None when it is valid."""
    if key == "email":
        if not isinstance(value, str):
            return "must be a string (email is not nullable)"
        return None if is_email(value) else "must be a valid email address"
    if key == "role":
        return None if value in ROLES else f"must be one of {', '.join(ROLES)}"
    if value is None:
        return None
    if not isinstance(value, str):
        return "must be a string or null"
    if key in DATES:
        try:
            if DATE.fullmatch(value):
                dt.date.fromisoformat(value)
                return None
        except ValueError:
            pass
        return "must be a date YYYY-MM-DD"
    return None


def _details(body: dict[str, Any]) -> list[dict[str, str]]:
    details = [
        {"field": key, "message": "is not a property of PatchUserBody"}
        for key in body
        if key not in PROPERTIES
    ]
    for key in sorted(PROPERTIES & body.keys()):
        problem = _problem(key, body[key])
        if problem is not None:
            details.append({"field": key, "message": problem})
    return details


def _email_taken(call: Call, user: Document, email: str) -> bool:
    current = user.get("email")
    if isinstance(current, str) and current.lower() == email.lower():
        return False
    return any(
        other is not user and str(other.get("email") or "").lower() == email.lower()
        for other in call.state.users[KIND.name].values()
    )


async def patch_user(call: Call) -> web.Response:
    """Apply a partial update: null clears, except `password` (null leaves it unchanged)."""
    user_id = call.request.match_info["user_id"]
    if not USER_ID.fullmatch(user_id):
        return call.fail(400, f"user_id {user_id!r} does not match ^[1-9]\\d*$.")
    user = call.state.user(KIND.name, user_id)
    if user is None:
        return call.fail(404, f"User {user_id} not found.")
    body = call.body
    if not isinstance(body, dict):
        return call.fail(422, "The request body must be a JSON object (PatchUserBody).")
    details = _details(body)
    if details:
        return web.json_response(
            {
                "error": {
                    "code": "validation_error",
                    "message": "The request body does not match PatchUserBody.",
                    "details": details,
                }
            },
            status=422,
        )
    if "email" in body and _email_taken(call, user, body["email"]):
        return call.fail(409, "This email already belongs to another active user.")
    for key, value in body.items():
        if key == "password":
            if value:
                user["password_set"] = True
        elif key == "phone" and value is not None:
            user[key] = value.replace(" ", "")
        else:
            user[key] = value
    return web.json_response({"data": {key: user.get(key) for key in RESPONSE_FIELDS}})


ROUTES: Final = (("PATCH", PATH, patch_user),)

SIMULATOR: Final = Simulator(VENDOR, ROUTES)
