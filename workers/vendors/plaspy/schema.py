"""Plaspy's documented shapes (seed 002): an RFC 6902 patch on the user's writable fields.

The seed documents the body as JSON Patch operations and the user as a list of fields with
their types; an operation is accepted when its shape is RFC 6902's, its path (and `from`) names
one of the writable fields (or one tag), and any value it carries has that field's type. The
fields Plaspy keeps read-only (message, privileges, deviceId, adminDevices, and the server's
id and timestamps) are refused, as the sandbox refuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import jsonpointer
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    field_validator,
    model_validator,
)

Check = tuple[Callable[[Any], bool], str]


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


STRING: Check = (_is_str, "a string")
FIELDS: dict[str, Check] = {
    "name": STRING,
    "email": STRING,
    "country": STRING,
    "timeZone": STRING,
    "description": STRING,
    "disabled": (_is_bool, "a boolean"),
    "tags": (_is_str_map, "an object of strings"),
    "group": STRING,
    "from": STRING,
    "expires": STRING,
    "password": STRING,
}
"""The user's writable fields and their types, in the seed's order. The other documented
fields (id, message, privileges, deviceId, adminDevices, creation, modification, lastLogin)
are read-only."""


def check_path(path: str) -> Check:
    """What a value at `path` must be; ValueError naming the path when it is not a writable
    field or tag."""
    try:
        parts = jsonpointer.JsonPointer(path).parts
    except jsonpointer.JsonPointerException as exc:
        raise ValueError(f"{path!r} is not a JSON Pointer: {exc}") from exc
    if len(parts) == 1 and parts[0] in FIELDS:
        return FIELDS[parts[0]]
    if len(parts) == 2 and parts[0] == "tags" and parts[1]:
        return STRING
    fields = ", ".join(f"/{name}" for name in FIELDS)
    raise ValueError(
        f"{path!r} is not a writable Plaspy user field (one of {fields} or /tags/<key>)"
    )


class _Operation(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    path: str

    @field_validator("path")
    @classmethod
    def _documented(cls, path: str) -> str:
        check_path(path)
        return path


class ValueOperation(_Operation):
    """add / replace / test: `value` is required and must fit the field."""

    op: Literal["add", "replace", "test"]
    value: Any

    @model_validator(mode="after")
    def _typed(self) -> ValueOperation:
        accepts, expected = check_path(self.path)
        if not accepts(self.value):
            raise ValueError(f"the value for {self.path} must be {expected}")
        return self


class RemoveOperation(_Operation):
    op: Literal["remove"]


class FromOperation(_Operation):
    """move / copy: `from` must name a documented field too, and never the password (Plaspy
    keeps it write-only: copying it elsewhere would expose it)."""

    op: Literal["move", "copy"]
    from_: str = Field(alias="from")

    @field_validator("from_")
    @classmethod
    def _documented_from(cls, path: str) -> str:
        check_path(path)
        if path == "/password":
            raise ValueError("'/password' is write-only and cannot be moved or copied")
        return path


Operation = Annotated[ValueOperation | RemoveOperation | FromOperation, Field(discriminator="op")]
PatchBody: TypeAdapter[list[Operation]] = TypeAdapter(list[Operation])
"""The request body: a JSON array of operations."""


_JSON_TYPES: dict[str, dict[str, Any]] = {
    STRING[1]: {"type": "string"},
    "a boolean": {"type": "boolean"},
    "an object of strings": {"type": "object", "additionalProperties": {"type": "string"}},
}
"""The JSON schema of each of `FIELDS`' checks, by what it says it wants."""
TAG_PATH = "^/tags/(?:[^~/]|~[01])+$"
"""One tag: a JSON Pointer of two segments, the second not empty (`~` only as `~0`, `~1`)."""


def _op(ops: list[str], required: list[str], **fields: Any) -> dict[str, Any]:
    properties = {"op": {"enum": ops}, **fields}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["op", *required],
        "properties": properties,
    }


def patch_schema() -> dict[str, Any]:
    """`PatchBody` as a JSON schema: each operation's shape, its path among the writable
    fields (`check_path`) and its value of that field's type."""
    named = [f"/{name}" for name in FIELDS]
    path = {"type": "string", "anyOf": [{"enum": named}, {"pattern": TAG_PATH}]}
    values = ["add", "replace", "test"]
    operations = [
        _op(values, ["path", "value"], path={"const": f"/{name}"}, value=_JSON_TYPES[check[1]])
        for name, check in FIELDS.items()
    ]
    tag = {"type": "string", "pattern": TAG_PATH}
    operations.append(_op(values, ["path", "value"], path=tag, value={"type": "string"}))
    operations.append(_op(["remove"], ["path"], path=path))
    source = {**path, "not": {"const": "/password"}}
    operations.append(_op(["move", "copy"], ["path", "from"], path=path, **{"from": source}))
    return {"type": "array", "items": {"oneOf": operations}}


class PatchAnswer(BaseModel):
    """The answer: `success` (optional) says whether it applied; usage counters ride along."""

    model_config = ConfigDict(extra="allow")

    success: StrictBool | None = None
