"""SCIM 2.0's shapes (RFC 7643 / 7644): the PatchOp request, the User answer, the Error body.

The request is checked with scim2-models (`PatchOp[User[EnterpriseUser]]`: its operations,
their paths against the User schema and its enterprise extension, what is read-only or
required), plus what that library reads leniently and RFC 7644 does not: `schemas` must be
exactly the PatchOp URN, and a boolean attribute takes a JSON boolean (scim2-models, as
pydantic's lax mode, would take `"False"` or `1`). Values are checked by applying the patch
to a User (`apply_patch`), which is how the library checks types.

The answer is read narrowly, by hand: a service provider's User carries its own extensions
and values, and a patch it applied must not be retried because scim2-models would refuse
something in the resource it sent back. Only what usersync relies on is checked: a User
resource with an id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from scim2_models import (
    Context,
    EnterpriseUser,
    Error,
    PatchOp,
    Path,
    SCIMException,
    ScimPolicy,
    User,
)

from workers.vendors.base import describe_errors, vendor_text

MEDIA_TYPE: Final = "application/scim+json"
"""RFC 7644 §3.1: the media type of SCIM requests and answers."""
PATCH_OP_URN: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_URN: Final = "urn:ietf:params:scim:api:messages:2.0:Error"
USER_URN: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
BOOLEANS: Final = frozenset({"active", "primary"})
"""The boolean attributes of the User schema (RFC 7643 §4.1: `active`, and `primary` of each
multi-valued attribute); the enterprise extension (§4.3) has none. No other attribute or
sub-attribute bears these names, so a value under one of them is a boolean wherever it is."""

ScimUser = User[EnterpriseUser]
"""The resource a PATCH targets: the core User with the enterprise extension."""
UserPatch = PatchOp[ScimUser]
STRICT: Final = ScimPolicy()
"""RFC 7644 read strictly: unknown attributes refused, a filter matching nothing is noTarget."""
TOLERANT_PATHS: Final = ScimPolicy(unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create)
"""For checking values on a blank User: a filter matching nothing adds the entry it describes."""
TOLERANT_ERRORS: Final = ScimPolicy(unknown=ScimPolicy.Unknown.ignore)
"""An error body may carry members of the provider's own: its status and detail still read."""


class PatchRefused(Exception):
    """A PatchOp RFC 7644 refuses: what a service provider answers (status 400, `scimType`,
    `detail`). The detail never holds a value of the request (it may be a password)."""

    def __init__(self, scim_type: str | None, detail: str) -> None:
        super().__init__(detail)
        self.scim_type = scim_type
        self.detail = detail

    def describe(self) -> str:
        """`scimType: detail`, or the detail alone."""
        return f"{self.scim_type}: {self.detail}" if self.scim_type else self.detail


def _refused(exc: SCIMException) -> PatchRefused:
    """A library refusal as a `PatchRefused`; a value refused by a model is described
    without its input (`describe_errors`), not as pydantic prints it."""
    cause = exc.__cause__ or exc.__context__
    detail = describe_errors(cause) if isinstance(cause, ValidationError) else exc.detail
    return PatchRefused(exc.scim_type or None, detail)


def _boolean_problem(name: str, value: Any) -> str | None:
    """Why `value`, written at attribute `name` (any case), is not a JSON boolean where the
    schema wants one; looks into objects and arrays, whose keys are sub-attributes."""
    if name.lower() in BOOLEANS and not isinstance(value, bool):
        return f"'{name}' takes a JSON boolean (true or false)"
    items: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        items = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, list):
        items = [
            (str(key), item)
            for entry in value
            if isinstance(entry, Mapping)
            for key, item in entry.items()
        ]
    for key, item in items:
        problem = _boolean_problem(key.rsplit(":", 1)[-1].rsplit(".", 1)[-1], item)
        if problem is not None:
            return problem
    return None


def _target_name(path: str | None) -> str:
    """The attribute a path writes: its sub-attribute if it names one (`primary` of
    `emails[type eq "work"].primary`), else its attribute; "" for none or an extension."""
    if not path:
        return ""
    binding = Path[ScimUser](path).resolve()
    if binding is None:
        return ""
    return binding.sub_field_name or binding.field_name


def parse_patch(body: Any) -> PatchOp[ScimUser]:
    """`body` as a PatchOp on a User; PatchRefused as a strict service provider answers."""
    if not isinstance(body, Mapping):
        raise PatchRefused("invalidSyntax", "the body must be a PatchOp object")
    if body.get("schemas") != [PATCH_OP_URN]:
        raise PatchRefused("invalidSyntax", f"schemas must be exactly [{PATCH_OP_URN!r}]")
    try:
        patch = UserPatch.model_validate(
            dict(body), scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=STRICT
        )
    except ValidationError as exc:
        first = Error.from_validation_errors(exc)[0]
        raise PatchRefused(first.scim_type, first.detail or "invalid PatchOp") from exc
    for index, operation in enumerate(patch.operations or []):
        if operation.op == "remove":
            continue
        target = _target_name(str(operation.path) if operation.path is not None else None)
        problem = _boolean_problem(target, operation.value)
        if problem is not None:
            raise PatchRefused("invalidValue", f"Operations[{index}]: {problem}")
    return patch


def apply_patch(patch: PatchOp[ScimUser], user: ScimUser, policy: ScimPolicy = STRICT) -> bool:
    """Apply `patch` to `user` in place (all or nothing); whether anything changed.
    PatchRefused for a value the schema refuses, a filter matching nothing (noTarget, under
    the strict policy), a read-only, immutable or required attribute touched."""
    try:
        return patch.patch(user, policy)
    except SCIMException as exc:
        raise _refused(exc) from exc


class UserAnswer(BaseModel):
    """The 200 answer to a PATCH (RFC 7644 §3.5.2): the User resource, with its id."""

    model_config = ConfigDict(extra="allow")

    schemas: list[str]
    id: str = Field(min_length=1)

    @field_validator("schemas")
    @classmethod
    def _a_user(cls, schemas: list[str]) -> list[str]:
        if USER_URN not in schemas:
            raise ValueError(f"a User resource lists {USER_URN}")
        return schemas


def error_text(payload: Mapping[str, Any]) -> str | None:
    """The words of a SCIM Error body (RFC 7644 §3.12): `scimType: detail`, or the detail;
    another JSON object's `detail` or `message`, when the provider strays from the schema."""
    try:
        error: Error | None = Error.model_validate(dict(payload), scim_policy=TOLERANT_ERRORS)
    except ValidationError:
        error = None
    if error is not None and error.detail:
        words = f"{error.scim_type}: {error.detail}" if error.scim_type else error.detail
        return vendor_text(words)
    return vendor_text(payload.get("detail")) or vendor_text(payload.get("message"))
