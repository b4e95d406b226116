"""The event's schemas (`Event`, `UserRef`, `Changes`) as this gateway takes them.

pydantic describes `core.event.Event` as its types say; the validators and the ingest checks
refuse more. Written in here, per configuration, so a client generated from `/openapi.json`
sends nothing this gateway refuses for its shape: the configured vendor instances (enabled
ones in `targets`) as the only names of `targets`, `user.external_ids` and `vendor_fields`,
each instance's `vendor_fields` as its vendor's schema, the time zones this host knows, the
patterns the validators apply (E.164, BCP 47, dates, RFC 3339 times, text trimmed of white
space), a change required unless the type implies one, and the secrets rule
(`gateway.openapi_secrets`). What no schema can say is in the descriptions: how far ahead
`occurred_at` may be, the body size, and the rules of the source calling (its
`allowed_targets`, its `link_mode`).
"""

from __future__ import annotations

import copy
import zoneinfo
from collections.abc import Mapping
from typing import Any

from config.settings import Settings
from gateway.openapi_secrets import FREE_JSON, FREE_JSON_NAME, free_json, secret_rule
from gateway.openapi_values import LIMITS, bound_values

_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
_DATE = _YEAR + "-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
DATE_PATTERN = f"^{_DATE}$"
"""`core.event.ISO_DATE` with the ranges pydantic then checks (year 0001-9999, no month 13):
`format: date` adds the days of each month."""
RFC3339_PATTERN = (
    f"^{_DATE}[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
    "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""`core.event.RFC3339` with the ranges pydantic checks (no leap second, offsets to 23:59)."""
PHONE_PATTERN = "^ *\\+ *[1-9](?: *[0-9]){1,14} *$"
"""`core.event.E164` once spaces are removed, as `_e164` removes them."""
BCP47_PATTERN = "^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$"
"""`core.event.BCP47`."""
_TRIMMED = "\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
"""The white space pydantic's `strip_whitespace` removes (Unicode White_Space): a JSON
Schema's `\\s` is another set."""


def trimmed_text(most: int) -> dict[str, Any]:
    """`ShortText`: 1 to `most` characters once leading and trailing white space is removed
    (so `maxLength` cannot say it: the padding is free)."""
    body = f"[^{_TRIMMED}](?:[\\s\\S]{{0,{most - 2}}}[^{_TRIMMED}])?"
    return {"type": "string", "pattern": f"^[{_TRIMMED}]*{body}[{_TRIMMED}]*$"}


_SHORT_TEXT = (
    *("given_name", "family_name", "display_name", "job_title", "birth_city", "country"),
    "role",
)
_DATES = ("start_date", "end_date", "birth_date")


def _value_branch(field: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional field's `anyOf` (the field itself if none)."""
    for branch in field.get("anyOf", ()):
        if branch != {"type": "null"}:
            return dict(branch)
    return field


def _set_value(field: dict[str, Any], schema: dict[str, Any]) -> None:
    """Replace the non-null branch of an optional field (keeping title and null)."""
    if "anyOf" in field:
        field["anyOf"] = [schema if b != {"type": "null"} else b for b in field["anyOf"]]
    else:
        for key in ("type", "pattern", "maxLength", "minLength", "format"):
            field.pop(key, None)
        field.update(schema)


def _changes(changes: dict[str, Any]) -> None:
    fields = changes["properties"]
    for name in _SHORT_TEXT:
        _set_value(fields[name], trimmed_text(_value_branch(fields[name])["maxLength"]))
    for name in _DATES:
        _set_value(fields[name], {"type": "string", "format": "date", "pattern": DATE_PATTERN})
    _set_value(fields["phone"], {"type": "string", "maxLength": 32, "pattern": PHONE_PATTERN})
    _set_value(fields["language"], {"type": "string", "maxLength": 35, "pattern": BCP47_PATTERN})
    zones = sorted(zoneinfo.available_timezones())
    _set_value(fields["timezone"], {"type": "string", "enum": zones})
    fields["timezone"]["description"] = "an IANA time zone name this host's tz database has"
    fields["phone"]["description"] = "E.164 (`+` and 2 to 15 digits), spaces allowed"
    fields["language"]["description"] = "a BCP 47 language tag such as fr or pt-BR"


def _names(names: list[str], value: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An object whose keys may be only `names`, each with the same `value` schema (or the
    one of `value[name]` when `value` maps names)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "maxProperties": 50,
        "properties": {name: dict(value[name]) if value else {} for name in names},
    }


def _event(event: dict[str, Any], settings: Settings, vendor_fields: Mapping[str, Any]) -> None:
    event["description"] = (
        f"{event['description']} At most `gateway.max_body_bytes` "
        f"({settings.gateway.max_body_bytes} bytes) of JSON, else 413. {LIMITS} "
        "What a source may do depends on its configuration, not described here: its "
        "`allowed_targets` (403 `target_not_allowed` for another target or external id; "
        "without `targets`, 422 `no_targets` if none of them is enabled), its `link_mode` "
        "(`none`: `user.external_ids` is a 422 `links_not_allowed`; `create`: an id that "
        "differs from the stored link is a 409 `link_conflict`), its `rate_limit` (429)."
    )
    fields = event["properties"]
    skew = settings.gateway.max_future_skew_s
    fields["occurred_at"] = {
        "title": "Occurred At",
        "type": "string",
        "format": "date-time",
        "pattern": RFC3339_PATTERN,
        "description": f"RFC 3339 with a UTC offset; at most `gateway.max_future_skew_s` "
        f"({skew} s) ahead of the gateway's clock, else 422 (a JSON schema cannot say so). "
        "Orders the user's changes when `user.version` is absent.",
    }
    configured = list(settings.vendors)
    schemas = {name: copy.deepcopy(vendor_fields.get(name, FREE_JSON)) for name in configured}
    fields["vendor_fields"] = {
        "title": "Vendor Fields",
        "description": "per configured vendor instance, fields in that vendor's own terms, "
        "checked against its schema (below) at ingest",
        **_names(configured, schemas),
    }
    enabled = list(settings.enabled_vendors)
    targets = {"type": "string", "enum": enabled} if enabled else False
    fields["targets"]["anyOf"][0]["items"] = targets
    fields["targets"]["description"] = (
        "the enabled vendor instances to deliver to (default: every one the source may use); "
        "one the source's `allowed_targets` leaves out is a 403 `target_not_allowed`"
    )
    fields["source"]["description"] = "if given, the calling source's name (else 403)"
    implied = ["user.deactivated", "user.activated"]
    event["allOf"] = [
        {
            "if": {"required": ["type"], "properties": {"type": {"enum": implied}}},
            "else": {"required": ["changes"], "properties": {"changes": {"minProperties": 1}}},
        },
        *(
            {
                "if": {"required": ["type"], "properties": {"type": {"const": kind}}},
                "then": {"properties": {"changes": {"properties": {"active": {"const": wanted}}}}},
            }
            for kind, wanted in (("user.deactivated", False), ("user.activated", True))
        ),
    ]


def _user(user: dict[str, Any], settings: Settings) -> None:
    ids = user["properties"]["external_ids"]
    value = ids["patternProperties"].popitem()[1]
    user["properties"]["external_ids"] = {
        "title": "External Ids",
        "description": "the user's id at configured vendor instances (sets identity links); "
        "refused for a source with `link_mode: none` (422), for an instance outside its "
        "`allowed_targets` (403), and, under `link_mode: create`, when another id is linked "
        "(409)",
        **_names(list(settings.vendors), {name: value for name in settings.vendors}),
    }


def narrow_event(
    schemas: dict[str, Any], settings: Settings, vendor_fields: Mapping[str, Any]
) -> None:
    """Write into the event's component schemas what this gateway accepts (in place).
    `vendor_fields`: the JSON schema of each configured instance's `vendor_fields` its kind
    gives (an instance without one takes any JSON value there)."""
    _changes(schemas["Changes"])
    _event(schemas["Event"], settings, vendor_fields)
    _user(schemas["UserRef"], settings)
    for name in ("Changes", "Event", "UserRef"):
        secret_rule(schemas[name], bool(settings.secrets.keys))
        bound_values(schemas[name])
    schemas[FREE_JSON_NAME] = free_json(keys_configured=bool(settings.secrets.keys))
    bound_values(schemas[FREE_JSON_NAME])
