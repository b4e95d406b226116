"""How `/openapi.json` describes the CloudEvents request bodies (`gateway.cloudevents`): a
structured CloudEvent (`application/cloudevents+json`) and a JSON batch of them
(`application/cloudevents-batch+json`).

`data` and `time` are the `Event` schema's own properties, referred to by JSON pointer
(`#/components/schemas/Event/properties/...`), so they are exactly what the document says of
a v1 event for this configuration (`gateway.openapi_event`), and cannot drift from it. Binary
mode is an `application/json` body with `ce-` headers, which OpenAPI cannot tell apart from a
v1 body: the operations' descriptions state it (`BINARY_MODE`).
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from core.event import EVENT_ID_PATTERN, Event
from gateway.cloudevents import (
    ATTRIBUTE_OF,
    ATTRIBUTES,
    BATCH,
    EVENT_TYPES,
    EXTENSION_NAME,
    INTEGER_RANGE,
    JSON_MEDIA_TYPE,
    SPECVERSION,
    STRUCTURED,
)
from gateway.routing import Ref, Schema

_IMPLIED = {"user.deactivated": False, "user.activated": True}
"""The types that are a change of `active` (`core.event.Event`): `changes` may be left out."""


def event_types(settings: Settings) -> list[str]:
    """Every CloudEvent type some configured source may send (its prefix, if any, first)."""
    return sorted(prefix + name for prefix in _prefixes(settings) for name in EVENT_TYPES)


def _prefixes(settings: Settings) -> set[str]:
    return {source.cloudevents_type_prefix or "" for source in settings.sources} or {""}


def _data(event: str) -> dict[str, Any]:
    """`data`: the v1 event's properties but those the attributes carry (`event` is the
    `$ref` of the Event schema)."""
    names = [name for name in Event.model_fields if name not in ATTRIBUTE_OF]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [name for name in names if Event.model_fields[name].is_required()],
        "properties": {name: {"$ref": f"{event}/properties/{name}"} for name in names},
        "description": "the v1 event less what the attributes carry",
    }


def _type_rules(settings: Settings) -> list[dict[str, Any]]:
    """Event's `changes` rules with the type an attribute: required and not empty unless the
    type is a (de)activation, whose `active` it may not contradict."""
    implied = {
        prefix + name: active for prefix in _prefixes(settings) for name, active in _IMPLIED.items()
    }
    changes = {"required": ["changes"], "properties": {"changes": {"minProperties": 1}}}
    return [
        {
            "if": {"required": ["type"], "properties": {"type": {"enum": sorted(implied)}}},
            "else": {"required": ["data"], "properties": {"data": changes}},
        },
        *(
            {
                "if": {"required": ["type"], "properties": {"type": {"const": name}}},
                "then": {
                    "properties": {
                        "data": {
                            "properties": {"changes": {"properties": {"active": {"const": active}}}}
                        }
                    }
                },
            }
            for name, active in sorted(implied.items())
        ),
    ]


def structured_event(ref: Ref, settings: Settings) -> dict[str, Any]:
    """One structured CloudEvent 1.0 as `POST /v1/events` takes it."""
    event = ref(Event)["$ref"]
    return {
        "type": "object",
        "description": "A CloudEvent 1.0 in structured mode. Extension attributes (a name "
        "of lower-case letters and digits, a value of text, a boolean or a 32-bit integer) "
        "are taken and ignored.",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": {
            "specversion": {"type": "string", "const": SPECVERSION},
            "id": {
                "type": "string",
                "pattern": EVENT_ID_PATTERN,
                "description": "the event_id (unique per source: a repeat is a duplicate)",
            },
            "source": {
                "type": "string",
                "minLength": 1,
                "description": "a URI-reference naming the producer, stored nowhere: the "
                "event's source is the caller's credentials (another configured source's "
                "name here is a 403 source_mismatch)",
            },
            "type": {
                "type": "string",
                "enum": event_types(settings),
                "description": "user.updated, user.deactivated or user.activated, after the "
                "calling source's `cloudevents_type_prefix` if it has one (and only then)",
            },
            "time": {"$ref": f"{event}/properties/occurred_at"},
            "subject": {"type": "string", "minLength": 1, "description": "ignored"},
            "dataschema": {"type": "string", "minLength": 1, "description": "ignored"},
            "datacontenttype": {"type": "string", "pattern": JSON_MEDIA_TYPE},
            "data": _data(event),
            "data_base64": False,
        },
        "propertyNames": {
            "anyOf": [
                {"enum": sorted(ATTRIBUTES | {"data", "data_base64"})},
                {"pattern": EXTENSION_NAME},
            ]
        },
        "additionalProperties": {
            "description": "an extension attribute, ignored",
            "type": ["string", "boolean", "integer", "null"],
            "minimum": INTEGER_RANGE[0],
            "maximum": INTEGER_RANGE[1],
        },
        "allOf": _type_rules(settings),
    }


def event_batch(ref: Ref, settings: Settings) -> dict[str, Any]:
    """A JSON batch of structured CloudEvents as `POST /v1/events:batch` takes it."""
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": settings.gateway.batch_max_events,
        "items": structured_event(ref, settings),
    }


STRUCTURED_BODY: dict[str, Schema] = {STRUCTURED: Schema(structured_event, (Event,))}
"""The media type and schema `POST /v1/events` (and its preview) add to their JSON body."""
BATCH_BODY: dict[str, Schema] = {BATCH: Schema(event_batch, (Event,))}
"""The media type and schema `POST /v1/events:batch` adds to its JSON envelope."""
BINARY_MODE = (
    " A CloudEvent 1.0 is taken too: structured (`application/cloudevents+json`), or in "
    "binary mode: `ce-specversion: 1.0`, `ce-id`, `ce-source`, `ce-type`, `ce-time` headers "
    "(percent-encoded) and the event's `data` as the `application/json` body. A 4xx then "
    "names the CloudEvent's paths (`id`, `time`, `type`, `data.user.id`, ...)."
)
"""What the descriptions of the single-event operations add (binary mode has no schema of
its own: its body is an `application/json` one)."""
