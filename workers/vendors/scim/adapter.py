"""Canonical changes -> a SCIM 2.0 `PATCH {base_url}/Users/{id}` (RFC 7644 §3.5.2), and the
service provider's answer -> an outcome.

One operation per changed field, in the order of `ATTRIBUTES`: a value is a `replace` (on an
attribute the user lacks, RFC 7644 §3.5.2.3 makes it an add), a cleared field a `remove`.
These are right by construction (constant paths, values typed by the canonical model; the
tests apply them in the strict simulator), so only `vendor_fields` operations are checked
against scim2-models when translating: checking a whole 7-field PatchOp costs ~1.7 ms.
`email`, `phone` and `role` go to multi-valued attributes; each is replaced whole by one
entry (`[{"value", "type": "work", "primary": true}]`, a role without `type`): a `replace` or
`add` on `emails[type eq "work"].value` is a 400 noTarget under RFC 7644 for a user who has
no work email yet, and a whole-attribute replace is valid whatever the provider holds. The
cost: the user's other emails (phones, roles) at the provider are replaced too.

`vendor_fields` for a SCIM instance are further PatchOp operations (a JSON array), sent after
the mapped ones: `[{"op": "replace", "path": "userName", "value": "ada"}]`. An operation of
theirs on an attribute a mapped one writes replaces it (reported `vendor_fields_override`).
The password is only ever sent from `changes.password`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final

from scim2_models import Path, SCIMException

from core.scim_attributes import SCIM_ATTRIBUTES
from workers.errors import SchemaRefused, VendorRefused
from workers.vendors.base import AdapterBase, sorted_omissions, vendor_url
from workers.vendors.interface import ChangeSet, Omission, Translation, VendorRequest, VendorResult
from workers.vendors.scim.schema import (
    MEDIA_TYPE,
    PATCH_OP_URN,
    TOLERANT_PATHS,
    PatchRefused,
    ScimUser,
    UserAnswer,
    apply_patch,
    error_text,
    parse_patch,
)

ATTRIBUTES: Final = {
    row.canonical: row.attribute if row.multi_valued else row.patch_path for row in SCIM_ATTRIBUTES
}
"""Canonical field -> SCIM User attribute path, from the one table (`core.scim_attributes`)
that SCIM ingress reads too; a multi-valued attribute is written whole (see the module).
`language` goes to `preferredLanguage` only (`locale` is a formatting locale, which no
canonical field states); the others (phone_country, country, start/end dates, birth_*, tags)
have no standard User attribute: omitted, `no_home`."""
NOT_A_PATCH: Final = (
    "must be a list of SCIM PatchOp operations (RFC 7644 §3.5.2), "
    'e.g. [{"op": "replace", "path": "userName", "value": "ada"}]'
)
Target = tuple[str, str, str | None]
"""What an operation writes: (model, attribute, sub-attribute or None), Python names."""


def _targets(operation: Mapping[str, Any]) -> list[Target]:
    """The attributes an operation writes: its path's, or, for an object written at the
    resource or at a single-valued complex attribute, each of its keys'."""
    path = operation.get("path")
    return _written(path if isinstance(path, str) else "", operation.get("value"))


def _written(path: str, value: Any) -> list[Target]:
    prefix = None
    binding = Path[ScimUser](path).resolve() if path else None
    if isinstance(value, Mapping):
        if not path:
            prefix = ""
        elif binding is None:
            prefix = f"{path}:"  # an extension: its attributes follow its URN after a colon
        elif binding.sub_field_name is None and not binding.is_multivalued:
            prefix = f"{path}."
    if prefix is not None:
        return [target for key in value for target in _written(f"{prefix}{key}", value[key])]
    if binding is None:
        return []
    return [(binding.model.__name__, binding.field_name, binding.sub_field_name)]


def _overrides(theirs: Target, mine: Target) -> bool:
    """Whether an operation on `theirs` replaces a mapped one on `mine`: one attribute, and
    a sub-attribute named by both is the same (`name` covers `name.givenName`)."""
    return theirs[:2] == mine[:2] and (None in (theirs[2], mine[2]) or theirs[2] == mine[2])


class ScimAdapter(AdapterBase[UserAnswer]):
    """Any SCIM 2.0 service provider: one PatchOp per user, ids are opaque strings, the role
    map's values are free text (the provider's role values)."""

    kind: ClassVar[str] = "scim"
    answer_model = UserAnswer
    answer_doc = "SCIM's documented body (a User resource: schemas listing the User URN, an id)"

    def translate(self, change: ChangeSet) -> Translation:
        """The PatchOp for the fields SCIM has a home for; None when there is none."""
        url = vendor_url(self.settings.base, "Users", change.vendor_user_id, vendor="SCIM")
        mapped: list[tuple[str, dict[str, Any]]] = []
        omitted: list[Omission] = []
        for field in change.changes:
            if field not in ATTRIBUTES:
                omitted.append(Omission(field, "no_home"))
        for field, path in ATTRIBUTES.items():
            if field in change.changes:
                mapped.append((field, self._operation(field, path, change.changes[field])))
        extra = self._vendor_fields(change.vendor_fields)
        theirs = [target for operation in extra for target in _targets(operation)]
        operations = []
        for field, operation in mapped:
            if theirs and any(_overrides(t, m) for t in theirs for m in _targets(operation)):
                omitted.append(Omission(field, "vendor_fields_override"))
            else:
                operations.append(operation)
        operations += extra
        ordered = sorted_omissions(omitted)
        if not operations:
            return Translation(request=None, omitted=ordered)
        body = {"schemas": [PATCH_OP_URN], "Operations": operations}
        headers = {
            "Authorization": f"Bearer {self.settings.auth.token.get_secret_value()}",
            "Content-Type": MEDIA_TYPE,
            "Accept": MEDIA_TYPE,
        }
        request = VendorRequest(method="PATCH", url=url, headers=headers, body=body)
        return Translation(request=request, omitted=ordered)

    def read_response(self, status: int, headers: Mapping[str, str], body: bytes) -> VendorResult:
        """204 is success without a body (RFC 7644 §3.5.2); 501 is permanent (the provider
        does not implement PATCH, §3.12); otherwise as every vendor (`AdapterBase`)."""
        if status == 204:
            return VendorResult()
        if status == 501:
            raise VendorRefused(
                "http_501",
                http_status=501,
                vendor_message="the service provider does not implement PATCH (RFC 7644 §3.12)",
            )
        return super().read_response(status, headers, body)

    def vendor_message(self, payload: dict[str, Any]) -> str | None:
        """The SCIM Error's `scimType: detail` (see `error_text`)."""
        return error_text(payload)

    def vendor_fields_problems(self, fields: Any) -> list[tuple[str, str]]:
        """`vendor_fields` for SCIM: PatchOp operations (`_vendor_fields` refuses exactly
        these), each problem at `vendor_fields.<instance>.<index>`."""
        where = f"vendor_fields.{self.name}"
        if not fields:
            return []
        if not isinstance(fields, Sequence) or isinstance(fields, str):
            return [(where, NOT_A_PATCH)]
        return [(f"{where}.{index}", message) for index, message in _operation_problems(fields)]

    def _vendor_fields(self, fields: Any) -> list[dict[str, Any]]:
        """The event's own PatchOp operations, checked; SchemaRefused otherwise."""
        problems = self.vendor_fields_problems(fields)
        if problems:
            message = "; ".join(f"{path}: {text}" for path, text in problems)
            raise SchemaRefused("invalid_vendor_fields", vendor_message=message)
        return [dict(operation) for operation in fields or ()]

    def _operation(self, field: str, path: str, value: Any) -> dict[str, Any]:
        """The operation for one canonical field: remove when cleared, else replace."""
        if value is None:
            return {"op": "remove", "path": path}
        if field == "email":
            value = [{"value": value, "type": "work", "primary": True}]
        elif field == "phone":
            value = [{"value": str(value).replace(" ", ""), "type": "work", "primary": True}]
        elif field == "role":
            value = [{"value": self.map_role(value), "primary": True}]
        return {"op": "replace", "path": path, "value": value}


def _problem(body: Mapping[str, Any]) -> PatchRefused | None:
    """Why a service provider would refuse the PatchOp `body` whatever its user holds, or
    None: checked (`parse_patch`), then applied to a blank User to check its values (a
    filter matching nothing there says nothing of the provider's user: not a problem)."""
    try:
        patch = parse_patch(body)
    except PatchRefused as refused:
        return refused
    try:
        apply_patch(patch, ScimUser(user_name="usersync-check"), TOLERANT_PATHS)
    except PatchRefused as refused:
        return None if refused.scim_type == "noTarget" else refused
    return None


def _operation_problems(operations: Iterable[Any]) -> list[tuple[int, str]]:
    """Each refused operation of `vendor_fields` as (index, message), checked one by one."""
    problems = []
    for index, operation in enumerate(operations):
        if not isinstance(operation, Mapping):
            problems.append((index, "must be a PatchOp operation (an object with `op`)"))
            continue
        if any(target[1] == "password" for target in _safe_targets(operation)):
            problems.append((index, "the password is sent from changes.password, not here"))
            continue
        problem = _problem({"schemas": [PATCH_OP_URN], "Operations": [dict(operation)]})
        if problem is not None:
            detail = problem.describe().replace("Operations[0]: ", "")
            problems.append((index, detail))
    return problems


def _safe_targets(operation: Mapping[str, Any]) -> list[Target]:
    """`_targets`, none for an operation whose path or value is not readable (the PatchOp
    check then says why)."""
    try:
        return _targets(operation)
    except (SCIMException, ValueError, TypeError, AttributeError):
        return []
