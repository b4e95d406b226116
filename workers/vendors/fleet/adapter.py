"""Canonical changes -> Fleet's `PATCH /users/{user_id}`, and Fleet's answer -> an outcome.

Fleet takes a partial body where `null` clears a field, except `email` and `role` (not
nullable) and `password` (null leaves it unchanged): clearing those is left out, not sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson
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
from workers.vendors.fleet.schema import ROLES, USER_ID, GetUserResponse, PatchUserBody

FIELDS = {
    "email": "email",
    "given_name": "first_name",
    "family_name": "last_name",
    "phone": "phone",
    "phone_country": "phone_country",
    "language": "language",
    "job_title": "position",
    "start_date": "arrival_date",
    "end_date": "departure_date",
    "birth_date": "date_of_birth",
    "birth_city": "city_of_birth",
    "birth_country": "country_of_birth",
    "role": "role",
    "password": "password",
}
"""Canonical field -> Fleet body key (SPEC §1). Anything else has no home in Fleet."""
NOT_CLEARABLE = frozenset({"email", "role", "password"})
MAX_MESSAGE = 500


class FleetAdapter:
    """Fleet: one partial PATCH per user, ids are positive integers, roles EMPLOYEE/ADMIN."""

    kind: ClassVar[str] = "fleet"

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
        """The PATCH for the fields Fleet has a home for; None when there is none."""
        if not USER_ID.fullmatch(change.vendor_user_id):
            raise SchemaRefused(
                "invalid_vendor_id",
                vendor_message=f"Fleet user ids are positive integers (^[1-9]\\d*$); "
                f"{change.vendor_user_id!r} is not one",
            )
        body: dict[str, Any] = {}
        origin: dict[str, str] = {}
        omitted: list[Omission] = []
        for field, value in change.changes.items():
            key = FIELDS.get(field)
            if key is None:
                omitted.append(Omission(field, "no_home"))
            elif value is None and field in NOT_CLEARABLE:
                omitted.append(Omission(field, "not_clearable"))
            else:
                body[key], origin[key] = self._value(field, value), field

        for key, value in self._vendor_fields(change.vendor_fields).items():
            if key in origin:
                omitted.append(Omission(origin.pop(key), "vendor_fields_override"))
            body[key] = value

        ordered = tuple(sorted(omitted, key=lambda o: (o.field, o.reason)))
        if not body:
            return Translation(request=None, omitted=ordered)
        try:
            PatchUserBody.model_validate(body)
        except ValidationError as exc:
            raise SchemaRefused("invalid_request", vendor_message=_describe(exc, "")) from exc
        request = VendorRequest(
            method="PATCH",
            url=f"{self.settings.base}/users/{change.vendor_user_id}",
            headers={
                "Authorization": f"Bearer {self.settings.auth.token.get_secret_value()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body=body,
        )
        return Translation(request=request, omitted=ordered)

    def read_response(self, status: int, headers: Mapping[str, str], body: bytes) -> VendorResult:
        """Success only for a 2xx carrying the updated user under `data`."""
        payload = decode_json(body)
        raise_for_http_status(status, headers, _message(payload))
        try:
            GetUserResponse.model_validate(payload)
        except ValidationError as exc:
            raise RetryableDeliveryError(
                "invalid_response",
                http_status=status,
                vendor_message=f"HTTP {status} without Fleet's documented body "
                "(a JSON object with the updated user under `data`)",
            ) from exc
        return VendorResult()

    def _value(self, field: str, value: Any) -> Any:
        """A canonical value in Fleet's terms; None (clear) stays None."""
        if value is None:
            return None
        if field == "role":
            if value not in self.settings.roles:
                mapped = ", ".join(sorted(self.settings.roles)) or "none"
                raise SchemaRefused(
                    "unmapped_role",
                    vendor_message=f"role {value!r} has no mapping in vendors.{self.name}.roles "
                    f"(mapped: {mapped})",
                )
            return self.settings.roles[value]
        if field == "phone":
            return str(value).replace(" ", "")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    def _vendor_fields(
        self, given: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The event's Fleet-native fields, checked against `PatchUserBody`."""
        if not given:
            return {}
        fields = object_vendor_fields(given, f"vendor_fields.{self.name}")
        try:
            PatchUserBody.model_validate(dict(fields))
        except ValidationError as exc:
            prefix = f"vendor_fields.{self.name}."
            raise SchemaRefused(
                "invalid_vendor_fields", vendor_message=_describe(exc, prefix)
            ) from exc
        return dict(fields)


def _message(payload: Any) -> str | None:
    """Fleet's error text: `error.message`, `error`, `message` or `detail`, when present."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict) and error.get("message"):
        return _text(error["message"])
    if isinstance(error, str) and error:
        return _text(error)
    return _text(payload.get("message")) or _text(payload.get("detail"))


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
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text[:MAX_MESSAGE]
