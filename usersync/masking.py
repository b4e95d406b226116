"""Secrets hidden from what people read: dead letters show the stored event through this.

The workers mask the requests they preview with their own twin of this function; the gateway
side does not import vendor code, so it has this one. Masking errs on the side of hiding: any
key named like a secret, and any JSON Patch operation on a member named like one.
"""

from __future__ import annotations

from typing import Any

MASK = "***"
SECRET_KEYS = frozenset({"password"})
"""Keys (compared case-insensitively) whose values are secrets wherever they appear."""


def _is_secret(name: str) -> bool:
    return name.lower() in SECRET_KEYS


def _patch_targets_secret(op: dict[str, Any]) -> bool:
    """A JSON Patch operation (`{"op", "path", "value"}`) writing a secret member."""
    path = op.get("path")
    return isinstance(path, str) and "op" in op and _is_secret(path.rsplit("/", 1)[-1])


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON value with secrets replaced by `***`: the value of every key named
    `password` (at any depth: `changes.password`, a `vendor_fields` password) and the `value`
    of every JSON Patch operation whose path ends in `/password` (Plaspy `vendor_fields`).
    A `null` stays `null`: clearing a field reveals nothing."""
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    if not isinstance(value, dict):
        return value
    masked = {
        key: (MASK if _is_secret(str(key)) and item is not None else mask_secrets(item))
        for key, item in value.items()
    }
    if _patch_targets_secret(value) and "value" in value:
        masked["value"] = MASK
    return masked
