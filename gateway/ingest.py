"""Turning a validated event into what the store writes: targets, links, name parts.

Target rules: `targets` given -> each must be a configured, enabled vendor instance the source
may use; left out -> every enabled instance the source may use. External ids and vendor fields
must name configured instances, so a typo is a 422 rather than a silently unused value.

Link authority: `user.external_ids` set identity links, which every later delivery to that
vendor instance follows, whichever source posts it. So a source may carry an external id only
for an instance in its `allowed_targets` (else 403 `target_not_allowed`), none at all under
`link_mode: none` (422 `links_not_allowed`); under `link_mode: create` the ingest script
refuses, atomically, an id that differs from the stored link (409 `link_conflict`).
The stored event has its secrets encrypted (`sealed_event`); one that cannot be is a 422.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import structlog
from pydantic import ValidationError

from config.ingress import SourceSettings
from config.settings import Settings
from core.event import NAME_PARTS, Event
from core.links import Ingested, LinkConflict
from core.ports import VendorFieldsCheck
from core.secrets import PREFIX, CiphertextGiven, SecretBox, SecretsNotConfigured
from core.store import IngestRecord
from gateway.body import not_an_object, parse_json_object
from gateway.context import PerSettings
from gateway.errors import ApiError, field_problems, schema_error

log = structlog.get_logger("usersync.gateway")


def validated_event(
    body: Any, settings: Settings, source: SourceSettings, check_fields: VendorFieldsCheck
) -> tuple[Event, list[str]]:
    """A parsed body as an event of `source`, and its targets: 422 if it is not an object or
    breaks the schema (every field path), has `occurred_at` too far ahead of the clock, or
    `vendor_fields` the vendor's schema refuses (`check_fields`), 403 if it names another
    source or a target the source may not use. `POST /v1/events`, preview and each item of a
    batch all use it."""
    if not isinstance(body, dict):
        raise not_an_object()
    # `changes` left out is `{}`, given: the model's default would be validated too, but left
    # out of the stored event (an `exclude_unset` dump), and a user.deactivated event would be
    # stored without the change of `active` its type implies.
    body.setdefault("changes", {})
    try:
        event = Event.model_validate(body)
    except ValidationError as exc:
        raise schema_error(field_problems(exc)) from exc
    return checked_event(event, settings, source, check_fields)


def validated_json_event(
    raw: bytes, settings: Settings, source: SourceSettings, check_fields: VendorFieldsCheck
) -> tuple[Event, list[str]]:
    """`validated_event` of a raw v1 body, with `parse_json_object`'s refusals (400, the
    shape's 422) before it. The common body is validated straight from its bytes by
    pydantic-core's own parser (`_from_json`: half the CPU of parsing, walking the shape and
    validating the dict); any other, or any refused one, takes that longer way, so every
    refusal is the one it always was."""
    event = _from_json(raw)
    if event is None:
        return validated_event(parse_json_object(raw), settings, source, check_fields)
    return checked_event(event, settings, source, check_fields)


_LONG_WAY = b"vendor_fields"
"""An event with `vendor_fields` takes the long way: the only member the model leaves free
(`Any`), so the only place a shape `parse_json_object` refuses (depth, long arrays, numbers
past 2^53, `NaN`, which pydantic's parser reads and orjson refuses) could pass the model. A
body naming it goes there without a first validation (one spelling it with escapes is sent
there once validated)."""


def _from_json(raw: bytes) -> Event | None:
    """The event of a body the model accepts straight from its bytes, when that is the event
    `validated_event(parse_json_object(raw))` would give; None for any other body. Such a
    body is valid JSON to both parsers (pydantic-core's refuses at least what orjson does,
    tests/test_gateway_fast_path.py), an object, and within every shape limit: outside
    `vendor_fields` the model bounds depth, arrays (50 items) and the one number
    (`user.version` <= 2^53; `5.0` is 5 to both). `changes` left out takes the long way,
    where it is given as `{}` (the default would be left out of the stored event's
    `exclude_unset` dump)."""
    if _LONG_WAY in raw:
        return None
    try:
        event = Event.model_validate_json(raw)
    except ValidationError:
        return None
    if event.vendor_fields or "changes" not in event.model_fields_set:
        return None
    return event


def checked_event(
    event: Event, settings: Settings, source: SourceSettings, check_fields: VendorFieldsCheck
) -> tuple[Event, list[str]]:
    """What `validated_event` checks of an event the model accepted, and its targets."""
    problems = _too_far_ahead(event, settings) + _vendor_fields_refused(
        event, settings, check_fields
    )
    if problems:
        raise schema_error(problems)
    if event.source is not None and event.source != source.name:
        raise ApiError(
            403,
            "source_mismatch",
            f"the event names source {event.source} but the credentials belong to {source.name}",
        )
    return event, resolve_targets(event, settings, source)


def _too_far_ahead(event: Event, settings: Settings) -> list[dict[str, str]]:
    """`occurred_at` orders changes without a `user.version`: one far in the future would
    make every later change of the same fields stale, for good. So it may be at most
    `gateway.max_future_skew_s` ahead of the gateway's clock (events from the past are fine:
    an old change is merely stale)."""
    skew = settings.gateway.max_future_skew_s
    if event.occurred_at.timestamp() <= time.time() + skew:
        return []
    message = f"must not be more than {skew} s ahead of the gateway's clock"
    return [{"path": "occurred_at", "message": message}]


def _vendor_fields_refused(
    event: Event, settings: Settings, check_fields: VendorFieldsCheck
) -> list[dict[str, str]]:
    """What the vendors' schemas refuse in `vendor_fields`, checked at ingest so that fields
    a vendor would refuse (and the secrets among them) are never stored. An instance that is
    not configured is left to `resolve_targets`, which names it."""
    return [
        problem
        for instance, fields in event.vendor_fields.items()
        if instance in settings.vendors
        for problem in check_fields(instance, fields)
    ]


def _usual_targets(settings: Settings) -> dict[str, tuple[frozenset[str], tuple[str, ...]]]:
    """Per source: the instances it may carry external ids for (configured and allowed; none
    under `link_mode: none`), and its targets when it names none (enabled and allowed)."""
    usual = {}
    for source in settings.sources:
        allowed = source.allowed_targets
        ids = [name for name in settings.vendors if allowed is None or name in allowed]
        targets = [name for name in settings.enabled_vendors if allowed is None or name in allowed]
        usual[source.name] = (frozenset(ids if source.link_mode != "none" else ()), tuple(targets))
    return usual


_usual = PerSettings(_usual_targets)


def resolve_targets(event: Event, settings: Settings, source: SourceSettings) -> list[str]:
    """The event's targets (see the module's rules), or the refusal of what it names."""
    if event.targets is None and not event.vendor_fields:
        # The usual event (no targets, no vendor fields, its external ids allowed): the
        # source's own targets, worked out once (`_usual_targets`); any other is checked below.
        may_link, usual = _usual(settings)[source.name]
        if usual and all(name in may_link for name in event.user.external_ids):
            return list(usual)
    allowed = set(source.allowed_targets) if source.allowed_targets is not None else None
    problems: list[dict[str, str]] = []
    for field, names in (
        ("user.external_ids", list(event.user.external_ids)),
        ("vendor_fields", list(event.vendor_fields)),
        ("targets", list(event.targets or ())),
    ):
        for name in names:
            vendor = settings.vendors.get(name)
            if vendor is None:
                problems.append({"path": f"{field}.{name}", "message": "unknown vendor instance"})
            elif field == "targets" and not vendor.enabled:
                problems.append({"path": f"{field}.{name}", "message": "vendor instance disabled"})
    if problems:
        raise schema_error(problems)
    if event.user.external_ids and source.link_mode == "none":
        raise ApiError(
            422,
            "links_not_allowed",
            f"source {source.name} may not set identity links (link_mode none)",
            [
                {"path": f"user.external_ids.{name}", "message": "external ids not allowed"}
                for name in event.user.external_ids
            ],
        )
    targets = list(dict.fromkeys(event.targets or ()))
    refused = {
        "targets": [name for name in targets if allowed is not None and name not in allowed],
        "external_ids": [
            name for name in event.user.external_ids if allowed is not None and name not in allowed
        ],
    }
    if any(refused.values()):
        may_not = [
            f"{what} {', '.join(names)}"
            for what, names in (
                ("post to", refused["targets"]),
                ("carry external ids for", refused["external_ids"]),
            )
            if names
        ]
        raise ApiError(
            403,
            "target_not_allowed",
            f"source {source.name} may not {' or '.join(may_not)}",
            {field: names for field, names in refused.items() if names},
        )
    if event.targets is not None:
        return targets
    targets = [name for name in settings.enabled_vendors if allowed is None or name in allowed]
    if not targets:
        raise ApiError(422, "no_targets", "no enabled vendor instance this source may post to")
    return targets


def log_link_changes(record: IngestRecord, ingested: Ingested) -> None:
    """One `link_changed` line per link the event moved to another id (ids are not secrets)."""
    for change in ingested.link_changes:
        log.info(
            "link_changed",
            user_id=record.user_id,
            vendor=change.vendor,
            old_id=change.old_id,
            new_id=change.new_id,
            source=record.source,
            event_id=record.event_id,
        )


def link_conflict(conflict: LinkConflict) -> ApiError:
    """409 for an event whose external ids would change links its source may only create
    (logged with the stored ids, which the answer leaves out: they are the admin's to read)."""
    for vendor, (current_id, refused_id) in conflict.ids.items():
        log.info(
            "link_refused",
            user_id=conflict.user_id,
            vendor=vendor,
            current_id=current_id,
            refused_id=refused_id,
            source=conflict.source,
            event_id=conflict.event_id,
            reason="link_mode_create",
        )
    return _conflict_error(conflict.source, list(conflict.ids))


def check_link_conflicts(event: Event, source: SourceSettings, stored: Mapping[str, str]) -> None:
    """The 409 a post would answer, from links read apart from the ingest (for a preview,
    which stores nothing, so the read need not be atomic with anything)."""
    if source.link_mode != "create":
        return
    vendors = [
        vendor
        for vendor, vendor_id in event.user.external_ids.items()
        if stored.get(vendor, vendor_id) != vendor_id
    ]
    if vendors:
        raise _conflict_error(source.name, vendors)


def _conflict_error(source: str, vendors: list[str]) -> ApiError:
    return ApiError(
        409,
        "link_conflict",
        f"source {source} may create identity links, not change them (link_mode create); "
        "nothing was stored",
        [
            {"path": f"user.external_ids.{vendor}", "message": "another id is already linked"}
            for vendor in vendors
        ],
    )


def acceptance_body(event: Event, targets: list[str]) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "status": "accepted",
        "targets": targets,
        "status_url": f"/v1/events/{event.event_id}",
    }


def _secrets_refused(exc: CiphertextGiven | SecretsNotConfigured) -> ApiError:
    if isinstance(exc, CiphertextGiven):
        message = f"must not start with {PREFIX}, the mark of usersync's encrypted values"
        return schema_error([{"path": path, "message": message} for path in exc.paths])
    return ApiError(
        422,
        "secrets_not_configured",
        "this gateway has no secrets.keys to encrypt the event's secrets with; events carrying "
        "one are refused rather than stored in clear",
        {"paths": exc.paths},
    )


def check_secrets(event: Event, box: SecretBox) -> None:
    """422 if the event carries a secret that could not be stored (see `sealed_event`)."""
    try:
        box.check(event.model_dump(mode="json", exclude_unset=True))
    except (CiphertextGiven, SecretsNotConfigured) as exc:
        raise _secrets_refused(exc) from None


_EVENT_JSON = Event.__pydantic_serializer__.to_json
"""An event's JSON text in one call (`model_dump_json` returns text to encode again, and
`model_dump` then orjson builds the dict first): what `seal_text` takes."""


def sealed_event(event: Event, box: SecretBox) -> bytes:
    """The event's JSON as stored: every secret encrypted (`core.secrets`). 422 for a
    secret starting with `enc:v1:` (schema_violation), or for any secret when no key is
    configured (secrets_not_configured): nothing is ever stored in clear."""
    try:
        return box.seal_text(_EVENT_JSON(event, exclude_unset=True))
    except (CiphertextGiven, SecretsNotConfigured) as exc:
        raise _secrets_refused(exc) from None


def build_record(
    event: Event, targets: list[str], source: SourceSettings, box: SecretBox
) -> IngestRecord:
    """What the store writes for an accepted event; its secrets are sealed with `box`."""
    changes = event.changes.present()
    return IngestRecord(
        source=source.name,
        event_id=event.event_id,
        user_id=event.user.id,
        order_key=event.order_key,
        event_json=sealed_event(event, box),
        acceptance=acceptance_body(event, targets),
        targets=targets,
        links=dict(event.user.external_ids),
        name_parts={part: changes[part] for part in NAME_PARTS if part in changes},
        link_mode=source.link_mode,
        urgent=event.urgent,
    )
