"""From a SCIM User resource to the canonical event it becomes (`core.scim_attributes`).

A write of a resource (create, replace, patch, delete) is compared with the resource before it,
field by field, in canonical terms: the fields whose canonical value changed are the event's
`changes` (a value that disappeared is `null`, i.e. cleared). The event is then validated and
stored exactly as a `POST /v1/events` from the same source would be (`gateway.scim.writes`).

Values are read as identity providers send them and put in canonical form: a phone number's
spaces, dashes, dots and brackets are dropped (`+1 (555) 010-0199` -> `+15550100199`), the
first tag of a `preferredLanguage` in Accept-Language form is taken (`da, en-gb;q=0.8` ->
`da`), a `locale`'s underscore becomes a dash (`en_US` -> `en-US`), an empty string is no
value.

A value the canonical schema refuses (a phone that is no E.164 number once its punctuation is
dropped, a `timezone` that is no IANA name, a language that is no BCP 47 tag, an address that is
no email) is still a valid SCIM value: the resource keeps it as sent, and the field is left out
of the event (`unmappable`, logged `scim_value_unmapped` with the attribute and the reason,
never the value), so the vendors keep what they had. Refusing the whole user for one attribute
an identity provider holds in another format would stop its provisioning altogether.

`active` left out reads as true: a provisioned user is active until it says `active: false`
(RFC 7643 gives `active` no default; Entra ID and Okta always send it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from core.event import NOT_CLEARABLE, Changes
from core.scim_attributes import (
    BY_CANONICAL,
    LINKS_ATTRIBUTE,
    LINKS_SCHEMA,
    SCIM_ATTRIBUTES,
    ScimAttribute,
)
from core.secrets import SecretBox, SecretUndecryptable, is_encrypted

_PHONE_PUNCTUATION = re.compile(r"[\s\-.()]")
_TRUE_STRINGS = {"true": True, "false": False}


def _entry(entries: Any, row: ScimAttribute) -> dict[str, Any] | None:
    """The entry of a multi-valued attribute that carries the canonical value."""
    if not isinstance(entries, list):
        return None
    dicts = [entry for entry in entries if isinstance(entry, dict)]
    primary = [entry for entry in dicts if entry.get("primary") in (True, "True", "true")]
    if primary:
        return primary[0]
    if row.select == "primary_or_work":
        work = [entry for entry in dicts if str(entry.get("type", "")).lower() == "work"]
        if work:
            return work[0]
    return dicts[0] if len(dicts) == 1 else None


def _raw(resource: Mapping[str, Any], row: ScimAttribute) -> Any:
    for attribute in (row.attribute, *row.fallbacks):
        value = resource.get(attribute)
        if row.multi_valued:
            value = _entry(value, row)
        if row.sub_attribute is not None:
            value = value.get(row.sub_attribute) if isinstance(value, dict) else None
        if value not in (None, ""):
            return value
    return None


def _language(value: str) -> str:
    first = value.split(",", 1)[0].split(";", 1)[0].strip()
    return first.replace("_", "-")


def _canonical(row: ScimAttribute, value: Any) -> Any:
    """A SCIM value in the canonical field's form (validation is the event model's)."""
    if row.canonical == "active":
        if isinstance(value, str):
            return _TRUE_STRINGS.get(value.lower(), value)
        return True if value is None else value
    if value is None:
        return None
    if row.canonical == "phone" and isinstance(value, str):
        return _PHONE_PUNCTUATION.sub("", value)
    if row.canonical == "language" and isinstance(value, str):
        return _language(value)
    if isinstance(value, str):
        return value.strip() or None
    return value


def canonical_values(resource: Mapping[str, Any]) -> dict[str, Any]:
    """Every canonical field the resource gives a value, in canonical form (`active` always:
    true when left out). The password is as stored: clear if just written, else sealed."""
    values = {}
    for row in SCIM_ATTRIBUTES:
        value = _canonical(row, _raw(resource, row))
        if value is not None:
            values[row.canonical] = value
    return values


def links_of(resource: Mapping[str, Any]) -> dict[str, str]:
    """The vendor ids the resource's links extension carries (vendor instance -> id)."""
    extension = resource.get(LINKS_SCHEMA)
    links = extension.get(LINKS_ATTRIBUTE) if isinstance(extension, dict) else None
    if not isinstance(links, dict):
        return {}
    return {vendor: value for vendor, value in links.items() if isinstance(value, str) and value}


def password_changed(new: Any, old: Any, box: SecretBox) -> bool:
    """Whether a resource's password changed: a clear one (just written) that differs from the
    stored one, which is sealed. A sealed one is the stored one, unchanged."""
    if new is None or is_encrypted(new):
        return False
    if not is_encrypted(old):
        return bool(new != old)
    try:
        return bool(box.decrypt(old, "password") != new)
    except SecretUndecryptable:
        return True  # its key is gone: send the new one rather than guess


def changed_fields(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], box: SecretBox
) -> dict[str, Any]:
    """The canonical changes from resource `old` (None: none before) to `new`: each field
    whose value differs, `None` for one that is gone (never for a field that cannot be
    cleared: active, password)."""
    before = canonical_values(old) if old is not None else {}
    after = canonical_values(new)
    changes: dict[str, Any] = {}
    for row in SCIM_ATTRIBUTES:
        field = row.canonical
        if field == "password":
            if password_changed(after.get(field), before.get(field), box):
                changes[field] = after[field]
            continue
        value = after.get(field)
        if value == before.get(field):
            continue
        if value is None and field in NOT_CLEARABLE:
            continue
        changes[field] = value
    return changes


def unmappable(changes: Mapping[str, Any]) -> dict[str, str]:
    """The changed fields whose value the canonical schema refuses: field -> why."""
    refused: dict[str, str] = {}
    for field, value in changes.items():
        try:
            Changes.model_validate({field: value})
        except ValidationError as exc:
            refused[field] = "; ".join(
                error["msg"] for error in exc.errors(include_url=False, include_input=False)
            )
    return refused


def event_type(changes: Mapping[str, Any], existed: bool) -> str:
    """`user.deactivated` when the change deactivates (the contract (docs/contract.md §7, SCIM): urgent, §7), `user.activated`
    when it re-activates an existing user, else `user.updated`."""
    if changes.get("active") is False:
        return "user.deactivated"
    if changes.get("active") is True and existed:
        return "user.activated"
    return "user.updated"


def scim_attribute_of(canonical_path: str) -> str:
    """The SCIM attribute a canonical field path of a 422 (`changes.email`) stands for, so an
    identity provider's administrator sees the attribute they mapped."""
    field = canonical_path.removeprefix("changes.").split(".", 1)[0]
    row = BY_CANONICAL.get(field)
    if row is None:
        return canonical_path
    if row.select == "primary_or_work":
        return f'{row.attribute}[primary or type eq "work"].{row.sub_attribute}'
    return row.patch_path
