"""Canonical changes -> MileApp's `PATCH /user`, and MileApp's answer -> an outcome.

MileApp's path carries no user id: the id travels in the body under `settings.id_field`
(`_id` by default). MileApp reports failure in the body (`status: false`), even on HTTP 200.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError

from config.settings import VendorSettings
from workers.errors import RetryableDeliveryError, SchemaRefused, VendorRefused
from workers.vendors.base import (
    ChangeSet,
    Omission,
    Translation,
    VendorRequest,
    VendorResult,
    decode_json,
    join_name,
    object_vendor_fields,
    raise_for_http_status,
)
from workers.vendors.mileapp.schema import PatchUserAnswer, PatchUserBody

NAME_PARTS = ("given_name", "family_name", "display_name")
SIMPLE_FIELDS = {"email": "email", "phone": "phoneNumber"}
"""Canonical field -> MileApp body key, for the fields copied over one to one."""
MAX_MESSAGE = 500


class MileAppAdapter:
    """MileApp takes a name, an email and a phone number; it can clear none of them."""

    kind: ClassVar[str] = "mileapp"

    def __init__(self, name: str, settings: VendorSettings) -> None:
        problems = []
        if settings.kind != self.kind:
            problems.append(f"vendors.{name}.kind: {settings.kind!r} is not {self.kind!r}")
        if settings.roles:
            problems.append(f"vendors.{name}.roles: MileApp has no role field; remove this map")
        if settings.id_field in PatchUserBody.model_fields:
            problems.append(
                f"vendors.{name}.id_field: {settings.id_field!r} is one of MileApp's own body "
                "fields, so it cannot carry the user id"
            )
        if problems:
            raise ValueError("; ".join(problems))
        self.name = name
        self.settings = settings

    def translate(self, change: ChangeSet) -> Translation:
        """The PATCH for the fields MileApp has a home for; None when only the id would go."""
        body: dict[str, Any] = {}
        origin: dict[str, tuple[str, ...]] = {}
        omitted: list[Omission] = []

        touched, name = join_name(change)
        parts = tuple(part for part in NAME_PARTS if part in change.changes)
        if touched and name is None:
            omitted.extend(Omission(part, "not_clearable") for part in parts)
        elif touched:
            body["name"], origin["name"] = name, parts
        for field, key in SIMPLE_FIELDS.items():
            if field not in change.changes:
                continue
            value = change.changes[field]
            if value is None:
                omitted.append(Omission(field, "not_clearable"))
                continue
            body[key] = value.replace(" ", "") if field == "phone" else value
            origin[key] = (field,)
        homed = {*NAME_PARTS, *SIMPLE_FIELDS}
        omitted.extend(Omission(field, "no_home") for field in change.changes if field not in homed)

        for key, value in self._vendor_fields(change.vendor_fields).items():
            omitted.extend(
                Omission(field, "vendor_fields_override") for field in origin.pop(key, ())
            )
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
            url=f"{self.settings.base}/user",
            headers={
                "Authorization": f"Bearer {self.settings.auth.token.get_secret_value()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body={self.settings.id_field: change.vendor_user_id, **body},
        )
        return Translation(request=request, omitted=ordered)

    def read_response(self, status: int, headers: Mapping[str, str], body: bytes) -> VendorResult:
        """Success only for a 2xx whose body says `status: true`."""
        payload = decode_json(body)
        message = _text(payload.get("message")) if isinstance(payload, dict) else None
        raise_for_http_status(status, headers, message)
        try:
            answer = PatchUserAnswer.model_validate(payload)
        except ValidationError as exc:
            raise RetryableDeliveryError(
                "invalid_response",
                http_status=status,
                vendor_message=f"HTTP {status} without MileApp's documented body "
                "(a JSON object with a boolean `status`)",
            ) from exc
        if not answer.status:
            raise VendorRefused("vendor_refused", http_status=status, vendor_message=message)
        return VendorResult(message=message)

    def _vendor_fields(
        self, given: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The event's MileApp-native fields, checked against `patchUserRequest`."""
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
