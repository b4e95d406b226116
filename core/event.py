"""The canonical user-change event (docs/contract.md §1), shared by the gateway and the workers.

`Changes` distinguishes a field that is absent (no change) from one set to `null` (clear it)
through pydantic's `model_fields_set`; `Changes.present()` is the only way the rest of the code
reads them, so that distinction cannot be lost on the way.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.email_address import Email

# Identifier patterns are anchored `^...$` for JSON Schema (`/openapi.json`) and pydantic, whose
# regex engines end `$` at the end of the text. Python's `re` lets `$` match before a trailing
# newline, so Python code checks them with `re.fullmatch`, never `re.match` (tests/security/
# test_identifiers.py feeds every identifier a trailing newline).
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,200}$"
USER_ID_PATTERN = r"^[A-Za-z0-9._:@+-]{1,200}$"
VENDOR_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,200}$"
"""A user's id at a vendor (`user.external_ids` values, `PUT .../links/{vendor}`): the vendor's
own format, so any text of 1-200 characters but no control character or line break."""
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Alpha2 = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
VendorInstance = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


def _e164(value: str) -> str:
    if not E164.fullmatch(value.replace(" ", "")):
        raise ValueError("must be an E.164 phone number such as +33123456789 (spaces allowed)")
    return value


def _bcp47(value: str) -> str:
    if not BCP47.fullmatch(value):
        raise ValueError("must be a BCP 47 language tag such as fr or pt-BR")
    return value


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _iana(value: str) -> str:
    if value not in _timezones():
        raise ValueError("must be an IANA time zone name such as Europe/Paris")
    return value


# JSON gives dates and times as text and numbers as numbers: pydantic's lax mode would also take
# a number for a date (0 is 1970-01-01), digits for a time stamp and a string for a version.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise ValueError("must be RFC 3339 text with a UTC offset, e.g. 2026-11-22T10:15:00Z")
    return value


def _date_text(value: Any) -> Any:
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        raise ValueError("must be a date as text, YYYY-MM-DD")
    return value


def _json_number(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON number")  # noqa: TRY004 (pydantic reports ValueError)
    return value


Timestamp = Annotated[dt.datetime, BeforeValidator(_rfc3339_text)]
Date = Annotated[dt.date, BeforeValidator(_date_text)]
Phone = Annotated[str, StringConstraints(max_length=32), AfterValidator(_e164)]
Language = Annotated[str, StringConstraints(max_length=35), AfterValidator(_bcp47)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_iana)]
TagKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


NAME_PARTS = ("given_name", "family_name", "display_name")
"""The changes that make up a name: a vendor with one full-name field needs all of them."""

NOT_CLEARABLE = ("active", "password", "tags")
"""Changes that cannot be `null`: there is nothing to clear (a `null` tag value removes it)."""


def _not_clearable_schema(schema: dict[str, Any]) -> None:
    """The JSON schema (`/openapi.json`) says what `Changes._not_clearable` enforces."""
    for name in NOT_CLEARABLE:
        field = schema["properties"][name]
        field.pop("default", None)
        field["anyOf"] = [branch for branch in field["anyOf"] if branch != {"type": "null"}]
        if len(field["anyOf"]) == 1:
            field.update(field.pop("anyOf")[0])


class Changes(BaseModel):
    """Canonical field -> new value; `null` clears. Only fields that were sent are changes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_not_clearable_schema)

    email: Email | None = None
    given_name: ShortText | None = None
    family_name: ShortText | None = None
    display_name: ShortText | None = None
    phone: Phone | None = None
    phone_country: Alpha2 | None = None
    language: Language | None = None
    job_title: ShortText | None = None
    start_date: Date | None = None
    end_date: Date | None = None
    birth_date: Date | None = None
    birth_city: ShortText | None = None
    birth_country: Alpha2 | None = None
    country: ShortText | None = None
    timezone: TimeZone | None = None
    role: ShortText | None = None
    active: StrictBool | None = None
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    tags: dict[TagKey, Annotated[str, StringConstraints(max_length=256)] | None] | None = Field(
        default=None, max_length=50
    )

    @model_validator(mode="after")
    def _not_clearable(self) -> Changes:
        for name in NOT_CLEARABLE:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def present(self) -> dict[str, Any]:
        """The fields that were sent, with their values (None meaning clear)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class UserRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
    version: Annotated[int, Field(ge=0, le=2**53), BeforeValidator(_json_number)] | None = None
    external_ids: dict[
        VendorInstance, Annotated[str, StringConstraints(pattern=VENDOR_ID_PATTERN)]
    ] = Field(default_factory=dict, max_length=50)


EventType = Literal["user.updated", "user.deactivated", "user.activated"]
Priority = Literal["normal", "urgent"]
URGENT_PRIORITY = "urgent"
URGENT_TYPES = ("user.deactivated",)
"""Event types delivered as urgent whatever their `priority`: a deactivation must not wait
behind a backlog (the ingest script reads these through `core.keys`)."""


class Event(BaseModel):
    """One canonical user-change event, as posted to `POST /v1/events`."""

    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str, StringConstraints(pattern=EVENT_ID_PATTERN)]
    type: EventType = "user.updated"
    occurred_at: Timestamp
    source: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")] | None = None
    user: UserRef
    # validate_default: a `user.updated` without `changes` is refused like an empty one, and a
    # deactivation without them gets its `active` change from the type.
    changes: Changes = Field(default_factory=Changes, validate_default=True)
    # An object of vendor-native fields, or for Plaspy a JSON Patch array: the vendor's adapter
    # validates it against that vendor's schema (a refusal is a permanent failure, never sent).
    vendor_fields: dict[VendorInstance, dict[str, Any] | list[dict[str, Any]]] = Field(
        default_factory=dict, max_length=50
    )
    targets: list[VendorInstance] | None = Field(default=None, min_length=1, max_length=50)
    priority: Priority = Field(
        default="normal",
        description="`urgent`: delivered ahead of every normal backlog at each vendor instance, "
        "within its rate limit, still coalesced and ordered with the user's other changes. "
        "`user.deactivated` events are urgent whatever this says.",
    )

    @field_validator("occurred_at")
    @classmethod
    def _with_offset(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("must be RFC 3339 with a UTC offset, e.g. 2026-11-22T10:15:00Z")
        return value

    @field_validator("changes")
    @classmethod
    def _changes_fit_type(cls, changes: Changes, info: ValidationInfo) -> Changes:
        # user.deactivated / user.activated are sugar for a change of `active`.
        event_type = info.data.get("type", "user.updated")
        if event_type in ("user.deactivated", "user.activated"):
            wanted = event_type == "user.activated"
            if "active" in changes.model_fields_set and changes.active is not wanted:
                raise ValueError(f"active contradicts type {event_type}")
            changes.active = wanted
        if not changes.model_fields_set:
            raise ValueError("changes must not be empty")
        return changes

    @property
    def urgent(self) -> bool:
        """Delivered ahead of normal backlogs (`URGENT_TYPES`, or `priority: urgent`)."""
        return self.priority == URGENT_PRIORITY or self.type in URGENT_TYPES

    @property
    def order_key(self) -> int:
        """What orders this user's changes: `user.version`, else `occurred_at` in ms."""
        if self.user.version is not None:
            return self.user.version
        return int(self.occurred_at.timestamp() * 1000)
