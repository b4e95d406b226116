"""What the gateway's reading of JSON and of addresses adds to a request schema.

The body is parsed by `gateway.body`, which refuses longer arrays than `MAX_ARRAY_ITEMS`,
deeper nesting than `MAX_DEPTH` and numbers beyond ±`MAX_NUMBER` (2^53); an email is checked by
email_validator (`core.email_address`), which refuses the special-use domains and an address
over 254 characters. `bound_values` writes these into a schema, so
the document does not allow what the gateway then refuses (the depth is in the words of the
document: no keyword bounds it).
"""

from __future__ import annotations

from typing import Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES

from gateway.body import MAX_ARRAY_ITEMS, MAX_DEPTH, MAX_NUMBER
from gateway.openapi_secrets import any_case

_DOMAINS = "|".join(any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES)
EMAIL: dict[str, Any] = {"maxLength": 254, "not": {"pattern": f"[@.](?:{_DOMAINS})$"}}
"""email_validator's bounds beyond `format: email`: 254 characters, no special-use domain
(`.test`...)."""
LIMITS = (
    f"Bodies are JSON objects nested at most {MAX_DEPTH} levels deep, their arrays at most "
    f"{MAX_ARRAY_ITEMS} items long, numbers within ±2^53 (I-JSON); `5.0` is the integer 5."
)


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()


def bound_values(schema: Any) -> None:
    """Write, in place, the bounds above into every integer, array and email of `schema`."""
    if isinstance(schema, list):
        for item in schema:
            bound_values(item)
        return
    if not isinstance(schema, dict):
        return
    for key, item in schema.items():
        if key not in ("not", "if"):
            bound_values(item)
    kinds = _types(schema)
    if kinds & {"integer", "number"}:
        schema["minimum"] = max(schema.get("minimum", -MAX_NUMBER), -MAX_NUMBER)
        schema["maximum"] = min(schema.get("maximum", MAX_NUMBER), MAX_NUMBER)
    if "array" in kinds:
        schema["maxItems"] = min(schema.get("maxItems", MAX_ARRAY_ITEMS), MAX_ARRAY_ITEMS)
    if schema.get("format") == "email":
        schema["allOf"] = [*schema.get("allOf", []), EMAIL]
