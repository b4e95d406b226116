"""Where an event's secrets are, and hiding them from what people read.

One rule says what a secret is, for everything that protects one: the value of any key named
`password` (case-insensitively, at any depth: `changes.password`, a password in a
`vendor_fields` object) and the `value` of any JSON Patch operation on a member so named (a
Plaspy `vendor_fields` op on `/password`). `usersync.secrets` encrypts exactly these before an
event is stored; dead letters show the stored event through `mask_secrets`, so an encrypted
value reads `***` like a clear one. The workers mask the requests they preview with their own
twin of this function; the gateway side does not import vendor code, so it has this one.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _join(path: str, part: str | int) -> str:
    return f"{path}.{part}" if path else str(part)


def map_secrets(value: Any, replace: Callable[[str, Any], Any], path: str = "") -> Any:
    """A copy of a JSON value in which every secret is `replace(path, secret)`, `path` being
    its dotted location (`changes.password`, `vendor_fields.plaspy.0.value`). A `null` is
    left alone: clearing a field reveals nothing."""
    if isinstance(value, list):
        return [map_secrets(item, replace, _join(path, i)) for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    patch_op = _patch_targets_secret(value)
    copy = {}
    for key, item in value.items():
        where = _join(path, key)
        if item is not None and (_is_secret(str(key)) or (patch_op and key == "value")):
            copy[key] = replace(where, item)
        else:
            copy[key] = map_secrets(item, replace, where)
    return copy


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON value with every secret (see `map_secrets`) replaced by `***`."""
    return map_secrets(value, lambda _path, _secret: MASK)
