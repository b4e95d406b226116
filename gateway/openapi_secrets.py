"""The secrets rule of `core.masking` / `core.secrets`, written into request schemas.

A secret is the value of a key named in `SECRET_KEYS` (ASCII case-insensitively, at any
depth) or the `value` of an object whose `path` ends in such a name (a JSON Patch operation).
The gateway stores secrets encrypted, so it refuses (422) a secret that already looks
encrypted (`enc:v1:...`), and, when `secrets.keys` is empty, any secret but `null`. The
schemas say the same: `secret_rule` marks the secrets of a typed schema, and `FreeJson`
(the schema of a value nothing else describes) carries the rule at every depth.
"""

from __future__ import annotations

import re
from typing import Any

from core.masking import SECRET_KEYS
from core.secrets import PREFIX
from gateway.body import MAX_ARRAY_ITEMS

FREE_JSON_NAME = "FreeJson"
FREE_JSON: dict[str, Any] = {"$ref": f"#/components/schemas/{FREE_JSON_NAME}"}
"""Any JSON value, its secrets as the gateway takes them."""


def any_case(word: str) -> str:
    """A pattern of `word` in any ASCII case (a JSON schema's pattern has no flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


_NAMES = "(?:" + "|".join(any_case(key) for key in sorted(SECRET_KEYS)) + ")"
SECRET_NAME = f"^{_NAMES}$"
SECRET_PATH = f"(?:^|/){_NAMES}$"
"""A patch path whose last segment (after the last `/`, or the whole) names a secret."""


def secret_value(keys_configured: bool) -> dict[str, Any]:
    """What a secret may be: anything but text starting `enc:v1:`, or only null when no key
    can encrypt it."""
    if not keys_configured:
        return {"type": "null", "description": "no `secrets.keys`: secrets are refused"}
    return {
        "not": {"type": "string", "pattern": "^" + re.escape(PREFIX)},
        "description": f"a secret, stored encrypted: not text starting `{PREFIX}`",
    }


def _is_secret_name(name: str) -> bool:
    return re.fullmatch(SECRET_NAME, name) is not None


def secret_rule(schema: Any, keys_configured: bool) -> None:
    """Mark, in place, every secret a typed schema can hold: properties named as secrets,
    keys of `patternProperties` or of a map (`additionalProperties`) that may be so named,
    and the `value` of objects with a `path` and a `value` (patch operations)."""
    if isinstance(schema, list):
        for item in schema:
            secret_rule(item, keys_configured)
        return
    if not isinstance(schema, dict):
        return
    for key, item in schema.items():
        if key not in ("if", "not"):
            secret_rule(item, keys_configured)
    secret = secret_value(keys_configured)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name in [name for name in properties if _is_secret_name(name)]:
            properties[name] = {"allOf": [properties[name], secret]}
        if "path" in properties and "value" in properties:
            path = {"path": {"type": "string", "pattern": SECRET_PATH}}
            rule = {
                "if": {"required": ["path"], "properties": path},
                "then": {"properties": {"value": secret}},
            }
            schema["allOf"] = [*schema.get("allOf", []), rule]
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict) and any(
        re.fullmatch(pattern, key) for pattern in patterns for key in SECRET_KEYS
    ):
        patterns[SECRET_NAME] = secret
    elif isinstance(schema.get("additionalProperties"), dict) and patterns is None:
        # a map: a key so named holds a secret of the map's value type
        schema["patternProperties"] = {
            SECRET_NAME: {"allOf": [schema["additionalProperties"], secret]}
        }


def free_json(keys_configured: bool) -> dict[str, Any]:
    """The `FreeJson` component: any JSON value, with the secrets rule at every depth."""
    secret = secret_value(keys_configured)
    again = FREE_JSON
    names = {SECRET_NAME: secret}
    patch = {"type": "string", "pattern": SECRET_PATH}
    return {
        "description": "any JSON value; its secrets (a key named password in any case, at "
        "any depth, or the `value` of an object whose `path` ends in /password) as the "
        "gateway takes them",
        "anyOf": [
            {"type": ["null", "boolean", "number", "string"]},
            {"type": "array", "items": again, "maxItems": MAX_ARRAY_ITEMS},
            {
                "type": "object",
                "required": ["path"],
                "properties": {"path": patch, "value": secret},
                "patternProperties": names,
                "additionalProperties": again,
            },
            {
                "type": "object",
                "not": {"required": ["path"], "properties": {"path": patch}},
                "patternProperties": names,
                "additionalProperties": again,
            },
        ],
    }
