"""SCIM 2.0 service provider simulator: `PATCH /scim/v2/Users/{id}` (RFC 7644 §3.5.2).

Strict as RFC 7643/7644 read strictly (scim2-models' default policy, plus `schemas` exact and
JSON booleans: `workers.vendors.scim.schema`): the body is a PatchOp whose `schemas` is
exactly its URN, `Operations` holds one or more operations, `op` is add, remove or replace
(any case, as Entra ID sends them), paths follow the grammar (`emails[type eq "work"].value`)
and name attributes of the User schema or its enterprise extension, a remove has a path and
no value, read-only attributes (`id`, `meta`, `groups`) are refused, values have their
attribute's type, and a filter that matches nothing in an add or replace is `noTarget`. The
patch is applied to the stored user as a whole or not at all.

Answers: 200 with the patched User (`password` never returned, RFC 7643 §4.1.1) and its
`ETag`; errors are `urn:ietf:params:scim:api:messages:2.0:Error` bodies with `status` as a
string, `scimType` where RFC 7644 §3.12 has one, and `detail`: 400 (invalidSyntax,
invalidPath, invalidValue, noTarget, mutability), 401 (bad bearer token), 404 (unknown
user), 409 uniqueness (a `userName` another user has, compared case-insensitively as
RFC 7643 §4.1.1 says), 415 (not `application/scim+json` or `application/json`).

A usersync instance points `base_url` at `http://HOST:PORT/scim/v2` and sends
`Authorization: Bearer <token>`. Where RFC 7644 is silent: a stored user's `meta.version`
is `W/"<n>"`, counting the patches that changed it; a body-level failure fault answers 400
(SCIM has no "200 but failed"); `password` is stored as a SHA-256 hash. The demo user is
RFC 7643 §8.2's Barbara Jensen.
"""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError
from scim2_models import Context, Error

from sandbox.common import Call, Simulator, Vendor, bearer, secret_hash, utc_now
from sandbox.state import Document, SandboxState, UserModel
from workers.vendors.scim import KIND
from workers.vendors.scim.schema import (
    MEDIA_TYPE,
    STRICT,
    USER_URN,
    PatchRefused,
    ScimUser,
    apply_patch,
    parse_patch,
)

PREFIX: Final = "/scim"
PATH: Final = "/scim/v2/Users/{user_id}"
MEDIA_TYPES: Final = frozenset({MEDIA_TYPE, "application/json"})
"""RFC 7644 §3.1: a provider MUST accept application/scim+json and SHOULD application/json."""


def scim_error(status: int, detail: str, scim_type: str | None = None) -> web.Response:
    """An RFC 7644 §3.12 Error body (its `status` a string) at `status`."""
    error = Error(status=status, scim_type=scim_type, detail=detail)
    return web.json_response(error.model_dump(), status=status, content_type=MEDIA_TYPE)


def failure(state: SandboxState, status: int, message: str) -> web.Response:
    """Every refusal is a SCIM Error; the toolkit's (401, 404, 405, 415, faults) carry no
    scimType."""
    return scim_error(status, message)


def body_failure(state: SandboxState, message: str) -> web.Response:
    """SCIM has no "200 but failed": a body-level failure is a 400 Error."""
    return scim_error(400, message)


def _meta(version: int, created: str, modified: str) -> dict[str, Any]:
    return {
        "resourceType": "User",
        "created": created,
        "lastModified": modified,
        "version": f'W/"{version}"',
    }


def blank(user_id: str) -> Document:
    """A User with only what RFC 7643 requires (`userName`: the id) and `meta`."""
    now = utc_now(zulu=True)
    return {"schemas": [USER_URN], "id": user_id, "userName": user_id, "meta": _meta(1, now, now)}


def demo() -> Document:
    """RFC 7643 §8.2's full User representation (without its x509 certificate and groups)."""
    return {
        **blank(KIND.demo_user_id),
        "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {
            "formatted": "Ms. Barbara J Jensen, III",
            "familyName": "Jensen",
            "givenName": "Barbara",
            "middleName": "Jane",
            "honorificPrefix": "Ms.",
            "honorificSuffix": "III",
        },
        "displayName": "Babs Jensen",
        "nickName": "Babs",
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": True},
            {"value": "babs@jensen.org", "type": "home"},
        ],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
        "userType": "Employee",
        "title": "Tour Guide",
        "preferredLanguage": "en-US",
        "locale": "en-US",
        "timezone": "America/Los_Angeles",
        "active": True,
    }


def _load(doc: Document) -> ScimUser:
    """The stored document as a User (its password hash left out); ValueError if it is not
    one RFC 7643 allows."""
    fields = {key: value for key, value in doc.items() if key != "password"}
    return ScimUser.model_validate(fields, scim_ctx=Context.DEFAULT, scim_policy=STRICT)


def _store(user: ScimUser, password_hash: Any) -> Document:
    """A User as stored: every attribute, a new password hashed, else the old hash kept."""
    doc = user.model_dump(scim_ctx=Context.DEFAULT)
    password = doc.pop("password", None)
    if isinstance(password, str):
        doc["password"] = secret_hash(password)
    elif password_hash is not None:
        doc["password"] = password_hash
    return doc


def seal(doc: Document) -> Document:
    """A control-API document must be a User (ValueError: the control API answers 400); a
    password given in it is kept as its hash."""
    try:
        user = _load(doc)
    except ValidationError as exc:
        raise ValueError(f"not a SCIM User: {exc.errors()[0]['msg']}") from exc
    password = doc.get("password")
    return _store(user, secret_hash(password) if isinstance(password, str) else None)


MODEL: Final = UserModel(blank=blank, demo=demo, demo_id=KIND.demo_user_id, seal=seal)

VENDOR: Final = Vendor(
    kind=KIND.name,
    prefix=PREFIX,
    failure=failure,
    body_failure=body_failure,
    credential=bearer,
    model=MODEL,
    routes=re.compile(r"/scim/v2/Users/[^/]+"),
    auth_message="Authorization failure: a bearer token is required (RFC 7644 §2).",
    media_types=MEDIA_TYPES,
)


def _name_taken(call: Call, user_id: str, user: ScimUser) -> bool:
    """Whether another stored user has this `userName` (case-insensitive, RFC 7643 §4.1.1)."""
    name = (user.user_name or "").casefold()
    return any(
        other_id != user_id and str(other.get("userName") or "").casefold() == name
        for other_id, other in call.state.users[KIND.name].items()
    )


def _answer(doc: Document) -> web.Response:
    """The 200 answer: the User as a PATCH response shows it (no password), with its ETag."""
    user = _load(doc)
    body = user.model_dump(scim_ctx=Context.RESOURCE_PATCH_RESPONSE)
    response = web.json_response(body, content_type=MEDIA_TYPE)
    response.headers["ETag"] = str(doc["meta"]["version"])
    return response


async def patch_user(call: Call) -> web.Response:
    """Apply a PatchOp to a stored user: all of it, or a 400 Error and nothing changed."""
    user_id = call.request.match_info["user_id"]
    doc = call.state.user(KIND.name, user_id)
    if doc is None:
        return scim_error(404, f"Resource {user_id} not found")
    user = _load(doc)
    try:
        changed = apply_patch(parse_patch(call.body), user)
    except PatchRefused as refused:
        return scim_error(400, refused.detail, refused.scim_type)
    if _name_taken(call, user_id, user):
        return scim_error(409, "userName is already taken by another User", "uniqueness")
    patched = _store(user, doc.get("password"))
    if changed:  # a password always is: the stored user is loaded without its hash
        meta = doc["meta"]
        version = int(str(meta["version"]).strip('W/"')) + 1
        patched["meta"] = _meta(version, meta["created"], utc_now(zulu=True))
    call.state.users[KIND.name][user_id] = patched
    return _answer(patched)


ROUTES: Final = (("PATCH", PATH, patch_user),)

SIMULATOR: Final = Simulator(VENDOR, ROUTES)
