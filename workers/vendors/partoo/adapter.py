"""Canonical changes -> Partoo's `POST /user/{user_id}` (patch semantics), and its answer.

Partoo authenticates with an `x-APIKey` header, documents no nullable field (a clear is left
out), checks passwords against a policy (checked here first, so a weak one is never sent), and
answers 4xx with an `errors` object that is flattened into one line for operators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import ValidationError

from config.settings import VendorSettings
from workers.errors import RetryableDeliveryError, SchemaRefused
from workers.vendors.base import (
    ChangeSet,
    Omission,
    Translation,
    VendorRequest,
    VendorResult,
    decode_json,
    object_vendor_fields,
    raise_for_http_status,
)
from workers.vendors.partoo.schema import (
    LANGS,
    ROLES,
    UpdateUserAnswer,
    UpdateUserBody,
    describe_password_problems,
    password_problems,
)

FIELDS = {
    "email": "email",
    "given_name": "first_name",
    "family_name": "last_name",
    "role": "role",
    "active": "disabled",
    "password": "password",
    "language": "lang",
}
"""Canonical field -> Partoo body key (SPEC §1). Anything else has no home in Partoo."""
MAX_MESSAGE = 500


class PartooAdapter:
    """Partoo: one patch-like POST per user; roles are Partoo's five built-in ones."""

    kind: ClassVar[str] = "partoo"

    def __init__(self, name: str, settings: VendorSettings) -> None:
        problems = []
        if settings.kind != self.kind:
            problems.append(f"vendors.{name}.kind: {settings.kind!r} is not {self.kind!r}")
        problems.extend(
            f"vendors.{name}.roles.{role}: {value!r} is not one of {', '.join(ROLES)}"
            for role, value in settings.roles.items()
            if value not in ROLES
        )
        if problems:
            raise ValueError("; ".join(problems))
        self.name = name
        self.settings = settings

    def translate(self, change: ChangeSet) -> Translation:
        """The POST for the fields Partoo has a home for; None when there is none."""
        if change.vendor_user_id in {".", ".."}:
            raise SchemaRefused(
                "invalid_vendor_id",
                vendor_message=f"{change.vendor_user_id!r} cannot be a Partoo user id",
            )
        body: dict[str, Any] = {}
        origin: dict[str, str] = {}
        omitted: list[Omission] = []
        for field, value in change.changes.items():
            key = FIELDS.get(field)
            if key is None:
                omitted.append(Omission(field, "no_home"))
            elif value is None:
                omitted.append(Omission(field, "not_clearable"))
            elif (sent := self._value(field, value)) is None:
                omitted.append(Omission(field, "unsupported_language"))
            else:
                body[key], origin[key] = sent, field

        for key, value in self._vendor_fields(change.vendor_fields).items():
            if key in origin:
                omitted.append(Omission(origin.pop(key), "vendor_fields_override"))
            body[key] = value

        ordered = tuple(sorted(omitted, key=lambda o: (o.field, o.reason)))
        if not body:
            return Translation(request=None, omitted=ordered)
        try:
            UpdateUserBody.model_validate(body)
        except ValidationError as exc:
            raise SchemaRefused("invalid_request", vendor_message=_describe(exc, "")) from exc
        request = VendorRequest(
            method="POST",
            url=f"{self.settings.base}/user/{quote(change.vendor_user_id, safe='')}",
            headers={
                "x-APIKey": self.settings.auth.token.get_secret_value(),
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body=body,
        )
        return Translation(request=request, omitted=ordered)

    def read_response(self, status: int, headers: Mapping[str, str], body: bytes) -> VendorResult:
        """Success only for a 2xx JSON object (`{"id", "status": "success"}`)."""
        payload = decode_json(body)
        raise_for_http_status(status, headers, _message(payload))
        try:
            UpdateUserAnswer.model_validate(payload)
        except ValidationError as exc:
            raise RetryableDeliveryError(
                "invalid_response",
                http_status=status,
                vendor_message=f"HTTP {status} without Partoo's documented body "
                '(a JSON object such as {"id": ..., "status": "success"})',
            ) from exc
        return VendorResult()

    def _value(self, field: str, value: Any) -> Any:
        """A canonical value in Partoo's terms (role mapped, active inverted, policy checked);
        None for a language Partoo does not offer."""
        if field == "language":
            return partoo_lang(value)
        if field == "role":
            if value not in self.settings.roles:
                mapped = ", ".join(sorted(self.settings.roles)) or "none"
                raise SchemaRefused(
                    "unmapped_role",
                    vendor_message=f"role {value!r} has no mapping in vendors.{self.name}.roles "
                    f"(mapped: {mapped})",
                )
            return self.settings.roles[value]
        if field == "active":
            return not value
        if field == "password" and (problems := password_problems(value)):
            raise SchemaRefused(
                "password_policy", vendor_message=describe_password_problems(problems)
            )
        return value

    def _vendor_fields(
        self, given: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The event's Partoo-native fields, checked against the update-user body."""
        if not given:
            return {}
        fields = object_vendor_fields(given, f"vendor_fields.{self.name}")
        where = f"vendor_fields.{self.name}"
        password = fields.get("password")
        if isinstance(password, str) and (problems := password_problems(password)):
            raise SchemaRefused(
                "password_policy",
                vendor_message=f"{where}.password: {describe_password_problems(problems)}",
            )
        try:
            UpdateUserBody.model_validate(dict(fields))
        except ValidationError as exc:
            raise SchemaRefused(
                "invalid_vendor_fields", vendor_message=_describe(exc, f"{where}.")
            ) from exc
        return dict(fields)


def partoo_lang(tag: str) -> str | None:
    """A BCP 47 tag as Partoo's `lang`: the tag itself, else its primary subtag, else None."""
    lowered = tag.lower()
    if lowered in LANGS:
        return lowered
    primary = lowered.split("-", 1)[0]
    return primary if primary in LANGS else None


def _message(payload: Any) -> str | None:
    """Partoo's `errors` object as one line, e.g. `password: too short`."""
    if not isinstance(payload, dict):
        return None
    if payload.get("errors") is None:
        return _text(payload.get("message"))
    return _text("; ".join(_flatten(payload["errors"], ())))


def _flatten(value: Any, path: tuple[str, ...]) -> list[str]:
    """Leaves of a nested error object as `dotted.path: message` lines."""
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            # A top-level `json` only says "in the request body": the keys inside say where.
            lines += _flatten(item, path if not path and key == "json" else (*path, str(key)))
        return lines
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        return [line for i, item in enumerate(value) for line in _flatten(item, (*path, str(i)))]
    text = ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)
    return [f"{'.'.join(path)}: {text}" if path else text]


def _describe(exc: ValidationError, prefix: str) -> str:
    """Each problem as `path: message`; input values are left out (they may be secrets)."""
    return "; ".join(
        f"{prefix}{'.'.join(str(part) for part in error['loc'])}: "
        + error["msg"].removeprefix("Value error, ")
        for error in exc.errors(include_url=False, include_input=False)
    )


def _text(value: Any) -> str | None:
    """The vendor's message as one bounded line of text."""
    if value is None or value == "":
        return None
    return str(value)[:MAX_MESSAGE]
