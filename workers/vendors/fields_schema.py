"""JSON schemas of what a vendor kind takes in an event's `vendor_fields`.

The gateway checks `vendor_fields` against the vendor's schema at ingest
(`VendorAdapter.vendor_fields_problems`) and describes the same rule in `/openapi.json`, so a
client generated from it sends only fields the vendor takes. A kind describes its rule with
`vendor_fields_schema()`; an object-body kind's comes from its `body_model` (`object_body`),
with what pydantic checks but does not write into its schema added here.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

NO_FIELDS: dict[str, Any] = {"type": "array", "maxItems": 0}
"""An empty array: no fields (what `vendor_fields_problems` takes from every kind)."""


def _inline(schema: Any, defs: Mapping[str, Any]) -> Any:
    """`schema` with its `#/$defs/...` references replaced by what they name (the models of
    vendor bodies are not recursive), so it can sit anywhere in another document."""
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inline(defs[schema["$ref"].removeprefix("#/$defs/")], defs)
    return {key: _inline(value, defs) for key, value in schema.items() if key != "$defs"}


def _without_null(field: dict[str, Any]) -> dict[str, Any]:
    branches = [branch for branch in field.get("anyOf", ()) if branch != {"type": "null"}]
    if len(branches) != 1:
        return field
    rest = {key: value for key, value in field.items() if key not in ("anyOf", "default")}
    return {**rest, **branches[0]}


def _refuses_null(model: type[BaseModel], name: str) -> bool:
    try:
        model.model_validate({name: None})
    except ValidationError:
        return True
    return False


def object_body(
    model: type[BaseModel], fields: Mapping[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """`vendor_fields` of an object-body vendor: an object `model` takes (pydantic's schema,
    without the `null` a validator refuses; `fields` replaces the schema of some), or none
    (an empty object or array)."""
    schema = model.model_json_schema(mode="validation")
    body = _inline(schema, schema.get("$defs", {}))
    properties = body["properties"]
    for name in list(properties):
        if _refuses_null(model, name):
            properties[name] = _without_null(properties[name])
    for name, field in (fields or {}).items():
        properties[name] = {"title": properties[name].get("title", name), **field}
    body.pop("title", None)
    return {"anyOf": [body, NO_FIELDS]}


@functools.cache
def char_class(test: Callable[[str], bool]) -> str:
    """A regular-expression character class of every character `test` holds for (written
    as the characters themselves, which Python's and ECMAScript's engines read alike)."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if test(chr(code)):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))

    def char(code: int) -> str:
        text = chr(code)
        return "\\" + text if text in "\\]^-[" else text

    parts = [char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges]
    return "[" + "".join(parts) + "]"
