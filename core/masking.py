"""Where an event's secrets are, and hiding them from what people read.

One rule says what a secret is, for everything that protects one: the value of any key whose
name is in `SECRET_KEYS` (ASCII case-insensitively, at any depth: `changes.password`,
`Password` in a `vendor_fields` object, a tag so named) and the `value` of any object whose
`path` is a string ending in such a name (a JSON Patch operation on `/password`, a SCIM PatchOp
on `password` or its URN-qualified name, valid or not: an operation without `op` still carries
the secret); a key whose last `/`, `:` or `.` segment is such a name counts too. `core.secrets` encrypts exactly these
before an event is stored; dead letters show the stored event through `mask_secrets`, so an
encrypted value reads `***` like a clear one; the workers mask the requests they preview with
the same `mask_secrets` (`workers.vendors.base`). So the three cannot disagree.

Names are compared after ASCII lower-casing only: a non-ASCII name is never a secret name (all
of `SECRET_KEYS` are ASCII). That keeps `SecretBox.seal_json`'s fast path exact: a JSON text
holding a secret name in any case holds it byte for byte once `bytes.lower()`ed, whereas
Unicode lower-casing maps some non-ASCII letters to ASCII ones (the Kelvin sign to `k`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MASK = "***"
SECRET_KEYS = frozenset({"password"})
"""Keys (compared ASCII case-insensitively) whose values are secrets wherever they appear."""


NAME_SEPARATORS = re.compile(r"[/:.]")
"""What separates the segments of a qualified name: JSON Pointer (`/password`), a SCIM
attribute URN (`urn:ietf:params:scim:schemas:core:2.0:User:password`) or path (`x.password`)."""


def is_secret_name(name: str) -> bool:
    """Whether a key or a patch path names a secret: its last segment is a secret name."""
    return name.isascii() and NAME_SEPARATORS.split(name)[-1].lower() in SECRET_KEYS


def _patch_targets_secret(op: dict[str, Any]) -> bool:
    """An object with a `path` ending in a secret name: a JSON Patch or SCIM PatchOp operation
    writing a secret member, whether or not it is a valid one (its `value` is the secret)."""
    path = op.get("path")
    return isinstance(path, str) and is_secret_name(path)


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
        if item is not None and (is_secret_name(str(key)) or (patch_op and key == "value")):
            copy[key] = replace(where, item)
        else:
            copy[key] = map_secrets(item, replace, where)
    return copy


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON value with every secret (see `map_secrets`) replaced by `***`."""
    return map_secrets(value, lambda _path, _secret: MASK)
